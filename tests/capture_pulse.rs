//! Device capture against a real (private, headless) PulseAudio server through cpal's ALSA host.
//! See tests/common/pulse.rs for the server; the tests take turns on it (one per process).

#[path = "common/pulse.rs"]
mod pulse;

use std::time::{Duration, Instant};

use earshot::capture::{
    Block, DeviceSettings, DeviceSource, RetrySettings, SampleFormat, SharedSource, Source,
    SourceState,
};
use pulse::{PulseServer, RATE};

const AMPLITUDE: f64 = 0.5;

fn settings(format: Option<SampleFormat>) -> DeviceSettings {
    // The source's own logs (device chosen, losses, retries) explain any failure here.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("earshot=debug")
        .with_test_writer()
        .try_init();
    DeviceSettings {
        device: Some("alsa:pulse".into()),
        format,
        sample_rate: Some(RATE),
        channels: Some(2),
        stall_timeout: Duration::from_millis(1500),
        retry: RetrySettings {
            initial: Duration::from_millis(200),
            max: Duration::from_millis(800),
            factor: 2.0,
        },
        drop_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// Frequency from rising zero crossings (with a little hysteresis against noise).
fn frequency(x: &[f32], rate: u32) -> f64 {
    let mut crossings = Vec::new();
    let mut armed = false;
    for (i, &v) in x.iter().enumerate() {
        if v < -0.05 {
            armed = true;
        } else if armed && v >= 0.0 {
            crossings.push(i);
            armed = false;
        }
    }
    assert!(
        crossings.len() >= 3,
        "no periodic signal ({} crossings)",
        crossings.len()
    );
    let (first, last) = (crossings[0], crossings[crossings.len() - 1]);
    (crossings.len() - 1) as f64 * f64::from(rate) / (last - first) as f64
}

fn channel(samples: &[f32], channels: usize, c: usize) -> Vec<f32> {
    samples.iter().skip(c).step_by(channels).copied().collect()
}

/// Pulls blocks until one carries the tone (RMS well above silence), bounded by `limit`.
fn wait_for_tone(src: &mut dyn Source, limit: Duration) -> Block {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(b) = src
            .next_block(Duration::from_millis(100))
            .expect("next_block")
            && rms(&b.samples) > 0.1
        {
            return b;
        }
    }
    panic!(
        "no tone within {limit:?}; source: {}; stats: {:?}",
        src.describe(),
        src.stats()
    );
}

/// Collects `seconds` of wall-clock capture; returns the audio, its frame count and the
/// wall-clock time it covered. Asserts the blocks are contiguous (no gaps in `first_frame`).
fn collect(src: &mut dyn Source, seconds: f64) -> (Vec<f32>, usize, u16, f64) {
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut frames = 0usize;
    let mut next: Option<u64> = None;
    let mut channels = 0;
    while start.elapsed().as_secs_f64() < seconds {
        if let Some(b) = src
            .next_block(Duration::from_millis(100))
            .expect("next_block")
        {
            if let Some(n) = next {
                assert_eq!(b.first_frame, n, "gap in a healthy capture");
            }
            next = Some(b.first_frame + b.frames() as u64);
            assert_eq!(b.sample_rate, RATE);
            channels = b.channels;
            frames += b.frames();
            samples.extend_from_slice(&b.samples);
        }
    }
    (samples, frames, channels, start.elapsed().as_secs_f64())
}

fn check_tone(src: &mut dyn Source) {
    wait_for_tone(src, Duration::from_secs(15));
    let (samples, frames, channels, secs) = collect(src, 2.0);
    assert_eq!(channels, 2);
    let fraction = frames as f64 / (secs * f64::from(RATE));
    assert!(
        fraction >= 0.9,
        "received only {:.0} % of real-time audio ({frames} frames in {secs:.2} s); stats {:?}",
        fraction * 100.0,
        src.stats()
    );
    let expected_rms = AMPLITUDE / 2f64.sqrt();
    for c in 0..2 {
        let x = channel(&samples, 2, c);
        let f = frequency(&x, RATE);
        assert!((f - 440.0).abs() < 2.0, "channel {c}: {f:.2} Hz, want 440");
        let r = rms(&x);
        assert!(
            (r - expected_rms).abs() < 0.05 * expected_rms,
            "channel {c}: RMS {r:.4}, want {expected_rms:.4}"
        );
    }
    let st = src.stats();
    assert_eq!(st.state, SourceState::Running);
    assert_eq!(st.frames_dropped, 0, "ring overflowed: {st:?}");
    assert!(st.callbacks > 0 && st.last_callback_age.is_some());
}

#[test]
fn captures_a_sine_as_f32() {
    let mut pa = PulseServer::start();
    let tone = pa.tone("tone.wav", 440.0, 440.0, 60.0, AMPLITUDE);
    pa.play(&tone);
    let mut src = DeviceSource::open(settings(Some(SampleFormat::F32))).unwrap();
    check_tone(&mut src);
    let d = src.describe();
    assert!(d.contains("alsa:pulse") && d.contains("f32"), "{d}");
}

#[test]
fn captures_a_sine_as_i16() {
    let mut pa = PulseServer::start();
    let tone = pa.tone("tone.wav", 440.0, 440.0, 60.0, AMPLITUDE);
    pa.play(&tone);
    // Also: a description substring instead of an id.
    let mut s = settings(Some(SampleFormat::I16));
    s.device = Some("pulseaudio sound".into());
    let mut src = DeviceSource::open(s).unwrap();
    check_tone(&mut src);
    let d = src.describe();
    assert!(
        d.contains("i16") && d.contains("matches \"pulseaudio sound\""),
        "{d}"
    );
}

#[test]
fn channel_views_of_one_device_get_their_own_channel() {
    let mut pa = PulseServer::start();
    let tone = pa.tone("lr.wav", 440.0, 1000.0, 60.0, AMPLITUDE);
    pa.play(&tone);
    let shared = SharedSource::new(Box::new(DeviceSource::open(settings(None)).unwrap())).unwrap();
    let mut left = shared.subscribe(&[0]).unwrap();
    let mut right = shared.subscribe(&[1]).unwrap();
    assert!(shared.subscribe(&[]).is_err());
    wait_for_tone(&mut left, Duration::from_secs(15));
    // Read both views alternately for ~1 s of audio each.
    let (mut l, mut r) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while (l.len() < RATE as usize || r.len() < RATE as usize) && Instant::now() < deadline {
        for (view, out) in [(&mut left, &mut l), (&mut right, &mut r)] {
            if let Some(b) = view.next_block(Duration::from_millis(20)).unwrap() {
                assert_eq!(b.channels, 1);
                out.extend_from_slice(&b.samples);
            }
        }
    }
    assert!(
        l.len() >= RATE as usize && r.len() >= RATE as usize,
        "views starved"
    );
    let (fl, fr) = (frequency(&l, RATE), frequency(&r, RATE));
    assert!((fl - 440.0).abs() < 2.0, "left view: {fl:.1} Hz");
    assert!((fr - 1000.0).abs() < 3.0, "right view: {fr:.1} Hz");
    assert!(left.describe().contains("[0]") && left.describe().contains("alsa:pulse"));
}

#[test]
fn a_server_that_appears_late_is_waited_for() {
    // No server yet: opening the device fails and must be retried, not fatal.
    let mut pa = PulseServer::prepare();
    let mut src = DeviceSource::open(settings(None)).unwrap();
    // Long enough for several failed attempts (retry starts at 200 ms).
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1500) {
        assert!(src.next_block(Duration::from_millis(50)).unwrap().is_none());
    }
    assert_eq!(src.stats().state, SourceState::Starting);
    pa.start_server();
    pa.load_sink();
    let tone = pa.tone("tone.wav", 440.0, 440.0, 60.0, AMPLITUDE);
    pa.play(&tone);
    check_tone(&mut src);
    assert_eq!(
        src.stats().reconnects,
        0,
        "a first opening is not a reconnect"
    );
}

/// Waits (bounded) until `pred` holds for the source's stats, pulling blocks meanwhile.
fn wait_until(
    src: &mut dyn Source,
    limit: Duration,
    what: &str,
    pred: impl Fn(&earshot::capture::CaptureStats) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        let st = src.stats();
        if pred(&st) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not reached within {limit:?}: {st:?}"
        );
        let _ = src
            .next_block(Duration::from_millis(20))
            .expect("next_block");
    }
}

#[test]
fn an_unplugged_sink_is_reported_lost_and_recovered() {
    let mut pa = PulseServer::start();
    let tone = pa.tone("tone.wav", 440.0, 440.0, 60.0, AMPLITUDE);
    pa.play(&tone);
    let mut src = DeviceSource::open(settings(None)).unwrap();
    let before = wait_for_tone(&mut src, Duration::from_secs(15));
    pa.unload_sink();
    wait_until(&mut src, Duration::from_secs(10), "loss", |s| {
        s.state != SourceState::Running
    });
    // Keep it away long enough for failed reopen attempts.
    std::thread::sleep(Duration::from_secs(1));
    assert_ne!(src.stats().state, SourceState::Running);
    pa.load_sink();
    pa.play(&tone);
    wait_until(&mut src, Duration::from_secs(15), "recovery", |s| {
        s.state == SourceState::Running && s.reconnects >= 1
    });
    let after = wait_for_tone(&mut src, Duration::from_secs(15));
    assert!(
        after.first_frame > before.first_frame + RATE as u64,
        "the outage must show as a jump on the timeline ({} -> {})",
        before.first_frame,
        after.first_frame
    );
    check_tone(&mut src);
}

#[test]
fn a_killed_server_is_reported_and_nothing_hangs() {
    let mut pa = PulseServer::start();
    let tone = pa.tone("tone.wav", 440.0, 440.0, 60.0, AMPLITUDE);
    pa.play(&tone);
    let mut src = DeviceSource::open(settings(None)).unwrap();
    wait_for_tone(&mut src, Duration::from_secs(15));
    pa.kill_server();
    wait_until(&mut src, Duration::from_secs(10), "loss", |s| {
        s.state != SourceState::Running
    });
    // The consumer keeps getting prompt answers while the source retries.
    for _ in 0..10 {
        assert!(src.next_block(Duration::from_millis(50)).unwrap().is_none());
    }
    // Dropping the source (stream teardown included) must finish, even if libpulse hangs.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(src);
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("dropping the source hung after the server died");
}

#[test]
fn a_frozen_server_is_detected_as_a_stall_and_recovered() {
    let mut pa = PulseServer::start();
    let tone = pa.tone("tone.wav", 440.0, 440.0, 60.0, AMPLITUDE);
    pa.play(&tone);
    let mut s = settings(None);
    s.open_timeout = Duration::from_secs(2);
    let mut src = DeviceSource::open(s).unwrap();
    wait_for_tone(&mut src, Duration::from_secs(15));
    let errors_before = src.stats().stream_errors;
    pa.freeze_server(true);
    // No callbacks and (typically) no errors: only the stall watchdog can notice.
    wait_until(&mut src, Duration::from_secs(15), "stall", |s| {
        s.state != SourceState::Running
    });
    assert!(
        src.stats().last_callback_age.unwrap() >= Duration::from_millis(1500),
        "lost before stall_timeout without errors? {:?} (errors before: {errors_before})",
        src.stats()
    );
    // The consumer is never blocked by the wedged server (teardown may hang in libpulse).
    for _ in 0..10 {
        assert!(src.next_block(Duration::from_millis(50)).unwrap().is_none());
    }
    pa.freeze_server(false);
    wait_until(&mut src, Duration::from_secs(20), "recovery", |s| {
        s.state == SourceState::Running && s.reconnects >= 1
    });
    wait_for_tone(&mut src, Duration::from_secs(15));
}

#[test]
fn devices_command_lists_the_pulse_device_as_json() {
    let _pa = PulseServer::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_earshot"))
        .args(["devices", "--json"])
        .output()
        .expect("run earshot devices");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hosts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let alsa = hosts
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "ALSA")
        .expect("ALSA host listed");
    let pulse = alsa["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "alsa:pulse")
        .expect("alsa:pulse listed");
    // The running server makes its default config readable: 48 kHz stereo from the null sink.
    assert_eq!(pulse["default_config"]["sample_rate"], 48_000, "{pulse}");
    assert_eq!(pulse["default_config"]["channels"], 2, "{pulse}");
    assert!(pulse["supported"].as_array().is_some_and(|s| !s.is_empty()));
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_earshot"))
        .arg("devices")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("alsa:pulse") && text.contains("default: f32 2 ch 48000 Hz"),
        "{text}"
    );
}

#[test]
fn a_sink_created_late_is_waited_for() {
    // The server runs but has no sink (so no source) yet, like a USB microphone still
    // enumerating: opening fails and is retried until the sink appears.
    let mut pa = PulseServer::prepare();
    pa.start_server();
    let mut src = DeviceSource::open(settings(None)).unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1500) {
        assert!(src.next_block(Duration::from_millis(50)).unwrap().is_none());
    }
    assert_eq!(
        src.stats().state,
        SourceState::Starting,
        "{:?}",
        src.stats()
    );
    pa.load_sink();
    let tone = pa.tone("tone.wav", 440.0, 440.0, 60.0, AMPLITUDE);
    pa.play(&tone);
    check_tone(&mut src);
}

#[test]
fn an_unknown_device_is_retried_not_fatal() {
    let _pa = PulseServer::start();
    let mut s = settings(None);
    s.device = Some("alsa:no_such_pcm".into());
    let mut src = DeviceSource::open(s).unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1000) {
        assert!(src.next_block(Duration::from_millis(50)).unwrap().is_none());
    }
    let st = src.stats();
    assert_eq!(st.state, SourceState::Starting);
    assert_eq!(st.device, "alsa:no_such_pcm");
    assert_eq!(st.callbacks, 0);
}
