//! Finding the configured device and choosing its stream format: the part of opening a device
//! that decides *what* to open, and says why in the log.

use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait};

use super::settings::{DeviceSettings, SampleFormat};

/// Why an attempt to open the device failed; all of these are retried.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{what}: {err}")]
    Cpal {
        what: &'static str,
        err: cpal::Error,
    },
    #[error("opening the stream took longer than {0:?}")]
    Timeout(Duration),
}

/// Finds the configured device. Returns it, its id and why it was chosen.
pub(crate) fn find_device(spec: Option<&str>) -> Result<(cpal::Device, String, String), OpenError> {
    let id_of = |d: &cpal::Device| d.id().map(|i| i.to_string()).unwrap_or_default();
    let Some(spec) = spec else {
        let host = cpal::default_host();
        let d = host.default_input_device().ok_or_else(|| {
            OpenError::NotFound(format!(
                "host {} has no default input device; set `device` (see `earshot devices`)",
                host.id().name()
            ))
        })?;
        let id = id_of(&d);
        return Ok((
            d,
            id,
            "no device configured: the host's default input".into(),
        ));
    };
    if let Ok(id) = spec.parse::<cpal::DeviceId>()
        && let Ok(host) = cpal::host_from_id(id.host())
        && let Some(d) = host.device_by_id(&id)
    {
        let id = id_of(&d);
        return Ok((d, id, format!("configured id {spec:?}")));
    }
    let needle = spec.to_lowercase();
    let mut seen = Vec::new();
    let mut matches = Vec::new();
    for host_id in cpal::available_hosts() {
        let Ok(host) = cpal::host_from_id(host_id) else {
            continue;
        };
        let Ok(devices) = host.input_devices() else {
            continue;
        };
        for d in devices {
            let id = id_of(&d);
            let name = d
                .description()
                .map(|x| x.name().to_string())
                .unwrap_or_default();
            let short = id.split_once(':').map(|(_, s)| s).unwrap_or(&id);
            if id == spec || short == spec || name.to_lowercase().contains(&needle) {
                matches.push((d, id.clone(), name.clone()));
            }
            seen.push(id);
        }
    }
    if matches.is_empty() {
        return Err(OpenError::NotFound(format!(
            "no input device with id or description {spec:?} (available now: {}); \
             it may not be plugged in yet",
            if seen.is_empty() {
                "none".to_string()
            } else {
                seen.join(", ")
            }
        )));
    }
    if matches.len() > 1 {
        let all: Vec<&str> = matches.iter().map(|m| m.1.as_str()).collect();
        tracing::warn!(
            "{} devices match {spec:?} ({}); using the first; set `device` to an exact id",
            matches.len(),
            all.join(", ")
        );
    }
    let (d, id, name) = matches.swap_remove(0);
    Ok((d, id, format!("description {name:?} matches {spec:?}")))
}

/// Picks format, rate and channels: configured values win, the device default fills the rest.
pub(crate) fn choose_config(
    device: &cpal::Device,
    settings: &DeviceSettings,
) -> Result<(cpal::StreamConfig, SampleFormat, String), OpenError> {
    let default = device.default_input_config();
    let all_given =
        settings.format.is_some() && settings.sample_rate.is_some() && settings.channels.is_some();
    let default = match default {
        Ok(d) => Some(d),
        // On ALSA an absent device often shows first here; with everything configured we can
        // still try (building will tell), otherwise this attempt fails and is retried.
        Err(_) if all_given => None,
        Err(err) => {
            return Err(OpenError::Cpal {
                what: "cannot read the device's default input format",
                err,
            });
        }
    };
    let src = |configured: bool| {
        if configured {
            "configured"
        } else {
            "device default"
        }
    };
    let format = settings
        .format
        .or_else(|| {
            default
                .as_ref()
                .and_then(|d| SampleFormat::from_cpal(d.sample_format()))
        })
        .unwrap_or(SampleFormat::F32);
    // Invariant: `default` is Some unless all three settings are Some.
    let rate = settings
        .sample_rate
        .or_else(|| default.as_ref().map(|d| d.sample_rate()))
        .unwrap_or(48_000);
    let channels = settings
        .channels
        .or_else(|| default.as_ref().map(|d| d.channels()))
        .unwrap_or(1);
    if let Ok(ranges) = device.supported_input_configs() {
        let ranges: Vec<_> = ranges.collect();
        let ok = ranges.iter().any(|r| {
            r.sample_format() == format.to_cpal()
                && r.channels() == channels
                && r.contains_rate(rate)
        });
        if !ranges.is_empty() && !ok {
            let offered: Vec<String> = ranges
                .iter()
                .map(|r| {
                    format!(
                        "{} {} ch {}-{} Hz",
                        r.sample_format(),
                        r.channels(),
                        r.min_sample_rate(),
                        r.max_sample_rate()
                    )
                })
                .collect();
            return Err(OpenError::Unsupported(format!(
                "the device does not offer {format:?} {channels} ch {rate} Hz; it offers: {}",
                offered.join("; ")
            )));
        }
    }
    let choice = format!(
        "{} ({}) {} ch ({}) {} Hz ({})",
        format.to_cpal(),
        src(settings.format.is_some()),
        channels,
        src(settings.channels.is_some()),
        rate,
        src(settings.sample_rate.is_some()),
    );
    let config = cpal::StreamConfig {
        channels,
        sample_rate: rate,
        buffer_size: cpal::BufferSize::Default,
    };
    Ok((config, format, choice))
}
