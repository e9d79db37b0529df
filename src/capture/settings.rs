//! How a device source is configured: the part of earshot's config file under a device
//! monitor's `capture` table, validated once at the edge.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::CaptureError;

/// Sample formats earshot asks devices for; all are converted to f32 in the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleFormat {
    F32,
    I16,
    I24,
    I32,
}

impl SampleFormat {
    pub(crate) fn to_cpal(self) -> cpal::SampleFormat {
        match self {
            SampleFormat::F32 => cpal::SampleFormat::F32,
            SampleFormat::I16 => cpal::SampleFormat::I16,
            SampleFormat::I24 => cpal::SampleFormat::I24,
            SampleFormat::I32 => cpal::SampleFormat::I32,
        }
    }

    pub(crate) fn from_cpal(f: cpal::SampleFormat) -> Option<Self> {
        match f {
            cpal::SampleFormat::F32 => Some(SampleFormat::F32),
            cpal::SampleFormat::I16 => Some(SampleFormat::I16),
            cpal::SampleFormat::I24 => Some(SampleFormat::I24),
            cpal::SampleFormat::I32 => Some(SampleFormat::I32),
            _ => None,
        }
    }
}

/// Exponential backoff between attempts to (re)open a device.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Wait before the first retry.
    #[serde(with = "serde_duration")]
    pub initial: Duration,
    /// Longest wait between retries (a device that comes back is picked up within this).
    #[serde(with = "serde_duration")]
    pub max: Duration,
    /// Each failed attempt multiplies the wait by this.
    pub factor: f64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
        }
    }
}

impl RetrySettings {
    /// Wait before attempt number `failures` (0 = after the first failure).
    pub fn delay(&self, failures: u32) -> Duration {
        let f = self.factor.max(1.0).powi(failures.min(64) as i32);
        let secs = (self.initial.as_secs_f64() * f).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// Which device to capture and how. Embedded in earshot's config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceSettings {
    /// A cpal device id as `earshot devices` prints it (e.g. `alsa:pulse`, `alsa:hw:CARD=USB,DEV=0`),
    /// or a case-insensitive substring of its description. None = the host's default input.
    pub device: Option<String>,
    /// None = the device's default rate.
    pub sample_rate: Option<u32>,
    /// None = the device's default format (f32 if that is not one of F32/I16/I24/I32).
    pub format: Option<SampleFormat>,
    /// None = the device's default channel count.
    pub channels: Option<u16>,
    /// Ring between the audio callback and the consumer: how far the consumer may fall behind
    /// before audio is dropped.
    pub ring_seconds: f32,
    /// No data callback for this long = the device is lost (twice this for the first callback
    /// of a new stream).
    #[serde(with = "serde_duration")]
    pub stall_timeout: Duration,
    /// This many stream errors within one second = the device is lost (ALSA through PulseAudio
    /// reports a vanished source as thousands of I/O errors a second, never as "disconnected").
    pub error_storm: u32,
    pub retry: RetrySettings,
    /// How long to wait for a lost stream to be dropped before abandoning its thread.
    #[serde(with = "serde_duration")]
    pub drop_timeout: Duration,
    /// How long to wait for a stream to be built before giving up on that attempt.
    #[serde(with = "serde_duration")]
    pub open_timeout: Duration,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        DeviceSettings {
            device: None,
            sample_rate: None,
            format: None,
            channels: None,
            ring_seconds: 5.0,
            // PulseAudio's null sink can deliver its first block 2 s late.
            stall_timeout: Duration::from_secs(4),
            error_storm: 50,
            retry: RetrySettings::default(),
            drop_timeout: Duration::from_secs(3),
            open_timeout: Duration::from_secs(10),
        }
    }
}

impl DeviceSettings {
    pub(crate) fn validate(&self) -> Result<(), CaptureError> {
        let bad = |m: String| Err(CaptureError::Settings(m));
        if !(self.ring_seconds.is_finite()
            && self.ring_seconds >= 0.05
            && self.ring_seconds <= 600.0)
        {
            return bad(format!(
                "ring_seconds = {} (use 0.05 to 600; a few seconds is typical)",
                self.ring_seconds
            ));
        }
        if self.channels == Some(0) || self.channels.is_some_and(|c| c > 64) {
            return bad("channels must be 1 to 64".into());
        }
        if self
            .sample_rate
            .is_some_and(|r| !(1000..=768_000).contains(&r))
        {
            return bad("sample_rate must be 1000 to 768000 Hz".into());
        }
        if self.stall_timeout < Duration::from_millis(100) {
            return bad("stall_timeout must be at least 100ms".into());
        }
        if self.error_storm == 0 {
            return bad("error_storm must be at least 1 error per second".into());
        }
        if self.retry.initial.is_zero() || self.retry.max < self.retry.initial {
            return bad("retry.initial must be > 0 and retry.max >= retry.initial".into());
        }
        if self.device.as_deref().is_some_and(|d| d.trim().is_empty()) {
            return bad("device is empty: remove it to use the default input device".into());
        }
        Ok(())
    }
}

/// Durations in config: "500ms", "3s", "1m" (humantime) or a number of seconds.
pub mod serde_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Secs(f64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Text(s) => humantime::parse_duration(s.trim()).map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?} ({e}); write e.g. \"500ms\" or \"3s\""
                ))
            }),
            Raw::Secs(x) if x.is_finite() && x >= 0.0 => Ok(Duration::from_secs_f64(x)),
            Raw::Secs(x) => Err(serde::de::Error::custom(format!(
                "invalid duration {x}: must be a non-negative number of seconds"
            ))),
        }
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_deserialize_with_defaults_and_reject_unknown_fields() {
        let s: DeviceSettings = toml::from_str(
            "device = \"alsa:pulse\"\nformat = \"i16\"\nstall_timeout = \"2s\"\n[retry]\ninitial = 0.25\n",
        )
        .unwrap();
        assert_eq!(s.device.as_deref(), Some("alsa:pulse"));
        assert_eq!(s.format, Some(SampleFormat::I16));
        assert_eq!(s.stall_timeout, Duration::from_secs(2));
        assert_eq!(s.retry.initial, Duration::from_millis(250));
        assert_eq!(s.retry.max, RetrySettings::default().max);
        assert!(toml::from_str::<DeviceSettings>("devcie = \"x\"").is_err());
        assert!(toml::from_str::<DeviceSettings>("stall_timeout = \"soon\"").is_err());
    }

    #[test]
    fn backoff_grows_and_caps() {
        let r = RetrySettings {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            factor: 2.0,
        };
        assert_eq!(r.delay(0), Duration::from_millis(100));
        assert_eq!(r.delay(3), Duration::from_millis(800));
        assert_eq!(r.delay(10), Duration::from_secs(1));
    }
}
