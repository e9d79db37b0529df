//! The events page: a small read-only web UI on the metrics endpoint (same listener, same
//! bind address; it has no authentication of its own, like `/metrics`). Server-rendered with
//! minijinja; no JavaScript.
//!
//! - `GET /events`: per monitor a status line (state, input level, last scores) and its
//!   recent events, each with its spectrogram, an audio player and a download link;
//! - `GET /events/<monitor>/<hex>`: one event; `.../clip.wav`, `.../spectrogram.png` its files;
//! - `GET /api/events?monitor=M&since=T&limit=N`: the same list as JSON, for scripts.
//!
//! Only complete events (see [`super::store`]) are listed or served.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::store::Listed;
use super::{CLIP_FILE, Evidence, EvidenceUrls, IMAGE_FILE};
use crate::metrics::{Health, Metrics};

/// What the page handlers share.
#[derive(Clone)]
pub struct PageState {
    evidence: Arc<Evidence>,
    metrics: Arc<Metrics>,
    health: Health,
}

impl PageState {
    pub fn new(evidence: Arc<Evidence>, metrics: Arc<Metrics>, health: Health) -> Self {
        Self {
            evidence,
            metrics,
            health,
        }
    }
}

/// The page's routes, to merge into the metrics endpoint's router.
pub fn router(state: PageState) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/events", get(index))
        .route("/events/{monitor}/{hex}", get(event_page))
        .route("/events/{monitor}/{hex}/{file}", get(event_file))
        .route("/api/events", get(api_events))
        .with_state(state)
}

/// One event as the page and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub event_id: String,
    pub monitor: String,
    pub machine: String,
    pub start: String,
    pub end: Option<String>,
    pub duration_s: Option<f64>,
    pub peak_scorer: Option<String>,
    pub peak: Option<f64>,
    pub threshold: Option<f64>,
    pub reason: Option<String>,
    /// "bearing squeal (0.93), belt slip (0.71)": what the event sounds like in the catalog.
    pub sounds_like: Option<String>,
    /// The benign action when the nearest label is benign ("record", "low_severity").
    pub benign: Option<String>,
    pub clip_seconds: f64,
    pub sample_rate: u32,
    pub image: bool,
    /// The clip so far (written at detection), not yet replaced by the whole clip.
    pub partial: bool,
    pub urls: EvidenceUrls,
    /// Where the files are on disk (for `earshot events`).
    pub clip_path: String,
    pub image_path: Option<String>,
    /// The command that marks this event normal (`earshot feedback`), ready to paste.
    pub feedback_command: String,
}

impl EventView {
    pub fn of(l: &Listed, base: &str) -> Option<Self> {
        let m = &l.meta;
        let peak = m.peak();
        Some(Self {
            event_id: m.event_id.clone(),
            monitor: m.monitor.clone(),
            machine: m
                .event
                .labels
                .get("machine")
                .cloned()
                .unwrap_or_else(|| m.monitor.clone()),
            start: m.event.start.wall.clone(),
            end: m.event.end.as_ref().map(|e| e.wall.clone()),
            duration_s: m.duration_s(),
            peak_scorer: peak.map(|p| p.0.to_string()),
            peak: peak.map(|p| p.1),
            threshold: peak.map(|p| p.2),
            reason: m.event.reason.map(|r| format!("{r:?}").to_lowercase()),
            sounds_like: m
                .event
                .sounds_like
                .as_ref()
                .map(|s| s.text())
                .filter(|t| !t.is_empty()),
            benign: m
                .event
                .sounds_like
                .as_ref()
                .and_then(|s| s.benign)
                .map(|a| a.as_str().to_string()),
            clip_seconds: m.clip_seconds,
            sample_rate: m.sample_rate,
            image: l.image.is_some(),
            partial: m.partial,
            urls: EvidenceUrls::of(base, &m.event_id)?,
            clip_path: l.clip.display().to_string(),
            image_path: l.image.as_ref().map(|p| p.display().to_string()),
            feedback_command: format!("earshot feedback {} --normal", shell_word(&m.event_id)),
        })
    }
}

/// `s` as one shell word: as is when it is plain, else single-quoted (monitor names may hold
/// spaces or quotes).
fn shell_word(s: &str) -> String {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | ':' | '@'));
    if plain && !s.is_empty() {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Events of `monitor` (all: None) since `since` (RFC 3339; by onset), newest first.
pub fn events(
    evidence: &Evidence,
    monitor: Option<&str>,
    since: Option<std::time::SystemTime>,
    limit: usize,
    base: &str,
) -> Vec<EventView> {
    evidence_list(&evidence.store, monitor, since, limit, base)
}

/// The listing behind the page, the API and `earshot events`.
pub fn evidence_list(
    store: &super::Store,
    monitor: Option<&str>,
    since: Option<std::time::SystemTime>,
    limit: usize,
    base: &str,
) -> Vec<EventView> {
    store
        .list(monitor)
        .iter()
        .filter(|l| {
            since.is_none_or(|s| {
                humantime::parse_rfc3339_weak(&l.meta.event.start.wall).is_ok_and(|t| t >= s)
            })
        })
        .filter_map(|l| EventView::of(l, base))
        .take(limit)
        .collect()
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>earshot events</title>
<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
.status { background: #f3f3f3; padding: .4em .6em; border-radius: 4px; }
.event { border-top: 1px solid #ccc; padding: .8em 0; }
.event img { max-width: 100%; display: block; margin: .4em 0; }
.warn { color: #a40; }
</style></head>
<body>
<h1>earshot events</h1>
{% if paused %}<p class="warn" id="paused">Anomaly clips are paused: the state directory is low on disk space.</p>{% endif %}
{% for m in monitors %}
<section class="monitor" id="monitor-{{ m.name }}">
<h2>{{ m.name }}</h2>
<p class="status">{{ m.state }}{% if m.level_dbfs is not none %} · level {{ "%.1f"|format(m.level_dbfs) }} dBFS{% endif %}{% for s in m.scores %} · {{ s.0 }} {{ "%.3f"|format(s.1) }} (threshold {{ "%.3f"|format(s.2) }}){% endfor %}</p>
{% for e in m.events %}
{% include "event.html" %}
{% else %}
<p>No events with evidence.</p>
{% endfor %}
</section>
{% endfor %}
</body></html>
"#;

const EVENT: &str = r#"<article class="event" data-event-id="{{ e.event_id }}">
<h3><a href="{{ e.urls.page }}">{{ e.start }}</a> · {{ e.machine }}</h3>
<p>{% if e.partial %}<span class="partial">clip up to the detection: the whole clip replaces it when the event ends (if it stays, earshot stopped first)</span>{% elif e.duration_s is not none %}duration {{ "%.1f"|format(e.duration_s) }} s{% else %}still open when the clip ended{% endif %}
{% if e.peak is not none %} · peak {{ e.peak_scorer }} {{ "%.3f"|format(e.peak) }} vs threshold {{ "%.3f"|format(e.threshold) }}{% endif %}
{% if e.reason %} · ended: {{ e.reason }}{% endif %}</p>
{% if e.sounds_like %}<p class="sounds-like">sounds like: {{ e.sounds_like }}{% if e.benign %} <span class="benign">(benign: {{ e.benign }})</span>{% endif %}</p>{% endif %}
{% if e.image %}<img class="spectrogram" src="{{ e.urls.image }}" alt="spectrogram of {{ e.event_id }}">{% endif %}
<audio class="clip" controls preload="none" src="{{ e.urls.clip }}"></audio>
<a class="download" href="{{ e.urls.clip }}" download>download clip ({{ "%.1f"|format(e.clip_seconds) }} s, {{ e.sample_rate }} Hz WAV)</a>
<p class="feedback">That was normal? On this machine: <code>{{ e.feedback_command }}</code> (undo: <code>--undo</code> instead of <code>--normal</code>)</p>
</article>
"#;

const ONE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>earshot event {{ e.event_id }}</title>
<style>body { font-family: sans-serif; margin: 1.5em; } img { max-width: 100%; }</style></head>
<body><p><a href="/events">all events</a></p><h1>{{ e.event_id }}</h1>
{% include "event.html" %}
</body></html>
"#;

fn templates() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        // The templates are constants: an error here is a bug caught by the tests.
        for (name, src) in [
            ("page.html", PAGE),
            ("event.html", EVENT),
            ("one.html", ONE),
        ] {
            if let Err(e) = env.add_template(name, src) {
                tracing::error!(template = name, error = %e, "bad template");
            }
        }
        env
    })
}

fn render(name: &str, ctx: minijinja::Value) -> Response {
    match templates().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "events page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "events page could not be rendered",
            )
                .into_response()
        }
    }
}

#[derive(Serialize)]
struct MonitorView {
    name: String,
    state: String,
    level_dbfs: Option<f64>,
    /// (scorer, last score, threshold)
    scores: Vec<(String, f64, f64)>,
    events: Vec<EventView>,
}

/// Gauge values of family `name` by (monitor, other label) from the registry.
fn gauges(metrics: &Metrics, name: &str, second: &str) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for f in metrics.registry().gather() {
        if f.name() != name {
            continue;
        }
        for m in f.get_metric() {
            let label = |k: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == k)
                    .map(|l| l.value().to_string())
                    .unwrap_or_default()
            };
            out.insert((label("monitor"), label(second)), m.get_gauge().get_value());
        }
    }
    out
}

fn state_text(s: &crate::metrics::MonitorStatus) -> String {
    use crate::metrics::MonitorStatus as S;
    match s {
        S::Starting => "starting".into(),
        S::Running => "capturing".into(),
        S::Degraded { reason } => format!("capturing (degraded: {reason})"),
        S::NoSignal { reason, .. } => format!("no signal: {reason}"),
        S::Error { reason } => format!("error: {reason}"),
        S::Down { reason } => format!("down: {reason}"),
        S::Stopped => "stopped".into(),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    monitor: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

async fn index(State(s): State<PageState>) -> Response {
    let levels = gauges(&s.metrics, crate::metrics::names::INPUT_RMS, "");
    let scores = gauges(&s.metrics, crate::metrics::names::SCORE, "scorer");
    let thresholds = gauges(&s.metrics, crate::metrics::names::SCORE_THRESHOLD, "scorer");
    let ev = s.evidence.clone();
    let all = tokio::task::spawn_blocking(move || events(&ev, None, None, 500, ""))
        .await
        .unwrap_or_default();
    let mut names: Vec<String> = s.health.monitors().keys().cloned().collect();
    for e in &all {
        if !names.contains(&e.monitor) {
            names.push(e.monitor.clone());
        }
    }
    let statuses = s.health.monitors();
    let monitors: Vec<MonitorView> = names
        .into_iter()
        .map(|name| MonitorView {
            state: statuses
                .get(&name)
                .map_or_else(|| "not running".into(), state_text),
            level_dbfs: levels
                .iter()
                .find(|((m, _), _)| *m == name)
                .map(|(_, v)| *v)
                .filter(|v| v.is_finite()),
            scores: scores
                .iter()
                .filter(|((m, _), _)| *m == name)
                .map(|((m, k), v)| {
                    let t = thresholds
                        .get(&(m.clone(), k.clone()))
                        .copied()
                        .unwrap_or(f64::NAN);
                    (k.clone(), *v, t)
                })
                .collect(),
            events: all
                .iter()
                .filter(|e| e.monitor == name)
                .take(20)
                .cloned()
                .collect(),
            name,
        })
        .collect();
    render(
        "page.html",
        minijinja::context! { monitors => minijinja::value::Serde(&monitors), paused => s.evidence.paused() },
    )
}

async fn one(s: &PageState, monitor: String, hex: String) -> Option<Listed> {
    let ev = s.evidence.clone();
    tokio::task::spawn_blocking(move || ev.store.get(&monitor, &hex))
        .await
        .ok()
        .flatten()
}

async fn event_page(
    State(s): State<PageState>,
    Path((monitor, hex)): Path<(String, String)>,
) -> Response {
    match one(&s, monitor, hex)
        .await
        .and_then(|l| EventView::of(&l, ""))
    {
        Some(e) => render(
            "one.html",
            minijinja::context! { e => minijinja::value::Serde(&e) },
        ),
        None => (StatusCode::NOT_FOUND, "no such event with evidence").into_response(),
    }
}

async fn event_file(
    State(s): State<PageState>,
    Path((monitor, hex, file)): Path<(String, String, String)>,
) -> Response {
    let Some(l) = one(&s, monitor, hex.clone()).await else {
        return (StatusCode::NOT_FOUND, "no such event with evidence").into_response();
    };
    let (path, mime) = match file.as_str() {
        CLIP_FILE => (l.clip, "audio/wav"),
        IMAGE_FILE => match l.image {
            Some(p) => (p, "image/png"),
            None => {
                return (StatusCode::NOT_FOUND, "this event has no spectrogram").into_response();
            }
        },
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, mime.to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("inline; filename=\"{hex}-{file}\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        // Removed by retention since it was listed.
        Err(_) => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

async fn api_events(State(s): State<PageState>, Query(q): Query<ListQuery>) -> Response {
    let since = match q.since.as_deref().map(parse_since) {
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, e).into_response(),
        Some(Ok(t)) => Some(t),
        None => None,
    };
    let ev = s.evidence.clone();
    let limit = q.limit.unwrap_or(100).min(10_000);
    let list =
        tokio::task::spawn_blocking(move || events(&ev, q.monitor.as_deref(), since, limit, ""))
            .await
            .unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "events": list, "clips_paused": s.evidence.paused() }).to_string(),
    )
        .into_response()
}

/// `--since` / `since=`: an RFC 3339 time or a duration back from now (`2h`, `7days`).
pub fn parse_since(s: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    match humantime::parse_duration(s) {
        Ok(d) => Ok(std::time::SystemTime::now()
            .checked_sub(d)
            .unwrap_or(std::time::UNIX_EPOCH)),
        Err(_) => Err(format!(
            "since = {s:?} is neither an RFC 3339 time (2026-01-31T08:00:00Z) nor a duration (2h, 7days)"
        )),
    }
}

#[cfg(test)]
mod feedback_command_tests {
    use super::shell_word;

    #[test]
    fn event_ids_are_pasted_as_one_shell_word() {
        assert_eq!(shell_word("press-1/00ff"), "press-1/00ff");
        assert_eq!(shell_word("press 1/00ff"), "'press 1/00ff'");
        assert_eq!(shell_word("it's/00ff"), "'it'\\''s/00ff'");
    }
}
