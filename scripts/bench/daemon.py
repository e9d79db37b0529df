#!/usr/bin/env python3
"""Benchmark of a running monitor (`earshot run`), the figures issue 3 asks for:
CPU seconds per audio second at hop = window/2 and window/4, peak RSS, and the share of
real-time audio that is scored while two CPU hogs compete for the 2 cores.

Usage: scripts/bench/daemon.py [--models DIR] [--seconds S]   (after `cargo build --release`)
Only the Python standard library; prints a markdown table. Figures on a shared machine are
noisy: compare ratios from one run.
"""
import argparse, json, os, re, resource, shutil, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXE = os.path.join(ROOT, "target", "release", "earshot")


def sh(args, **kw):
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def config(d, model, profile, stream, hop, realtime, port):
    p = os.path.join(d, f"run-{hop}-{realtime}.toml")
    with open(p, "w") as f:
        f.write(f"""[model]
dir = "{model}"
[daemon]
state_dir = "{d}/state"
[metrics]
listen = "127.0.0.1:{port}"
[[monitor]]
name = "bench"
profile = "{profile}"
hop_seconds = {hop}
source = {{ file = "{stream}", realtime = {str(realtime).lower()}, loop = false }}
""")
    return p


def run_measured(cfg, scrape_port=None):
    """Runs the daemon to the end of its replay; returns (cpu_s, wall_s, maxrss_mb, metrics)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.Popen([EXE, "run", "--config", cfg, "--exit-when-done"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = ""
    hwm = 0.0
    # Until the process exits: track its peak RSS (VmHWM) and, if asked, scrape its metrics
    # (the last successful scrape holds the final counters).
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        hwm = max(hwm, int(line.split()[1]) / 1024.0)
        except OSError:
            pass
        if scrape_port:
            try:
                metrics = urllib.request.urlopen(f"http://127.0.0.1:{scrape_port}/metrics", timeout=1).read().decode()
            except Exception:
                pass
        time.sleep(0.2)
    _, err = proc.communicate(timeout=3600)
    if proc.returncode != 0:
        sys.exit(f"earshot run failed:\n{err[-2000:]}")
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, hwm, metrics


def metric(text, name):
    m = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=os.path.join(ROOT, "target", "test-models"))
    ap.add_argument("--seconds", type=float, default=60.0)
    a = ap.parse_args()
    if not os.path.exists(EXE):
        sys.exit("build first: cargo build --release")
    models = [("MobileNetV1 (bundled)", os.path.join(ROOT, "models", "panns-mobilenetv1-seeded"))]
    cnn14 = os.path.join(a.models, "panns-cnn14-seeded")
    if os.path.exists(os.path.join(cnn14, "card.json")):
        models.append(("Cnn14", cnn14))
    d = tempfile.mkdtemp(prefix="earshot-bench-")
    try:
        sh([EXE, "synth", "dataset", "--out", f"{d}/data", "--machine", "motor:1", "--test-clips", "1",
            "--sample-rate", "48000", "--seed", "5"])
        stream = f"{d}/stream.wav"
        sh([EXE, "synth", "stream", "--out", stream, "--machine", "motor", "--id", "1", "--fault", "bearing",
            "--seconds", str(a.seconds), "--onset", str(a.seconds / 2), "--sample-rate", "48000"])
        print(f"earshot run benchmark: {a.seconds:.0f} s of 48 kHz audio, window 1 s, 1 ONNX Runtime thread per monitor, "
              f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}\n")
        print("| model | hop | CPU s per audio s | peak RSS MB | scored share of real-time windows with 2 CPU hogs |")
        print("|---|---|---|---|---|")
        port = 19847
        for name, mdir in models:
            prof = f"{d}/profile-{os.path.basename(mdir)}"
            sh([EXE, "learn", "--normal", f"{d}/data/motor_id01/train", "--out", prof, "--model", mdir])
            for hop in (0.5, 0.25):
                cpu, wall, rss, _ = run_measured(config(d, mdir, prof, stream, hop, False, port))
                # Real-time replay with two busy loops competing for the cores.
                hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
                try:
                    port += 1
                    _, _, _, m = run_measured(config(d, mdir, prof, stream, hop, True, port), scrape_port=port)
                finally:
                    for h in hogs:
                        h.kill()
                done = metric(m, "earshot_pipeline_windows_processed_total")
                shed = metric(m, "earshot_pipeline_windows_shed_total")
                share = done / (done + shed) if done + shed > 0 else float("nan")
                print(f"| {name} | {hop} s (window/{int(round(1 / hop))}) | {cpu / a.seconds:.3f} | {rss:.0f} | "
                      f"{share:.3f} ({int(done)} scored, {int(shed)} shed) |")
                port += 1
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
