//! The audio side of a clip, fed by the capture thread: a pre-roll ring of the mono signal at
//! the capture rate (allocated once per rate, so a block costs no allocation) and the clip
//! being recorded, if any.
//!
//! Time is the monitor's stream time in seconds, counted here from the capture frames (plus
//! gaps), the same origin as the windows' `start_s`: the decision stage names a clip's start
//! and end in those seconds. Decisions come later than the audio (windows wait for inference),
//! so the ring holds the pre-roll plus that delay.

/// A finished clip's audio.
#[derive(Debug, Clone)]
pub struct FinishedAudio {
    pub event_id: String,
    pub sample_rate: u32,
    /// Stream seconds of the first sample.
    pub start_s: f64,
    pub samples: Vec<f32>,
}

impl FinishedAudio {
    pub fn end_s(&self) -> f64 {
        self.start_s + self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

#[derive(Debug)]
struct Active {
    event_id: String,
    start_s: f64,
    /// Stop at this stream second (the event's end + post-roll, once known).
    until_s: Option<f64>,
    /// Never longer than this.
    max_s: f64,
    samples: Vec<f32>,
}

/// Pre-roll ring and open clip of one monitor (shared by its capture and decision stages).
#[derive(Debug)]
pub struct ClipRecorder {
    ring_seconds: f64,
    rate: u32,
    ring: Vec<f32>,
    /// Frames written into the ring since `origin_s` (the ring holds the last `ring.len()`).
    written: u64,
    /// Stream seconds of ring frame 0 (moves on a rate change).
    origin_s: f64,
    active: Option<Active>,
    done: Vec<FinishedAudio>,
    ended: bool,
}

impl ClipRecorder {
    /// A recorder whose ring keeps `ring_seconds` of audio.
    pub fn new(ring_seconds: f64) -> Self {
        Self {
            ring_seconds: ring_seconds.max(1.0),
            rate: 0,
            ring: Vec::new(),
            written: 0,
            origin_s: 0.0,
            active: None,
            done: Vec::new(),
            ended: false,
        }
    }

    /// Stream seconds after the last frame pushed.
    pub fn position_s(&self) -> f64 {
        if self.rate == 0 {
            self.origin_s
        } else {
            self.origin_s + self.written as f64 / f64::from(self.rate)
        }
    }

    fn frame_of(&self, t: f64) -> i64 {
        ((t - self.origin_s) * f64::from(self.rate)).round() as i64
    }

    /// Appends a mono block at `rate`. `gap_frames` (at `rate`) of audio were lost before it:
    /// stream time moves on, the ring and an open clip get silence for them (bounded by the
    /// ring / the clip's length).
    pub fn push(&mut self, block: &[f32], rate: u32, gap_frames: u64) {
        if rate == 0 {
            return;
        }
        if rate != self.rate {
            // A new rate (another device): the old audio cannot be spliced; start a new ring.
            let at = self.position_s();
            self.finish_active();
            self.rate = rate;
            self.origin_s = at;
            self.written = 0;
            self.ring = vec![0.0; (self.ring_seconds * f64::from(rate)).ceil() as usize];
        }
        let silence = gap_frames.min(self.ring.len() as u64);
        self.written += gap_frames - silence;
        for _ in 0..silence {
            self.put(0.0);
        }
        if let Some(a) = self.active.as_mut() {
            let room = a.samples.capacity() - a.samples.len();
            let n = (gap_frames as usize).min(room);
            a.samples.resize(a.samples.len() + n, 0.0);
        }
        let cap = self.ring.len();
        let mut rest = block;
        while !rest.is_empty() {
            let at = (self.written % cap as u64) as usize;
            let n = rest.len().min(cap - at);
            self.ring[at..at + n].copy_from_slice(&rest[..n]);
            self.written += n as u64;
            rest = &rest[n..];
        }
        if let Some(a) = self.active.as_mut() {
            // The clip's buffer was sized for its maximum length: this never reallocates.
            let room = a.samples.capacity() - a.samples.len();
            a.samples.extend_from_slice(&block[..block.len().min(room)]);
        }
        self.complete_if_due();
    }

    fn put(&mut self, v: f32) {
        let cap = self.ring.len() as u64;
        let at = (self.written % cap) as usize;
        self.ring[at] = v;
        self.written += 1;
    }

    /// Starts recording `event_id` from stream second `from_s` (onset - pre-roll), for at most
    /// `max_seconds`. What the ring still holds of the time since `from_s` is copied in; an
    /// open clip of another event is finished first.
    pub fn begin(&mut self, event_id: &str, from_s: f64, max_seconds: f64) {
        self.finish_active();
        if self.rate == 0 {
            return;
        }
        let cap = self.ring.len() as i64;
        let oldest = self.written as i64 - cap.min(self.written as i64);
        let first = self.frame_of(from_s).clamp(oldest, self.written as i64);
        let max_frames = (max_seconds * f64::from(self.rate)).ceil() as usize;
        let mut samples = Vec::with_capacity(max_frames);
        for f in first..self.written as i64 {
            if samples.len() == max_frames {
                break;
            }
            samples.push(self.ring[(f % cap) as usize]);
        }
        let start_s = self.origin_s + first as f64 / f64::from(self.rate);
        self.active = Some(Active {
            event_id: event_id.to_string(),
            start_s,
            until_s: None,
            max_s: start_s + max_seconds,
            samples,
        });
        self.complete_if_due();
    }

    /// The event ended: the clip stops at `until_s` (its end + post-roll).
    pub fn end(&mut self, event_id: &str, until_s: f64) {
        if let Some(a) = self.active.as_mut().filter(|a| a.event_id == event_id) {
            a.until_s = Some(until_s);
        }
        self.complete_if_due();
    }

    /// The source ended: nothing more will come, an open clip is finished as it is.
    pub fn source_ended(&mut self) {
        self.ended = true;
        self.finish_active();
    }

    /// Whether the source has ended.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Finishes the open clip now (shutdown, a new event).
    pub fn finish_active(&mut self) {
        if let Some(a) = self.active.take() {
            self.done.push(FinishedAudio {
                event_id: a.event_id,
                sample_rate: self.rate,
                start_s: a.start_s,
                samples: a.samples,
            });
        }
    }

    fn complete_if_due(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let rate = f64::from(self.rate);
        let end = a.start_s + a.samples.len() as f64 / rate;
        let stop = a.until_s.map_or(a.max_s, |u| u.min(a.max_s));
        if end + 0.5 / rate >= stop || a.samples.len() == a.samples.capacity() {
            let keep = (((stop - a.start_s) * rate).round().max(0.0) as usize).min(a.samples.len());
            a.samples.truncate(keep);
            self.finish_active();
        } else if self.ended {
            self.finish_active();
        }
    }

    /// Clips whose audio is complete.
    pub fn take_done(&mut self) -> Vec<FinishedAudio> {
        std::mem::take(&mut self.done)
    }

    /// A copy of the open clip of `event_id` so far (pre-roll and every frame captured since),
    /// or `None` when no clip of it is open. The clip goes on recording.
    pub fn snapshot(&self, event_id: &str) -> Option<FinishedAudio> {
        let a = self.active.as_ref().filter(|a| a.event_id == event_id)?;
        Some(FinishedAudio {
            event_id: a.event_id.clone(),
            sample_rate: self.rate,
            start_s: a.start_s,
            samples: a.samples.clone(),
        })
    }

    /// Whether a clip of `event_id` is open.
    pub fn recording(&self, event_id: &str) -> bool {
        self.active.as_ref().is_some_and(|a| a.event_id == event_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ramp makes every sample tell its own stream frame.
    fn ramp(from: usize, n: usize) -> Vec<f32> {
        (from..from + n).map(|i| i as f32).collect()
    }

    #[test]
    fn clip_holds_pre_roll_to_end_plus_post_roll() {
        let mut r = ClipRecorder::new(4.0);
        let rate = 100;
        let mut at = 0;
        // 10 s in blocks of 0.3 s.
        while at < 1000 {
            r.push(&ramp(at, 30), rate, 0);
            at += 30;
        }
        // 10.2 s pushed; onset at 8.5 s, pre-roll 2 s: from frame 650, still in the 4 s ring.
        r.begin("m/01", 6.5, 60.0);
        assert!(r.recording("m/01"));
        // The clip so far: pre-roll to the latest frame pushed; recording goes on.
        let so_far = r.snapshot("m/01").expect("a clip is open");
        assert_eq!(so_far.samples.first(), Some(&650.0));
        assert_eq!(so_far.samples.last(), Some(&1019.0));
        assert!((so_far.start_s - 6.5).abs() < 1e-9);
        assert!(r.snapshot("m/02").is_none());
        r.end("m/01", 11.0);
        while at < 1300 {
            r.push(&ramp(at, 30), rate, 0);
            at += 30;
        }
        let done = r.take_done();
        assert_eq!(done.len(), 1);
        let c = &done[0];
        assert_eq!(c.samples.len(), 450, "6.5 s .. 11 s at 100 Hz");
        assert_eq!(c.samples[0], 650.0);
        assert_eq!(*c.samples.last().unwrap(), 1099.0);
        assert!((c.start_s - 6.5).abs() < 1e-9);
    }

    #[test]
    fn pre_roll_older_than_the_ring_starts_at_its_oldest_and_max_length_cuts() {
        let mut r = ClipRecorder::new(2.0);
        for i in 0..10 {
            r.push(&ramp(i * 100, 100), 100, 0);
        }
        r.begin("m/02", 1.0, 3.0);
        for i in 10..20 {
            r.push(&ramp(i * 100, 100), 100, 0);
        }
        let done = r.take_done();
        assert_eq!(done[0].samples.len(), 300);
        assert_eq!(done[0].samples[0], 800.0, "ring held 8 s..10 s");
    }

    #[test]
    fn source_end_finishes_the_clip() {
        let mut r = ClipRecorder::new(2.0);
        r.push(&ramp(0, 100), 100, 0);
        r.begin("m/03", 0.5, 30.0);
        r.source_ended();
        let d = r.take_done();
        assert_eq!(d[0].samples.len(), 50);
    }
}
