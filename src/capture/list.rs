//! Enumerates hosts and input devices for `earshot devices`, so an engineer can copy the exact
//! id into the config instead of guessing.

use cpal::traits::{DeviceTrait, HostTrait};
use serde::Serialize;

/// One audio host (ALSA, JACK, ...).
#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    pub host: String,
    /// Why the host could not be listed, if it could not.
    pub error: Option<String>,
    pub devices: Vec<DeviceInfo>,
}

/// One input-capable device.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    /// What to put in `device = "..."`.
    pub id: String,
    pub description: String,
    /// Whether this is what an empty `device` setting would use.
    pub is_default: bool,
    pub default_config: Option<ConfigInfo>,
    /// Why the default config could not be read (often: device busy or absent).
    pub default_config_error: Option<String>,
    pub supported: Vec<RangeInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigInfo {
    pub format: String,
    pub channels: u16,
    pub sample_rate: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct RangeInfo {
    pub format: String,
    pub channels: u16,
    pub min_sample_rate: u32,
    pub max_sample_rate: u32,
}

/// Lists every available host's input devices. Never fails as a whole: a host or device that
/// cannot be queried is reported with its error.
pub fn list_inputs() -> Vec<HostInfo> {
    let default_host = cpal::default_host().id();
    let mut out = Vec::new();
    for host_id in cpal::available_hosts() {
        let mut info = HostInfo {
            host: host_id.name().to_string(),
            error: None,
            devices: Vec::new(),
        };
        let host = match cpal::host_from_id(host_id) {
            Ok(h) => h,
            Err(e) => {
                info.error = Some(e.to_string());
                out.push(info);
                continue;
            }
        };
        let default_id = if host_id == default_host {
            host.default_input_device()
                .and_then(|d| d.id().ok())
                .map(|i| i.to_string())
        } else {
            None
        };
        match host.input_devices() {
            Ok(devices) => {
                for d in devices {
                    info.devices.push(describe(&d, default_id.as_deref()));
                }
            }
            Err(e) => info.error = Some(e.to_string()),
        }
        out.push(info);
    }
    out
}

fn describe(d: &cpal::Device, default_id: Option<&str>) -> DeviceInfo {
    let id = d
        .id()
        .map(|i| i.to_string())
        .unwrap_or_else(|e| format!("?({e})"));
    let description = d.description().map(|x| x.to_string()).unwrap_or_default();
    let (default_config, default_config_error) = match d.default_input_config() {
        Ok(c) => (
            Some(ConfigInfo {
                format: c.sample_format().to_string(),
                channels: c.channels(),
                sample_rate: c.sample_rate(),
            }),
            None,
        ),
        Err(e) => (None, Some(e.to_string())),
    };
    let supported = d
        .supported_input_configs()
        .map(|it| {
            it.map(|r| RangeInfo {
                format: r.sample_format().to_string(),
                channels: r.channels(),
                min_sample_rate: r.min_sample_rate(),
                max_sample_rate: r.max_sample_rate(),
            })
            .collect()
        })
        .unwrap_or_default();
    DeviceInfo {
        is_default: default_id == Some(id.as_str()),
        id,
        description,
        default_config,
        default_config_error,
        supported,
    }
}

/// The human-readable listing: ranges that differ only in rate or channels are merged per
/// format to keep it short.
pub fn render_text(hosts: &[HostInfo]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for h in hosts {
        let _ = writeln!(s, "host {}", h.host);
        if let Some(e) = &h.error {
            let _ = writeln!(s, "  (cannot list: {e})");
        }
        if h.devices.is_empty() && h.error.is_none() {
            let _ = writeln!(s, "  (no input devices)");
        }
        for d in &h.devices {
            let _ = writeln!(
                s,
                "  {}{}  {}",
                d.id,
                if d.is_default { " (default)" } else { "" },
                d.description
            );
            match (&d.default_config, &d.default_config_error) {
                (Some(c), _) => {
                    let _ = writeln!(
                        s,
                        "      default: {} {} ch {} Hz",
                        c.format, c.channels, c.sample_rate
                    );
                }
                (None, Some(e)) => {
                    let _ = writeln!(s, "      default: unavailable ({e})");
                }
                (None, None) => {}
            }
            let mut formats: Vec<&str> = d.supported.iter().map(|r| r.format.as_str()).collect();
            formats.dedup();
            for f in formats {
                let rs: Vec<&RangeInfo> = d.supported.iter().filter(|r| r.format == f).collect();
                let ch_min = rs.iter().map(|r| r.channels).min().unwrap_or(0);
                let ch_max = rs.iter().map(|r| r.channels).max().unwrap_or(0);
                let lo = rs.iter().map(|r| r.min_sample_rate).min().unwrap_or(0);
                let hi = rs.iter().map(|r| r.max_sample_rate).max().unwrap_or(0);
                let _ = writeln!(s, "      supports: {f} {ch_min}-{ch_max} ch {lo}-{hi} Hz");
            }
        }
    }
    s
}
