//! The Debian package (scripts/package-deb.sh), built from the test binary.
//!
//! - `package_contents_and_scripts`: the archive's files, modes, control fields, conffile
//!   listing, maintainer-script syntax, a stripped binary, the run-time libraries covered by
//!   `Depends`, and the packaged unit's `systemd-analyze security` exposure (<= 2.0).
//! - `installs_runs_upgrades_and_purges_in_a_debian_chroot`: a Debian 12 minbase chroot made by
//!   debootstrap (once per target dir, kept as a tarball under target/tmp: about a minute the
//!   first time, then a few seconds), in which the package is installed with `dpkg -i`; then,
//!   as the package's `earshot` user and from the installed paths only (no ORT_DYLIB_PATH, no
//!   source tree): `earshot check` of the shipped conffile (the aisfx model loads from
//!   /usr/share/earshot with ONNX Runtime from /usr/lib/earshot), a profile learned, the
//!   conffile edited to a working config that `earshot check` passes, a replay run that
//!   reaches READY=1 (sd_notify socket) and writes its anomaly event; an upgrade to a rebuilt
//!   package keeps the edited conffile and the state; `dpkg --purge` leaves no file behind but
//!   the system user's entries in /etc/passwd and friends (Debian practice) and dpkg's logs.
//!   PID 1 is not systemd on these machines, so the unit itself cannot be started here.
//!
//! The chroot needs root, `debootstrap` (scripts/setup.sh --tests installs it) and the Debian
//! mirror (`EARSHOT_DEBIAN_MIRROR`, default deb.debian.org). `EARSHOT_SKIP_CHROOT=1` skips it.

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const EARSHOT: &str = env!("CARGO_BIN_EXE_earshot");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("earshot-package-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// Runs `cmd`, returns (success, stdout+stderr).
fn run(cmd: &mut Command) -> (bool, String) {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let (s, out) = run(cmd);
    assert!(s, "{shown} failed:\n{out}");
    out
}

/// Builds the package from the test binary (uncompressed: quick) with Debian revision `rev`.
/// `EARSHOT_PACKAGE_BINARY=target/release/earshot` packages another build instead (the
/// README's footprint and start-up figures come from the release build this way).
fn build_deb(out: &Path, rev: &str) -> PathBuf {
    let binary = std::env::var("EARSHOT_PACKAGE_BINARY").unwrap_or_else(|_| EARSHOT.into());
    let text = ok(Command::new(repo().join("scripts/package-deb.sh"))
        .args(["--fast", "--binary", &binary, "--revision", rev, "--out"])
        .arg(out));
    PathBuf::from(
        text.lines()
            .last()
            .expect("the script prints the .deb path")
            .trim(),
    )
}

#[test]
fn package_contents_and_scripts() {
    let d = tmp();
    let deb = build_deb(d.path(), "1");
    let listing = ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    // path -> mode string
    let files: Vec<(String, String, String)> = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_string(),
                f[1].to_string(),
                f[5].trim_start_matches('.').to_string(),
            )
        })
        .collect();
    let mode = |p: &str| -> &str {
        files
            .iter()
            .find(|(_, _, path)| path == p)
            .map(|(m, _, _)| m.as_str())
            .unwrap_or_else(|| panic!("{p} not in the package:\n{listing}"))
    };
    assert_eq!(mode("/usr/bin/earshot"), "-rwxr-xr-x");
    assert_eq!(
        mode("/usr/lib/earshot/libonnxruntime.so.1.31.1"),
        "-rw-r--r--"
    );
    for m in ["aisfx-cnn9", "panns-mobilenetv1-seeded"] {
        for f in ["card.json", "model.onnx"] {
            assert_eq!(
                mode(&format!("/usr/share/earshot/models/{m}/{f}")),
                "-rw-r--r--"
            );
        }
    }
    assert_eq!(
        mode("/usr/share/earshot/models/aisfx-cnn9/LICENSE"),
        "-rw-r--r--"
    );
    assert_eq!(mode("/lib/systemd/system/earshot.service"), "-rw-r--r--");
    // 0644 as policy wants; postinst makes it 0640 root:earshot (checked in the chroot test).
    assert_eq!(mode("/etc/earshot/earshot.toml"), "-rw-r--r--");
    assert_eq!(mode("/usr/share/doc/earshot/copyright"), "-rw-r--r--");
    for (m, owner, p) in &files {
        assert_eq!(owner, "root/root", "{p}");
        let b = m.as_bytes();
        assert!(b[8] != b'w', "world-writable: {p}");
        assert!(!m.contains('s') && !m.contains('S'), "setuid/setgid: {p}");
    }

    let x = d.path().join("x");
    ok(Command::new("dpkg-deb").arg("-R").arg(&deb).arg(&x));
    // Control: fields from Cargo.toml.
    let control = std::fs::read_to_string(x.join("DEBIAN/control")).unwrap();
    let cargo = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap();
    assert!(
        control.contains(&format!("Version: {version}-1\n")),
        "{control}"
    );
    assert!(control.contains("Package: earshot\n"), "{control}");
    let synopsis = control
        .lines()
        .find_map(|l| l.strip_prefix("Description: "))
        .unwrap();
    assert!(
        synopsis.len() <= 80 && !synopsis.ends_with('.'),
        "{synopsis}"
    );
    // The conffile.
    assert_eq!(
        std::fs::read_to_string(x.join("DEBIAN/conffiles")).unwrap(),
        "/etc/earshot/earshot.toml\n"
    );
    assert_eq!(
        std::fs::read(x.join("etc/earshot/earshot.toml")).unwrap(),
        std::fs::read(repo().join("config/earshot.toml")).unwrap()
    );
    // Maintainer scripts: POSIX sh syntax (and dash's, Debian's /bin/sh).
    for s in ["postinst", "prerm", "postrm"] {
        let p = x.join("DEBIAN").join(s);
        for shell in ["sh", "dash"] {
            if shell == "dash" && !Path::new("/bin/dash").exists() {
                continue;
            }
            ok(Command::new(shell).arg("-n").arg(&p));
        }
    }
    // md5sums cover every file.
    ok(Command::new("md5sum")
        .arg("-c")
        .arg("--quiet")
        .arg("DEBIAN/md5sums")
        .current_dir(&x));
    // Stripped: no symbol table, no debug sections.
    let sections = ok(Command::new("objdump")
        .arg("-h")
        .arg(x.join("usr/bin/earshot")));
    // (`.debug_gdb_scripts` is a loaded section Rust adds; strip keeps it, rightly.)
    for dbg in [".debug_info", ".debug_line", ".symtab"] {
        assert!(!sections.contains(dbg), "binary not stripped: {dbg}");
    }
    let syms = run(Command::new("objdump")
        .arg("-t")
        .arg(x.join("usr/bin/earshot")))
    .1;
    assert!(
        syms.contains("no symbols"),
        "symbol table left in the binary"
    );
    // Every library the binary and ONNX Runtime need is covered by Depends.
    let depends = control
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .unwrap();
    for f in [
        "usr/bin/earshot",
        "usr/lib/earshot/libonnxruntime.so.1.31.1",
    ] {
        let dynamic = ok(Command::new("objdump").arg("-p").arg(x.join(f)));
        for lib in dynamic
            .lines()
            .filter_map(|l| l.trim().strip_prefix("NEEDED"))
        {
            let lib = lib.trim();
            let pkg = match lib {
                l if l.starts_with("libc.so")
                    || l.starts_with("libm.so")
                    || l.starts_with("libdl.so")
                    || l.starts_with("libpthread.so")
                    || l.starts_with("librt.so")
                    || l.starts_with("ld-linux") =>
                {
                    "libc6"
                }
                l if l.starts_with("libgcc_s.so") => "libgcc-s1",
                l if l.starts_with("libstdc++.so") => "libstdc++6",
                l if l.starts_with("libasound.so") => "libasound2",
                other => {
                    panic!("{f} needs {other}: add its package to [package.metadata.deb] depends")
                }
            };
            assert!(
                depends.contains(pkg),
                "{f} needs {lib} ({pkg}), Depends: {depends}"
            );
        }
    }
    // The packaged unit: installed paths, the package's user, and still hardened.
    let unit = x.join("lib/systemd/system/earshot.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains("\nExecStart=/usr/bin/earshot run --config /etc/earshot/earshot.toml\n"));
    assert!(text.contains("\nUser=earshot\n") && !text.contains("DynamicUser=yes"));
    let sec = ok(Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&unit));
    let score: f64 = sec
        .lines()
        .find_map(|l| l.split("exposure level for earshot.service: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{sec}"));
    assert!(score <= 2.0, "packaged unit exposure {score} > 2.0:\n{sec}");

    // lintian, when installed (not by scripts/setup.sh: it pulls in a large Perl stack): no
    // errors but the uncompressed archive of this quick build.
    if Command::new("lintian").arg("--version").output().is_ok() {
        let (_, out) = run(Command::new("lintian").arg(&deb));
        let errors: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("E:") && !l.contains("uses-no-compression"))
            .collect();
        assert!(errors.is_empty(), "lintian:\n{out}");
    } else {
        eprintln!("lintian not installed: skipped (apt-get install lintian to run it)");
    }
}

/// A Debian 12 minbase tree made by debootstrap, cached as a tarball.
fn base_tarball() -> PathBuf {
    let cache =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("debootstrap-bookworm-minbase-v2.tar");
    if cache.is_file() {
        return cache;
    }
    let mirror = std::env::var("EARSHOT_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let d = tmp();
    let root = d.path().join("root");
    let t = Instant::now();
    ok(Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=libasound2,fonts-dejavu-core",
            "bookworm",
        ])
        .arg(&root)
        .arg(&mirror));
    eprintln!("debootstrap: {:.0} s", t.elapsed().as_secs_f64());
    let part = cache.with_extension("tar.part");
    ok(Command::new("tar")
        .arg("-cf")
        .arg(&part)
        .arg("-C")
        .arg(&root)
        .arg("."));
    std::fs::rename(&part, &cache).unwrap();
    cache
}

/// A chroot unpacked from the base tarball; commands run in it with their own mount and PID
/// namespaces (a private /proc that vanishes with them: nothing stays mounted on failure).
struct Chroot {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Chroot {
    fn new() -> Chroot {
        let dir = tmp();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        ok(Command::new("tar")
            .arg("-xf")
            .arg(base_tarball())
            .arg("-C")
            .arg(&root));
        Chroot { _dir: dir, root }
    }

    fn cmd(&self, script: &str) -> Command {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--pid", "--fork"])
            .arg(format!("--mount-proc={}", self.root.join("proc").display()))
            .arg("chroot")
            .arg(&self.root)
            .args([
                "/usr/bin/env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
            ])
            .args(["/bin/sh", "-c", script]);
        c
    }

    /// Runs `script` as root in the chroot.
    fn sh(&self, script: &str) -> (bool, String) {
        run(&mut self.cmd(script))
    }

    fn ok(&self, script: &str) -> String {
        let (s, out) = self.sh(script);
        assert!(s, "in the chroot: {script}\n{out}");
        out
    }

    /// `earshot ARGS` as the package's user, from the installed binary.
    fn earshot(&self, args: &str) -> (bool, String) {
        self.sh(&format!(
            "cd /var/lib/earshot && setpriv --reuid=earshot --regid=earshot --init-groups /usr/bin/earshot {args}"
        ))
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// Every path in the tree (relative), but the pseudo and scratch file systems.
    fn files(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = vec![self.root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                let rel = p.strip_prefix(&self.root).unwrap().display().to_string();
                if ["proc", "sys", "dev", "tmp", "run"].contains(&rel.as_str()) {
                    continue;
                }
                if e.file_type().unwrap().is_dir() {
                    stack.push(p);
                }
                out.insert(rel);
            }
        }
        out
    }
}

/// The admin's edit of the conffile: the bundled MobileNetV1 (fast) and a replayed recording.
const EDITED_CONFIG: &str = r#"# site edit: press-1 replays a recording (edited by the admin)
[model]
dir = "/usr/share/earshot/models/panns-mobilenetv1-seeded"
[metrics]
listen = "127.0.0.1:0"
# 30 s of normal audio cannot resolve the default 1 false event a day (see README).
[learn]
false_alarms_per_day = 300
[[monitor]]
name = "press-1"
profile = "/var/lib/earshot/profiles/press-1"
source = { file = "/var/lib/earshot/replay.wav", realtime = false }
"#;

#[test]
fn installs_runs_upgrades_and_purges_in_a_debian_chroot() {
    if std::env::var_os("EARSHOT_SKIP_CHROOT").is_some() {
        eprintln!("EARSHOT_SKIP_CHROOT set: the chroot install test is skipped");
        return;
    }
    let debs = tmp();
    let v1 = build_deb(debs.path(), "1");
    let v2 = build_deb(debs.path(), "2");
    let c = Chroot::new();
    let before = c.files();
    for deb in [&v1, &v2] {
        std::fs::copy(deb, c.path("/tmp").join(deb.file_name().unwrap())).unwrap();
    }
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();

    // Install.
    let out = c.ok(&format!("dpkg -i /tmp/{}", name(&v1)));
    assert!(!out.to_lowercase().contains("warning"), "{out}");
    let ids = c.ok("id earshot");
    assert!(
        ids.contains("(audio)"),
        "earshot must be in group audio: {ids}"
    );
    let modes = c.ok("stat -c '%n %a %U:%G' /etc/earshot /etc/earshot/earshot.toml /var/lib/earshot /var/lib/earshot/profiles");
    for want in [
        "/etc/earshot 750 root:earshot",
        "/etc/earshot/earshot.toml 640 root:earshot",
        "/var/lib/earshot 750 earshot:earshot",
        "/var/lib/earshot/profiles 750 earshot:earshot",
    ] {
        assert!(modes.contains(want), "{want} in\n{modes}");
    }
    let ww = c.ok(
        "dpkg -L earshot | while read -r p; do [ -e \"$p\" ] && find \"$p\" -maxdepth 0 -perm -o+w ! -type l; done; true",
    );
    assert!(ww.trim().is_empty(), "world-writable: {ww}");
    let footprint = c.ok("dpkg-query -W -f='${Installed-Size}' earshot");
    eprintln!("installed size: {footprint} KiB");

    // The shipped conffile, checked from the installed paths: the aisfx model and ONNX Runtime
    // load from /usr/share/earshot and /usr/lib/earshot without ORT_DYLIB_PATH; the example
    // monitor has no profile yet, which is the error to fix.
    let (passed, out) = c.earshot("check --config /etc/earshot/earshot.toml");
    assert!(!passed, "no profile learned yet:\n{out}");
    assert!(
        out.contains("model /usr/share/earshot/models/aisfx-cnn9 (aisfx-cnn9): card, checksum and ONNX Runtime session OK (runtime /usr/lib/earshot/libonnxruntime.so.1.31.1)"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("error:")
            && l.contains("/var/lib/earshot/profiles/press-1")
            && l.contains("earshot learn")),
        "{out}"
    );

    // Learn and edit the conffile into a working config, as an admin would.
    let (s, out) = c.earshot(
        "synth dataset --out /var/lib/earshot/train --machine motor:1 --train-clips 6 --test-clips 1 --sample-rate 48000",
    );
    assert!(s, "{out}");
    let (s, out) = c.earshot(
        "synth stream --out /var/lib/earshot/replay.wav --machine motor --id 1 --fault bearing --level-db 0 --seconds 16 --onset 8 --sample-rate 48000",
    );
    assert!(s, "{out}");
    std::fs::write(c.path("/etc/earshot/earshot.toml"), EDITED_CONFIG).unwrap();
    let (s, out) = c.earshot(
        "learn --config /etc/earshot/earshot.toml --normal /var/lib/earshot/train/motor_id01/train --out /var/lib/earshot/profiles/press-1",
    );
    assert!(s, "{out}");
    let (passed, out) = c.earshot("check --config /etc/earshot/earshot.toml");
    assert!(passed, "the edited config must pass:\n{out}");

    // A replay run from the installed paths, with sd_notify as systemd would see it.
    let sock_path = c.path("/run/earshot-notify.sock");
    std::fs::create_dir_all(sock_path.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    std::fs::set_permissions(
        &sock_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let mut child = c
        .cmd("cd / && exec setpriv --reuid=earshot --regid=earshot --init-groups env NOTIFY_SOCKET=/run/earshot-notify.sock /usr/bin/earshot run --config /etc/earshot/earshot.toml --exit-when-done")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = None;
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(120) {
        if let Ok(n) = sock.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
        {
            ready = Some(started.elapsed());
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
    }
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "earshot run failed:\n{log}");
    let ready = ready.unwrap_or_else(|| panic!("no READY=1:\n{log}"));
    eprintln!(
        "start to READY=1 from the installed paths: {:.2} s",
        ready.as_secs_f64()
    );
    let events =
        std::fs::read_to_string(c.path("/var/lib/earshot/events.jsonl")).unwrap_or_default();
    assert!(
        events.contains("anomaly_started"),
        "no anomaly event:\n{events}\n{log}"
    );

    // Upgrade to a rebuilt package: the edited conffile and the state stay.
    let out = c.ok(&format!("dpkg -i /tmp/{}", name(&v2)));
    assert!(
        !out.contains("dpkg-dist") && !out.contains("dpkg-new"),
        "{out}"
    );
    assert_eq!(c.ok("dpkg-query -W -f='${Version}' earshot"), "0.1.0-2");
    assert_eq!(
        std::fs::read_to_string(c.path("/etc/earshot/earshot.toml")).unwrap(),
        EDITED_CONFIG
    );
    assert!(
        c.path("/var/lib/earshot/profiles/press-1/manifest.json")
            .is_file()
    );
    let (passed, out) = c.earshot("check --config /etc/earshot/earshot.toml");
    assert!(passed, "after the upgrade:\n{out}");

    // Purge: nothing left but the user's entries (and the backups useradd keeps) and dpkg's own
    // records.
    c.ok("dpkg --purge earshot");
    let after = c.files();
    let left: Vec<&String> = after
        .difference(&before)
        .filter(|p| {
            ![
                "etc/passwd-",
                "etc/group-",
                "etc/shadow-",
                "etc/gshadow-",
                "var/log/dpkg.log",
                "var/log/alternatives.log",
            ]
            .contains(&p.as_str())
                && !p.starts_with("var/lib/dpkg/")
        })
        .collect();
    assert!(left.is_empty(), "purge left: {left:#?}");
    assert!(
        !after
            .iter()
            .any(|p| p.contains("earshot") && !p.starts_with("var/lib/dpkg/")),
        "a path named earshot is left: {:?}",
        after
            .iter()
            .filter(|p| p.contains("earshot"))
            .collect::<Vec<_>>()
    );
    let (gone, _) = c.sh("dpkg -s earshot");
    assert!(!gone, "dpkg still knows the package");
}
