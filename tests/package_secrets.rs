//! Secrets never leave earshot: the real daemon runs with every kind of secret set — the Azure
//! api-key (scoring against the local Azure AI Search emulator), a webhook URL carrying a
//! token and an HMAC key (delivered to a local receiver), and basic auth on the HTTP endpoint
//! (scraped with the right and with a wrong password) — at debug log level for every crate, and
//! every output of the run is searched for the secret values: stdout, stderr, every `/metrics`
//! answer, every file in the state directory (events, outbox, anything else), and every alert
//! (body and headers) the receiver got. The run is checked to have really used each secret
//! (searches answered, alerts signed and delivered, scrapes served), so the search cannot pass
//! by having nothing to look at.

#[path = "common/azure_emulator.rs"]
mod azure_emulator;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/receiver.rs"]
mod receiver;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use azure_emulator::{ADMIN_KEY, Emulator, Op, QUERY_KEY};
use daemon::{EARSHOT, fixture, test_dir};
use receiver::Receiver;

const HMAC_KEY: &str = "hmac-secret-5d0c9e2a71b4";
const URL_TOKEN: &str = "url-token-a9f3c1e7b2d8";
const PASSWORD: &str = "scrape-password-7e41b09c";
const WRONG_PASSWORD: &str = "wrong-password-c3d9a0f6";

/// GET `path` with basic auth over a raw socket: (status, whole response); status 0 and an
/// empty response when nothing listens (the daemon closes its server first when it stops).
fn get_auth(addr: SocketAddr, path: &str, user: &str, password: &str) -> (u16, String) {
    use base64::Engine;
    let cred = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {cred}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

/// Every file below `dir`, as (path, lossy text).
fn all_files(dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            all_files(&p, out);
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((
                p.display().to_string(),
                String::from_utf8_lossy(&b).into_owned(),
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_output() {
    // The emulator lives on this runtime; everything else (processes, the receiver with its own
    // runtime) runs on a blocking thread.
    let emu = Emulator::start().await;
    let endpoint = emu.endpoint();
    let (outputs, hash) = tokio::task::spawn_blocking(move || run_and_collect(&endpoint))
        .await
        .expect("run");
    assert!(
        emu.requests(Op::Search) > 0,
        "the Azure index was never asked"
    );
    let secrets = [
        ("Azure query key", QUERY_KEY),
        ("Azure admin key", ADMIN_KEY),
        ("HMAC key", HMAC_KEY),
        ("webhook URL token", URL_TOKEN),
        ("basic-auth password", PASSWORD),
        ("wrong basic-auth password", WRONG_PASSWORD),
        ("basic-auth password hash", hash.as_str()),
    ];
    let mut leaks = Vec::new();
    for (what, text) in &outputs {
        for (name, secret) in secrets {
            if text.contains(secret) {
                leaks.push(format!("{name} in {what}"));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked: {leaks:#?}");
    assert!(outputs.len() > 8, "too little to search: {}", outputs.len());
}

/// Runs index upload, check and the daemon with every secret set; returns every output as
/// (what, text) and the password hash.
fn run_and_collect(endpoint: &str) -> (Vec<(String, String)>, String) {
    let fx = fixture();
    let dir = test_dir();
    let d = dir.path().to_owned();
    let mut rx = Receiver::start(0);
    std::fs::write(
        d.join("webhook.url"),
        format!("{}?token={URL_TOKEN}\n", rx.url("/hook")),
    )
    .unwrap();
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    std::fs::write(d.join("metrics.hash"), format!("{hash}\n")).unwrap();
    std::fs::write(
        d.join("earshot.toml"),
        format!(
            "[daemon]\nstate_dir = \"state\"\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [metrics.basic_auth]\nuser = \"prometheus\"\npassword_hash_file = \"metrics.hash\"\n\
             [alerts]\n[[alerts.webhook]]\nname = \"tickets\"\nurl_file = \"webhook.url\"\n\
             hmac_secret_env = \"EARSHOT_TEST_HMAC\"\n\
             [[monitor]]\nname = \"motor\"\nprofile = \"{}\"\n\
             source = {{ file = \"{}\", realtime = true }}\n\
             index = {{ kind = \"azure\", endpoint = \"{endpoint}\", index_name = \"motor-normals\", \
             api_key_env = \"EARSHOT_TEST_AZURE_KEY\", exhaustive = true, timeout_ms = 2000 }}\n",
            fx.profile.display(),
            fx.short_faulty.display()
        ),
    )
    .unwrap();

    let (status, scrapes, served, refused, up_text, check_text) = {
        // Fill the index (admin key), then check the config and run the daemon (query key).
        let up = Command::new(EARSHOT)
            .args(["index", "--profile"])
            .arg(&fx.profile)
            .args(["--config", "earshot.toml", "--monitor", "motor"])
            .current_dir(&d)
            .env("EARSHOT_TEST_AZURE_KEY", ADMIN_KEY)
            .env("EARSHOT_LOG", "debug")
            .output()
            .expect("earshot index");
        let up_text = format!(
            "{}{}",
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        );
        assert!(up.status.success(), "index upload failed:\n{up_text}");
        let check = Command::new(EARSHOT)
            .args(["check", "--config", "earshot.toml"])
            .current_dir(&d)
            .env("EARSHOT_TEST_AZURE_KEY", QUERY_KEY)
            .env("EARSHOT_TEST_HMAC", HMAC_KEY)
            .env("EARSHOT_LOG", "debug")
            .output()
            .expect("earshot check");
        let check_text = format!(
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(check.status.success(), "check failed:\n{check_text}");

        let out = std::fs::File::create(d.join("stdout.log")).unwrap();
        let err = std::fs::File::create(d.join("stderr.log")).unwrap();
        let mut child = Command::new(EARSHOT)
            .args(["run", "--config", "earshot.toml", "--exit-when-done"])
            .current_dir(&d)
            .env("EARSHOT_TEST_AZURE_KEY", QUERY_KEY)
            .env("EARSHOT_TEST_HMAC", HMAC_KEY)
            .env("EARSHOT_LOG", "debug")
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("STATE_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("earshot run");
        // Scrape while it runs: wrong password (refused), right password (served).
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut scrapes = Vec::new();
        let mut served = 0;
        let mut refused = 0;
        let mut addr: Option<SocketAddr> = None;
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "earshot run did not finish:\n{}",
                    std::fs::read_to_string(d.join("stderr.log")).unwrap_or_default()
                );
            }
            if addr.is_none() {
                let log = std::fs::read_to_string(d.join("stderr.log")).unwrap_or_default();
                addr = log
                    .lines()
                    .find(|l| l.contains("serving /metrics"))
                    .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
                    .and_then(|a| a.parse().ok());
            }
            if let Some(a) = addr {
                let (s, body) = get_auth(a, "/metrics", "prometheus", WRONG_PASSWORD);
                refused += usize::from(s == 401);
                scrapes.push(body);
                let (s, body) = get_auth(a, "/metrics", "prometheus", PASSWORD);
                served += usize::from(s == 200 && body.contains("earshot_"));
                scrapes.push(body);
                let (_, body) = get_auth(a, "/healthz", "prometheus", PASSWORD);
                scrapes.push(body);
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        (status, scrapes, served, refused, up_text, check_text)
    };
    let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    let stdout = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap();
    assert!(status.success(), "earshot run failed:\n{stderr}");

    // The secrets were really used.
    assert!(
        served > 0 && refused > 0,
        "scrapes: {served} served, {refused} refused\n{stderr}"
    );
    let alerts = rx.wait_until("signed alert", Duration::from_secs(60), |r| {
        r.iter()
            .any(|a| a.headers.contains_key("x-earshot-signature"))
    });
    let mut state = Vec::new();
    all_files(&dir.path().join("state"), &mut state);
    assert!(
        state
            .iter()
            .any(|(p, t)| p.ends_with("events.jsonl") && t.contains("anomaly_started")),
        "no anomaly event: {:?}",
        state.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    assert!(
        state.iter().any(|(p, _)| p.contains("outbox")),
        "no outbox file"
    );
    rx.stop();

    // Every output, searched for every secret.
    let mut outputs: Vec<(String, String)> = vec![
        ("stderr".into(), stderr),
        ("stdout".into(), stdout),
        ("earshot index output".into(), up_text),
        ("earshot check output".into(), check_text),
    ];
    outputs.extend(
        scrapes
            .into_iter()
            .enumerate()
            .map(|(i, s)| (format!("HTTP answer {i}"), s)),
    );
    outputs.extend(state);
    for (i, a) in alerts.iter().enumerate() {
        outputs.push((
            format!("alert {i}"),
            format!("{}\n{:?}", String::from_utf8_lossy(&a.body), a.headers),
        ));
    }
    (outputs, hash)
}
