//! The Grafana dashboard and the Prometheus alert rules refer only to metrics earshot exports,
//! and the rules pass `promtool` (Debian package `prometheus`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use earshot::alert::metrics::{AlertMetrics, names as alert_names};
use earshot::metrics::{BreakerState, CaptureState, Metrics, names};

/// Every metric name earshot defines: the core ones and the alert delivery ones.
fn all_names() -> Vec<&'static str> {
    names::ALL.iter().chain(alert_names::ALL).copied().collect()
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Sample names in the registry output after every metric was touched once through the same
/// handles the daemon uses (histograms contribute `_bucket`, `_sum`, `_count`).
fn exported_names() -> BTreeSet<String> {
    let m = Metrics::new().unwrap();
    let c = m.capture("mon", "dev");
    c.frames_received.inc();
    c.frames_dropped.inc();
    c.callbacks.inc();
    c.stream_errors.inc();
    c.set_state(CaptureState::Running);
    c.device_lost("test");
    c.device_recovered(1);
    c.reconnects.inc();
    c.last_callback_age.set(0.01);
    c.input_level(-20.0, -6.0, 3);
    let p = m.pipeline("mon");
    p.window_done(0.05, 0.2);
    p.windows_shed(1, 6.0);
    p.queue_depth.set(2);
    let s = m.score("mon");
    s.observe("centroid", 1.0, 2.0);
    s.set_anomaly(true);
    s.set_no_signal(true);
    let i = m.index("mon", "azure");
    i.query_ok(0.01);
    i.query_failed(0.5);
    i.set_breaker(BreakerState::Open, "test");
    i.set_degraded(true);
    i.set_refused(false);
    let k = m.sink("jsonl");
    k.written.inc();
    k.failures.inc();
    k.skipped.inc();
    m.catalog().in_use(3);
    m.catalog().event("mon", "bearing squeal", false);
    m.set_monitor_up("mon", true);
    m.memory_reloaded("mon");
    m.set_monitor_info(
        "mon",
        &BTreeMap::from([("machine".to_string(), "press".to_string())]),
    );

    let a = AlertMetrics::register(m.registry()).unwrap();
    a.init_target("am");
    a.retries.with_label_values(&["am"]).inc();
    a.write_failures.inc();
    a.bytes.set(10);

    let text = m.render();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            out.insert(name.to_string());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{suffix}"));
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            out.insert(name.to_string());
        }
    }
    out
}

/// Identifiers in a PromQL expression that name earshot metrics.
fn earshot_metrics_in(expr: &str) -> Vec<String> {
    // Label values in quotes may contain anything; drop them first.
    let mut unquoted = String::new();
    let mut in_quote = false;
    for ch in expr.chars() {
        if ch == '"' {
            in_quote = !in_quote;
        } else if !in_quote {
            unquoted.push(ch);
        }
    }
    unquoted
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("earshot_"))
        .map(str::to_string)
        .collect()
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map {
                if let (true, Some(s)) = (k == "expr" || k == "query", val.as_str()) {
                    out.push(s.to_string());
                }
                collect_exprs(val, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_exprs(x, out)),
        _ => {}
    }
}

#[test]
fn every_named_metric_is_exported() {
    let exported = exported_names();
    let all = all_names();
    for name in &all {
        assert!(
            exported.contains(*name),
            "{name} is in names::ALL but not rendered"
        );
    }
    for name in exported.iter().filter(|n| n.starts_with("earshot_")) {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| all.contains(b))
            .unwrap_or(name);
        assert!(
            all.contains(&base),
            "{name} is exported but missing from names::ALL"
        );
    }
}

#[test]
fn dashboard_queries_use_exported_metrics() {
    let text = std::fs::read_to_string(repo("dashboards/earshot.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(dash["schemaVersion"].as_i64().unwrap() >= 36);

    let vars = dash["templating"]["list"].as_array().unwrap();
    let var = |n: &str| vars.iter().find(|v| v["name"] == n).cloned();
    let ds = var("datasource").expect("datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    assert!(var("monitor").is_some() && var("machine").is_some());

    let exported = exported_names();
    let panels = dash["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_i64().unwrap()),
            "duplicate panel id {}",
            p["id"]
        );
        let g = &p["gridPos"];
        assert!(
            g["x"].as_i64().unwrap() + g["w"].as_i64().unwrap() <= 24,
            "{}",
            p["title"]
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().expect("panel has targets");
        assert!(!targets.is_empty(), "{} has no queries", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            let metrics = earshot_metrics_in(expr);
            assert!(
                !metrics.is_empty(),
                "{}: no earshot metric in {expr}",
                p["title"]
            );
            used.extend(metrics);
        }
    }
    let mut all = Vec::new();
    collect_exprs(&dash, &mut all);
    for expr in &all {
        for m in earshot_metrics_in(expr) {
            assert!(
                exported.contains(&m),
                "dashboard uses {m}, which earshot does not export ({expr})"
            );
        }
    }
    // The dashboard covers each area the operators asked for.
    for needed in [
        names::SCORE,
        names::SCORE_THRESHOLD,
        names::ANOMALY_ACTIVE,
        names::CAPTURE_STATE,
        names::CAPTURE_FRAMES_DROPPED,
        names::CAPTURE_RECONNECTS,
        names::PIPELINE_LAG,
        names::INDEX_DEGRADED,
        alert_names::DELIVERIES,
        alert_names::OUTBOX_DEPTH,
        alert_names::OUTBOX_OLDEST_AGE,
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
    assert!(
        used.iter()
            .any(|u| u.starts_with(names::PIPELINE_EMBED_SECONDS))
    );
}

#[test]
fn dashboard_check_catches_an_unknown_metric() {
    // The extraction above must see a misspelt metric, or the test could never fail.
    let exported = exported_names();
    let found =
        earshot_metrics_in(r#"rate(earshot_capture_frames_dropt_total{monitor=~"earshot_x"}[5m])"#);
    assert_eq!(
        found,
        vec!["earshot_capture_frames_dropt_total".to_string()]
    );
    assert!(!exported.contains(&found[0]));
}

#[test]
fn alert_rules_use_exported_metrics() {
    let text = std::fs::read_to_string(repo("dashboards/earshot.rules.yml")).unwrap();
    let exported = exported_names();
    let exprs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(str::trim)
        .collect();
    let alerts = text
        .lines()
        .filter(|l| l.trim().starts_with("- alert:"))
        .count();
    assert_eq!(exprs.len(), alerts, "every rule needs a one-line expr");
    assert!(alerts >= 4);
    for expr in exprs {
        let metrics = earshot_metrics_in(expr);
        assert!(
            !metrics.is_empty() || expr.starts_with("up{"),
            "rule without an earshot metric: {expr}"
        );
        for m in metrics {
            assert!(
                exported.contains(&m),
                "rule uses {m}, which earshot does not export"
            );
        }
    }
}

fn promtool(args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(repo("dashboards"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install the Debian package with `apt-get install prometheus`")
        })
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    let out = promtool(&["check", "rules", "earshot.rules.yml"]);
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = promtool(&["test", "rules", "earshot.rules.test.yml"]);
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
