//! What goes on the wire: one alert in earshot's neutral form ([`Alert`], what the outbox
//! stores), turned into Alertmanager's webhook payload (version 4) for webhook receivers or
//! into an Alertmanager API v2 alert; plus the labels fingerprint and the HMAC signature.
//!
//! Why Alertmanager's shapes: plant teams already run receivers for them (Teams/Slack/
//! PagerDuty bridges, ticketing webhooks), so earshot's alerts work there unchanged. The
//! `fingerprint` is computed the way Alertmanager computes it (FNV-1a 64 over the sorted label
//! set), so the same alert has the same fingerprint whether a receiver gets it from earshot
//! directly or through Alertmanager. Every alert carries the label `event_id` (the event's
//! identity): Alertmanager treats alerts with equal labels as one alert, and two events of one
//! monitor must not merge.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::events::{AlertStatus, EventRecord};

/// The label that keeps different events of one monitor apart in Alertmanager.
pub const EVENT_LABEL: &str = "event_id";
/// Alertmanager's "not set" time, which it sends as `endsAt` of firing alerts.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One alert as the outbox keeps it: everything needed to build either wire format later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Event kind, e.g. `anomaly_started`.
    pub kind: String,
    pub status: AlertStatus,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt", default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
}

impl Alert {
    /// The alert of one event record: its labels plus [`EVENT_LABEL`], its annotations plus a
    /// `description` for humans.
    pub fn from_record(r: &EventRecord) -> Alert {
        let mut labels = r.labels.clone();
        labels
            .entry(EVENT_LABEL.to_string())
            .or_insert_with(|| r.fingerprint.clone());
        let mut annotations = r.annotations.clone();
        if !annotations.contains_key("description") {
            annotations.insert("description".into(), describe(r));
        }
        Alert {
            kind: r.kind.clone(),
            status: r.status,
            labels,
            annotations,
            starts_at: r.starts_at.clone(),
            ends_at: r.ends_at.clone(),
        }
    }

    /// Alertmanager's fingerprint of the label set.
    pub fn fingerprint(&self) -> String {
        format!("{:016x}", labels_fingerprint(&self.labels))
    }

    /// The event this alert belongs to (its [`EVENT_LABEL`]).
    pub fn event_id(&self) -> &str {
        self.labels
            .get(EVENT_LABEL)
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// A sentence or two from the record's annotations: what, where, since when, which scores.
fn describe(r: &EventRecord) -> String {
    let monitor = r.labels.get("monitor").map(String::as_str).unwrap_or("?");
    let mut s = format!(
        "earshot {} on monitor {monitor} (event {}), started {}",
        r.kind.replace('_', " "),
        r.fingerprint,
        r.starts_at
    );
    if let Some(end) = &r.ends_at {
        s.push_str(&format!(", ended {end}"));
    }
    s.push('.');
    let scorers: Vec<&str> = r
        .annotations
        .keys()
        .filter_map(|k| k.strip_prefix("peak_"))
        .collect();
    for sc in scorers {
        let a = |p: &str| {
            r.annotations
                .get(&format!("{p}_{sc}"))
                .map(String::as_str)
                .unwrap_or("?")
        };
        s.push_str(&format!(
            " {sc}: peak {} mean {} threshold {}.",
            a("peak"),
            a("mean"),
            a("threshold")
        ));
    }
    if let Some(f) = r.annotations.get("fired").filter(|f| !f.is_empty()) {
        s.push_str(&format!(" Fired: {f}."));
    }
    if let Some(l) = r.annotations.get("sounds_like") {
        s.push_str(&format!(" Sounds like (sound catalog): {l}."));
    }
    s
}

/// FNV-1a 64 over `name 0xff value 0xff` of the labels sorted by name: Alertmanager's (and
/// Prometheus') label-set fingerprint.
pub fn labels_fingerprint(labels: &BTreeMap<String, String>) -> u64 {
    let mut h = Fnv64::new();
    for (k, v) in labels {
        h.write(k.as_bytes());
        h.write(&[0xff]);
        h.write(v.as_bytes());
        h.write(&[0xff]);
    }
    h.finish()
}

/// FNV-1a, 64 bit (also the outbox's line checksum: it only has to catch torn lines).
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Fnv64 {
    pub fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv64 {
    fn default() -> Self {
        Self::new()
    }
}

/// Fields of the webhook payload that come from the target and the daemon, not the alert.
#[derive(Debug, Clone)]
pub struct WebhookContext<'a> {
    /// The target's name, sent as `receiver`.
    pub receiver: &'a str,
    pub external_url: &'a str,
}

/// The evidence URLs of an anomaly alert (its event's page, clip and spectrogram on the
/// events page), when earshot's external URL is known.
fn evidence_urls(a: &Alert, external_url: &str) -> Option<crate::evidence::EvidenceUrls> {
    if external_url.is_empty() || !a.kind.starts_with("anomaly") {
        return None;
    }
    crate::evidence::EvidenceUrls::of(external_url, a.event_id())
}

/// `generatorURL` of an alert: where a human looks first: the event's page for an anomaly
/// (its spectrogram and clip), earshot's metrics page otherwise.
pub fn generator_url(a: &Alert, external_url: &str) -> String {
    if external_url.is_empty() {
        return String::new();
    }
    match evidence_urls(a, external_url) {
        Some(u) => u.page,
        None => format!("{}/metrics", external_url.trim_end_matches('/')),
    }
}

/// The alert's annotations plus `clip_url` and `spectrogram_url` for an anomaly. (The clip so
/// far is written as the event is detected, usually before the alert is delivered, and
/// replaced by the whole clip when it ends; a clip skipped for lack of disk space answers 404.)
fn annotations(a: &Alert, external_url: &str) -> BTreeMap<String, String> {
    let mut out = a.annotations.clone();
    if let Some(u) = evidence_urls(a, external_url) {
        out.insert("clip_url".into(), u.clip);
        out.insert("spectrogram_url".into(), u.image);
    }
    out
}

/// The labels a notification is grouped by (Alertmanager's `groupLabels`): one notification
/// per event, so the event's identity.
const GROUP_BY: &[&str] = &["alertname", "monitor", EVENT_LABEL];

/// Alertmanager's webhook payload (version 4) for one alert.
pub fn webhook_payload(a: &Alert, ctx: &WebhookContext) -> Value {
    let status = match a.status {
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
    };
    let group: BTreeMap<&str, &str> = GROUP_BY
        .iter()
        .filter_map(|k| a.labels.get(*k).map(|v| (*k, v.as_str())))
        .collect();
    let group_key = format!(
        "{{}}:{{{}}}",
        group
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ends_at = match (a.status, &a.ends_at) {
        (AlertStatus::Resolved, Some(e)) => e.clone(),
        _ => ZERO_TIME.to_string(),
    };
    let annotations = annotations(a, ctx.external_url);
    json!({
        "receiver": ctx.receiver,
        "status": status,
        "alerts": [{
            "status": status,
            "labels": a.labels,
            "annotations": annotations,
            "startsAt": a.starts_at,
            "endsAt": ends_at,
            "generatorURL": generator_url(a, ctx.external_url),
            "fingerprint": a.fingerprint(),
        }],
        "groupLabels": group,
        "commonLabels": a.labels,
        "commonAnnotations": annotations,
        "externalURL": ctx.external_url,
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
    })
}

/// One alert of Alertmanager's `POST /api/v2/alerts` body. A firing alert gets `endsAt` =
/// `firing_until` (refreshed by every resend); a resolved one its real end.
pub fn alertmanager_alert(a: &Alert, firing_until: &str, external_url: &str) -> Value {
    let ends_at = match (a.status, &a.ends_at) {
        (AlertStatus::Resolved, Some(e)) => not_in_future(e),
        (AlertStatus::Resolved, None) => not_in_future(firing_until),
        (AlertStatus::Firing, _) => firing_until.to_string(),
    };
    let mut v = json!({
        "labels": a.labels,
        "annotations": annotations(a, external_url),
        "startsAt": a.starts_at,
        "endsAt": ends_at,
    });
    let g = generator_url(a, external_url);
    if !g.is_empty() {
        v["generatorURL"] = Value::String(g);
    }
    v
}

/// `t`, or now if `t` is later. An event's end comes from stream time and can lie a few ms
/// ahead of the wall clock; Alertmanager would take such a "resolved" alert as still firing
/// and keep the longer `endsAt` of the last re-send (measured: the alert then stayed firing
/// for four resend intervals).
fn not_in_future(t: &str) -> String {
    let now = std::time::SystemTime::now();
    match humantime::parse_rfc3339_weak(t.trim_end_matches('Z')) {
        Ok(when) if when <= now => t.to_string(),
        _ => humantime::format_rfc3339_millis(now).to_string(),
    }
}

/// HMAC-SHA256 (RFC 2104) of `body` under `key`.
pub fn hmac_sha256(key: &[u8], body: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(body);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// The signature header value: `sha256=<hex of HMAC-SHA256(body)>` (GitHub's convention).
pub fn signature(key: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(key, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test cases 1, 2 and 6 (key longer than a block).
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn fnv_matches_published_vectors() {
        // From the FNV reference test suite (FNV-1a 64).
        let h = |s: &[u8]| {
            let mut f = Fnv64::new();
            f.write(s);
            f.finish()
        };
        assert_eq!(h(b""), 0xcbf29ce484222325);
        assert_eq!(h(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(h(b"foobar"), 0x85944171f73967e8);
    }

    fn alert(status: AlertStatus) -> Alert {
        Alert {
            kind: "anomaly_started".into(),
            status,
            labels: BTreeMap::from([
                ("alertname".into(), "EarshotAnomaly".into()),
                ("monitor".into(), "press-1".into()),
                (EVENT_LABEL.into(), "press-1/0a1b".into()),
            ]),
            annotations: BTreeMap::from([("summary".into(), "press sounds abnormal".into())]),
            starts_at: "2026-01-01T00:00:00.000Z".into(),
            ends_at: (status == AlertStatus::Resolved).then(|| "2026-01-01T00:01:00.000Z".into()),
        }
    }

    #[test]
    fn webhook_payload_has_alertmanagers_fields() {
        let ctx = WebhookContext {
            receiver: "tickets",
            external_url: "http://edge:9847",
        };
        let p = webhook_payload(&alert(AlertStatus::Firing), &ctx);
        for k in [
            "receiver",
            "status",
            "alerts",
            "groupLabels",
            "commonLabels",
            "commonAnnotations",
            "externalURL",
            "version",
            "groupKey",
            "truncatedAlerts",
        ] {
            assert!(p.get(k).is_some(), "{k} missing: {p}");
        }
        assert_eq!(p["version"], "4");
        let a = &p["alerts"][0];
        assert_eq!(a["endsAt"], ZERO_TIME);
        assert_eq!(a["generatorURL"], "http://edge:9847/events/press-1/0a1b");
        assert_eq!(
            a["annotations"]["clip_url"],
            "http://edge:9847/events/press-1/0a1b/clip.wav"
        );
        assert_eq!(
            a["annotations"]["spectrogram_url"],
            "http://edge:9847/events/press-1/0a1b/spectrogram.png"
        );
        let mut op = alert(AlertStatus::Firing);
        op.kind = "no_signal".into();
        let o = webhook_payload(&op, &ctx);
        assert_eq!(o["alerts"][0]["generatorURL"], "http://edge:9847/metrics");
        assert!(o["alerts"][0]["annotations"].get("clip_url").is_none());
        assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16);
        let r = webhook_payload(&alert(AlertStatus::Resolved), &ctx);
        assert_eq!(r["status"], "resolved");
        assert_eq!(r["alerts"][0]["endsAt"], "2026-01-01T00:01:00.000Z");
        assert_eq!(r["alerts"][0]["fingerprint"], a["fingerprint"]);
    }
}
