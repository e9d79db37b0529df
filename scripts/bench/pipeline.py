#!/usr/bin/env python3
"""The side-by-side speed benchmark of issue 14, in one run, on one recording and one model:

- limit      one ONNX Runtime pass over the audio in windows without overlap (the network alone,
             log-mel made beforehand): benches/pipeline.rs
- earshot    `earshot run` (replay source, resample, log-mel, embed, both scores, decide) at
             hop = window, window/2, window/4, replayed as fast as possible: CPU s per audio s
             with start-up taken out (a long and a short replay; the difference), and its ratio
             to the limit; the embedding stage alone with the streamed and the per-window
             front end (benches/pipeline.rs)
- python     the way people do it today: librosa load + resample, PyTorch PANNs forward per
             window (scripts/bench/python_reference.py --stream), run by a Python that has
             torch (--python, $EARSHOT_TORCH_PYTHON or .venv-torch); skipped, with the reason,
             when there is none
- chunk-max  the same runs with a profile learned with `[window] embed = "chunk-max"` at hop =
             window/4 (the network once per hop-long chunk, a window the max of its chunks;
             window and hop rounded to whole front-end frames, hops that step whole chunks)
- peak RSS, start-to-READY (sd_notify READY=1 on our own NOTIFY_SOCKET), and onset-to-event
  latency on a real-time replay of a recording whose fault starts at a known time.

Prints a table, then the same figures as one JSON document (also written to --json-out).
Figures, not assertions: a busy machine gives other numbers, never a failure.

Usage (after `cargo build --release` and `cargo bench --bench pipeline --no-run`; the wrapper
`scripts/bench.sh --pipeline [flags]` does both):
  scripts/bench/pipeline.py [--model DIR] [--seconds S] [--window S] [--threads 1,2]
                            [--realtime-seconds S] [--python PY] [--json-out FILE]
"""
import argparse, json, os, platform, re, resource, shutil, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXE = os.path.join(ROOT, "target", "release", "earshot")


def sh(args, **kw):
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def config(d, model, profile, stream, hop, realtime, threads, tag, monitors=1):
    state = os.path.join(d, f"state-{tag}")
    os.makedirs(state, exist_ok=True)
    # One optimised-model cache for every run (a warm-up run makes it): each run is a later
    # start, as a service's are, not the first start's optimisation peak.
    cache = os.path.join(d, "model-cache")
    os.makedirs(cache, exist_ok=True)
    link = os.path.join(state, "model-cache")
    if not os.path.lexists(link):
        os.symlink(cache, link)
    p = os.path.join(d, f"run-{tag}.toml")
    with open(p, "w") as f:
        f.write(f"""[model]
dir = "{model}"
threads = {threads}
[daemon]
state_dir = "{state}"
[metrics]
listen = "127.0.0.1:0"
""")
        for i in range(monitors):
            f.write(f"""[[monitor]]
name = "bench{i}"
profile = "{profile}"
hop_seconds = {hop}
source = {{ file = "{stream}", realtime = {str(realtime).lower()}, loop = false }}
""")
    return p, state


def proc_kb(pid, name, key):
    """A kB figure from /proc/<pid>/<name> (0 when the process or the line is gone)."""
    try:
        with open(f"/proc/{pid}/{name}") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_daemon(cfg, state=None, onset_s=None):
    """Runs `earshot run` to the end of its replay. Returns a dict with cpu_s, wall_s,
    peak_rss_mb, ready_s (spawn to READY=1) and, when `onset_s` is given, the wall time of the
    first anomaly event line in events.jsonl after the replay's stream time 0."""
    sock_dir = tempfile.mkdtemp(prefix="earshot-notify-")
    sock_path = os.path.join(sock_dir, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.setblocking(False)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path)
    env.pop("WATCHDOG_USEC", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([EXE, "run", "--config", cfg, "--exit-when-done"], env=env,
                            stdout=subprocess.DEVNULL, stderr=log, text=True)
    ready = None
    hwm = 0.0
    pss = 0.0
    first_event_at = None
    events = os.path.join(state, "events.jsonl") if state else None
    try:
        while proc.poll() is None:
            try:
                while True:
                    msg = sock.recv(4096).decode(errors="replace")
                    if ready is None and "READY=1" in msg.split("\n"):
                        ready = time.monotonic() - t0
            except BlockingIOError:
                pass
            hwm = max(hwm, proc_kb(proc.pid, "status", "VmHWM:") / 1024.0)
            # PSS: the memory this process really holds. RSS counts the model weights mapped
            # from the model cache once per session (per monitor), though they are one copy.
            pss = max(pss, proc_kb(proc.pid, "smaps_rollup", "Pss:") / 1024.0)
            if onset_s is not None and first_event_at is None and events and os.path.exists(events):
                with open(events) as f:
                    for line in f:
                        try:
                            rec = json.loads(line)
                        except ValueError:
                            continue
                        if is_anomaly_start(rec):
                            first_event_at = (time.time(), rec)
                            break
            time.sleep(0.01 if onset_s is not None else 0.05)
        proc.wait(timeout=3600)
        log.seek(0)
        err = log.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
        shutil.rmtree(sock_dir, ignore_errors=True)
    if proc.returncode != 0:
        sys.exit(f"earshot run failed:\n{err[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # Windows the load-shedding policy dropped (logged at warn with their count).
    shed = sum(int(n) for n in re.findall(r"skipped windows to catch up.*?\bwindows=(\d+)", err))
    return {"cpu_s": cpu, "wall_s": time.monotonic() - t0, "peak_rss_mb": hwm, "peak_pss_mb": pss, "ready_s": ready,
            "first_event": first_event_at, "shed": shed}


def is_anomaly_start(rec):
    ev = rec.get("event") or {}
    return ev.get("kind") == "started" and "detected" in ev


def rfc3339(text):
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def synth(d, seconds, onset, rate, name, level_db=-6):
    out = os.path.join(d, name)
    sh([EXE, "synth", "stream", "--out", out, "--machine", "motor", "--id", "1", "--fault", "bearing",
        "--level-db", str(level_db), "--seconds", str(seconds), "--onset", str(onset), "--sample-rate", str(rate)])
    return out


def rust_limit(model, wav, window, threads, hops):
    out = sh(["cargo", "bench", "--quiet", "--bench", "pipeline", "--", "--model", model, "--wav", wav,
              "--window", str(window), "--threads", str(threads), "--hops", ",".join(str(h) for h in hops)],
             cwd=ROOT).stdout
    return json.loads(out[out.index("{"):])


def find_torch_python(explicit):
    cands = [explicit, os.environ.get("EARSHOT_TORCH_PYTHON"), os.path.join(ROOT, ".venv-torch", "bin", "python")]
    tried = []
    for c in cands:
        if not c:
            continue
        if not os.path.exists(c):
            tried.append(f"{c} not found")
            continue
        r = subprocess.run([c, "-c", "import torch, torchlibrosa, librosa"], capture_output=True, text=True)
        if r.returncode == 0:
            return c, None
        tried.append(f"{c}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'import failed'}")
    return None, "torch is not installed (" + "; ".join(tried) + ")" if tried else "no Python with torch, torchlibrosa and librosa (give --python or $EARSHOT_TORCH_PYTHON)"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "panns-mobilenetv1-seeded"))
    ap.add_argument("--seconds", type=float, default=120.0, help="length of the fast replays")
    ap.add_argument("--short-seconds", type=float, default=10.0, help="the short replay that measures start-up")
    ap.add_argument("--realtime-seconds", type=float, default=30.0, help="length of the real-time replay")
    ap.add_argument("--window", type=float, default=1.0)
    ap.add_argument("--threads", default="1", help="ONNX Runtime intra-op threads to measure, e.g. 1,2")
    ap.add_argument("--python", help="a Python with torch, torchlibrosa and librosa for the python row")
    ap.add_argument("--monitors", default="", help="monitor counts to replay in real time together, e.g. 1,4,8: "
                    "windows shed tell whether the machine keeps up; 'auto' finds the most that shed none")
    ap.add_argument("--max-monitors", type=int, default=256, help="the most monitors --monitors auto tries")
    ap.add_argument("--monitor-hop", default="", help="hop(s) of the --monitors runs, e.g. 0.5,0.25 "
                    "(default window/4)")
    ap.add_argument("--embed", default="exact,chunk-max", help="embedding modes to measure: exact, chunk-max or both")
    ap.add_argument("--json-out")
    ap.add_argument("--skip-limit", action="store_true", help="leave out the limit and embed-stage rows "
                    "(benches/pipeline.rs), e.g. when the bench binary is not built: no x-limit column")
    a = ap.parse_args()
    if not os.path.exists(EXE):
        sys.exit("build first: cargo build --release (or run scripts/bench.sh --pipeline)")
    model = os.path.abspath(a.model)
    card = json.load(open(os.path.join(model, "card.json")))
    onnx_mb = os.path.getsize(os.path.join(model, card["onnx"]["file"])) / 2**20
    w = a.window
    hops = [w, w / 2, w / 4]
    threads = [int(t) for t in a.threads.split(",")]
    d = tempfile.mkdtemp(prefix="earshot-bench-pipeline-")
    doc = {
        "machine": {"cores": os.cpu_count(), "cpu": cpu_name(), "kernel": platform.release(),
                    "loadavg_start": os.getloadavg()},
        "model": card.get("name", os.path.basename(model)), "model_file_mb": round(onnx_mb, 1),
        "audio": {"seconds": a.seconds, "rate": 48000, "window_s": w},
        "rows": [],
    }
    try:
        sh([EXE, "synth", "dataset", "--out", f"{d}/data", "--machine", "motor:1", "--test-clips", "1",
            "--sample-rate", "48000", "--seed", "5"])
        long = synth(d, a.seconds, a.seconds / 2, 48000, "long.wav")
        short = synth(d, a.short_seconds, a.short_seconds / 2, 48000, "short.wav")
        onset = a.realtime_seconds / 2
        # A 0 dB bearing fault: continuous from its onset, so the onset is exact.
        live = synth(d, a.realtime_seconds, onset, 48000, "live.wav", level_db=0)
        prof = f"{d}/profile"
        # The profile's window is the benchmark's (`--window`); the monitors set their own hops.
        learn_cfg = os.path.join(d, "learn-exact.toml")
        with open(learn_cfg, "w") as f:
            f.write(f"[window]\nseconds = {w}\nhop_seconds = {w / 2}\n")
        sh([EXE, "learn", "--config", learn_cfg, "--normal", f"{d}/data/motor_id01/train", "--out", prof,
            "--model", model])
        # Warm-up: makes the optimised-model cache the measured runs load (later starts).
        run_daemon(config(d, model, prof, short, w, False, threads[0], "warm-up")[0])
        modes = [m for m in a.embed.split(",") if m]
        # Each measured (mode, profile, hops): chunk-max steps whole chunks of its own hop.
        runs_of = [("exact", prof, hops)] if "exact" in modes else []
        if "chunk-max" in modes:
            cm = chunk_max_profile(d, model, w)
            if isinstance(cm, str):
                doc["rows"].append({"what": "earshot run chunk-max", "hop_s": None, "skipped": cm})
            else:
                runs_of.append(("chunk-max", cm[0], cm[1]))
                doc["audio"]["chunk_max_window_s"] = cm[2]
        for t in threads:
            if a.skip_limit:
                lim, limit = {"embed": [None] * len(hops)}, None
            else:
                lim = rust_limit(model, long, w, t, hops)
                limit = lim["limit"]["cpu_per_audio_s"]
                doc["rows"].append({"what": "limit", "threads": t, "hop_s": None, "cpu_per_audio_s": limit,
                                    "ratio_to_limit": 1.0, "detail": lim["limit"]})
            for mode, p, mode_hops in runs_of:
                stage = lim["embed"] if mode == "exact" else [None] * len(mode_hops)
                for hop, emb in zip(mode_hops, stage):
                    runs = {}
                    for name, wav in (("long", long), ("short", short)):
                        cfg, _ = config(d, model, p, wav, hop, False, t, f"{name}-{mode}-{hop}-{t}")
                        runs[name] = run_daemon(cfg)
                    cpu = (runs["long"]["cpu_s"] - runs["short"]["cpu_s"]) / (a.seconds - a.short_seconds)
                    doc["rows"].append({
                        "what": "earshot run" if mode == "exact" else "earshot run chunk-max",
                        "threads": t, "hop_s": hop, "cpu_per_audio_s": cpu,
                        "ratio_to_limit": None if limit is None else cpu / limit,
                        "startup_cpu_s": runs["short"]["cpu_s"] - cpu * a.short_seconds,
                        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs.values()),
                        "peak_pss_mb": max(r["peak_pss_mb"] for r in runs.values()),
                        "ready_s": runs["long"]["ready_s"],
                        "embed_stage": emb,
                    })
        # Onset-to-event on a real-time replay (hop = window/4, the fastest detection).
        for mode, p, mode_hops in runs_of:
            key = "realtime" if mode == "exact" else "realtime_chunk_max"
            doc[key] = realtime(d, model, p, live, onset, mode_hops[-1], w, threads[0], a.realtime_seconds, mode)
        # How many monitors this machine sustains in real time (no window shed).
        doc["monitors"] = []
        # Exact at the given hops (default window/4); chunk-max at its own hop (window/4 rounded).
        plan = [(mode, p, mh) for mode, p, mode_hops in runs_of
                for mh in ([float(x) for x in a.monitor_hop.split(",") if x] or [w / 4]
                           if mode == "exact" else mode_hops[-1:])]

        def monitors_run(mode, p, mh, n):
            cfg, _ = config(d, model, p, live, mh, True, threads[0], f"mon{n}-{mode}-{mh}", monitors=n)
            r = run_daemon(cfg)
            windows = n * int((a.realtime_seconds - w) / mh + 1)
            row = {"embed": mode, "monitors": n, "hop_s": mh, "seconds": a.realtime_seconds,
                   "windows": windows, "shed": r["shed"],
                   "cpu_s_per_audio_s_per_monitor": r["cpu_s"] / a.realtime_seconds / n,
                   "peak_rss_mb": r["peak_rss_mb"], "peak_pss_mb": r["peak_pss_mb"],
                   "ready_s": r["ready_s"]}
            doc["monitors"].append(row)
            print(f"  {n} monitor(s), {mode}, hop {mh:.4g} s: {r['shed']} of {windows} windows shed",
                  file=sys.stderr, flush=True)
            return row["shed"] == 0

        doc["sustained"] = []
        for mode, p, mh in plan:
            if a.monitors != "auto":
                for n in [int(x) for x in a.monitors.split(",") if x]:
                    monitors_run(mode, p, mh, n)
                continue
            # Found, not guessed: double until a window is shed, then halve the gap between the
            # most that kept up and the fewest that did not, to within an eighth.
            good, bad, n = 0, None, 1
            while bad is None and n <= a.max_monitors:
                if monitors_run(mode, p, mh, n):
                    good, n = n, n * 2
                else:
                    bad = n
            while bad is not None and bad - good > max(1, good // 8):
                n = (good + bad) // 2
                if monitors_run(mode, p, mh, n):
                    good = n
                else:
                    bad = n
            doc["sustained"].append({"embed": mode, "hop_s": mh, "monitors": good, "first_shedding": bad,
                                     "max_tried": a.max_monitors})
        # The way people do it today.
        py, why = find_torch_python(a.python)
        if py is None:
            doc["rows"].append({"what": "python (librosa + PyTorch eager)", "hop_s": None, "skipped": why})
        for hop in hops if py else []:
            out = sh([py, os.path.join(ROOT, "scripts", "bench", "python_reference.py"), "--stream", long,
                      "--model-card", os.path.join(model, "card.json"), "--window", str(w), "--hop", str(hop),
                      "--threads", str(threads[0]), "--json"]).stdout
            res = json.loads(out)
            lim = next((x["cpu_per_audio_s"] for x in doc["rows"] if x["what"] == "limit"), None)
            ours = next((x["cpu_per_audio_s"] for x in doc["rows"] if x["what"] == "earshot run" and x["hop_s"] == hop), None)
            # chunk-max's nearest hop (its hop is rounded to whole frames: 0.2554 s for 0.25 s).
            cms = [x for x in doc["rows"] if x["what"] == "earshot run chunk-max" and x.get("hop_s")]
            cm = min(cms, key=lambda x: abs(x["hop_s"] - hop), default=None)
            doc["rows"].append({"what": "python (librosa + PyTorch eager)", "threads": threads[0], "hop_s": hop,
                                "cpu_per_audio_s": res["cpu_per_audio_s"],
                                "ratio_to_limit": None if lim is None else res["cpu_per_audio_s"] / lim,
                                "python_over_earshot": None if ours is None else res["cpu_per_audio_s"] / ours,
                                "python_over_chunk_max": None if cm is None else res["cpu_per_audio_s"] / cm["cpu_per_audio_s"],
                                "chunk_max_hop_s": None if cm is None else cm["hop_s"], "detail": res})
    finally:
        shutil.rmtree(d, ignore_errors=True)
    doc["machine"]["loadavg_end"] = os.getloadavg()
    print_table(doc)
    text = json.dumps(doc, indent=2, default=str)
    if a.json_out:
        with open(a.json_out, "w") as f:
            f.write(text + "\n")
    print("\nJSON:")
    print(text)


def chunk_max_profile(d, model, w):
    """Learns the chunk-max profile (hop = window/4); returns (profile, hops, window) or why not."""
    cfg = os.path.join(d, "learn-chunk-max.toml")
    with open(cfg, "w") as f:
        f.write(f'[window]\nseconds = {w}\nhop_seconds = {w / 4}\nembed = "chunk-max"\n')
    p = f"{d}/profile-chunk-max"
    r = subprocess.run([EXE, "learn", "--config", cfg, "--normal", f"{d}/data/motor_id01/train", "--out", p,
                        "--model", model], capture_output=True, text=True)
    if r.returncode != 0:
        return "learn refused chunk-max: " + (r.stderr.strip().splitlines() or ["?"])[-1]
    win = json.load(open(os.path.join(p, "manifest.json")))["window"]
    chunk, seconds = win["hop_seconds"], win["seconds"]
    n = round(seconds / chunk)
    return p, sorted({chunk * k for k in (n, n // 2, 1) if k >= 1 and n % k == 0}, reverse=True), seconds


def realtime(d, model, prof, live, onset, hop, w, threads, seconds, mode):
    """Onset-to-event on a real-time replay of `live` (fault from `onset`) at `hop`."""
    cfg, state = config(d, model, prof, live, hop, True, threads, f"live-{mode}")
    r = run_daemon(cfg, state=state, onset_s=onset)
    lat = decided = rules = None
    if r["first_event"]:
        # The event's own stamps give the monitor's clock: stream second t was heard at
        # start.wall - start.stream_s + t. The event counts when its line is in the file.
        seen, rec = r["first_event"]
        ev = rec["event"]
        heard = rfc3339(ev["start"]["wall"]) - ev["start"]["stream_s"] + onset
        lat = seen - heard
        decided = rfc3339(ev["detected"]["wall"]) - heard
        # Split: how much audio the rules needed (stream time from the onset to the end of
        # the triggering window) and what the pipeline added after that window was heard.
        rules = ev["detected"]["stream_s"] - onset
    win = json.load(open(os.path.join(prof, "manifest.json")))["window"]["seconds"]
    return {"embed": mode, "hop_s": hop, "window_s": win, "seconds": seconds, "onset_s": onset,
            "onset_to_event_s": lat, "onset_to_decision_s": decided,
            "audio_needed_by_the_rules_s": rules,
            "pipeline_after_trigger_window_s": None if rules is None else decided - rules,
            "target_s": win + hop + 0.2, "ready_s": r["ready_s"],
            "peak_rss_mb": r["peak_rss_mb"]}


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def fmt(v):
    return "?" if v is None else f"{v:.2f} s"


def print_table(doc):
    m = doc["machine"]
    print(f"earshot speed, {doc['model']} ({doc['model_file_mb']} MB), {doc['audio']['seconds']:.0f} s of 48 kHz audio, "
          f"window {doc['audio']['window_s']} s; {m['cores']} cores ({m['cpu']}), load {m['loadavg_start'][0]:.1f}\n")
    print("| path | threads | hop | CPU s per audio s | x limit | embed stage: streamed / per-window front end | peak RSS / PSS MB | start-to-READY s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in doc["rows"]:
        hop = "-" if r.get("hop_s") is None else f"{r['hop_s']:.4g} s"
        if "skipped" in r:
            print(f"| {r['what']} | - | {hop} | skipped: {r['skipped']} | | | | |")
            continue
        emb = r.get("embed_stage")
        es = "" if not emb else (f"{emb['front_end_and_network_cpu_per_audio_s']['streamed']:.4f} / "
                                 f"{emb['front_end_and_network_cpu_per_audio_s']['per_window']:.4f}")
        rss = f"{r['peak_rss_mb']:.0f} / {r.get('peak_pss_mb', 0):.0f}" if r.get("peak_rss_mb") else ""
        ready = f"{r['ready_s']:.2f}" if r.get("ready_s") is not None else ""
        print(f"| {r['what']} | {r.get('threads', '')} | {hop} | {r['cpu_per_audio_s']:.4f} | "
              f"{'-' if r.get('ratio_to_limit') is None else format(r['ratio_to_limit'], '.2f')} | {es} | {rss} | {ready} |")
    for r in doc["rows"]:
        if r.get("python_over_earshot"):
            print(f"python / earshot run at hop {r['hop_s']:g} s: {r['python_over_earshot']:.2f}x the CPU per audio s")
        if r.get("python_over_chunk_max"):
            print(f"python at hop {r['hop_s']:g} s / earshot run chunk-max at hop {r['chunk_max_hop_s']:.4g} s: "
                  f"{r['python_over_chunk_max']:.2f}x the CPU per audio s")
    for m in doc.get("monitors", []):
        print(f"{m['monitors']} monitor(s) in real time, {m.get('embed', 'exact')}, hop {m['hop_s']:.4g} s, {m['seconds']:.0f} s: "
              f"{m['shed']} of {m['windows']} windows shed, {m['cpu_s_per_audio_s_per_monitor']:.4f} CPU s per audio s "
              f"per monitor (start-up included), peak RSS {m['peak_rss_mb']:.0f} MB (PSS sampled {m.get('peak_pss_mb', 0):.0f} MB), READY {m['ready_s'] or float('nan'):.2f} s")
    for x in doc.get("sustained", []):
        more = (f"{x['first_shedding']} shed windows" if x["first_shedding"] is not None
                else f"{x['max_tried']} was the most tried")
        print(f"sustained in real time, {x['embed']}, hop {x['hop_s']:.4g} s: {x['monitors']} monitors with no "
              f"window shed ({more})")
    for rt in (doc.get("realtime"), doc.get("realtime_chunk_max")):
        if not rt:
            continue
        lat = "no event" if rt["onset_to_event_s"] is None else f"{rt['onset_to_event_s']:.2f} s"
        print(f"\nReal-time replay, {rt['embed']} ({rt['seconds']:.0f} s, fault from {rt['onset_s']:.0f} s, hop {rt['hop_s']:.4g} s): "
              f"onset-to-event {lat} (target window + hop + 0.2 s = {rt['target_s']:.2f} s; the rules needed "
              f"{fmt(rt['audio_needed_by_the_rules_s'])} of audio after the onset, the pipeline added "
              f"{fmt(rt['pipeline_after_trigger_window_s'])} after the triggering window was heard), "
              f"start-to-READY {rt['ready_s']:.2f} s, peak RSS {rt['peak_rss_mb']:.0f} MB "
              f"(model file {doc['model_file_mb']} MB)")


if __name__ == "__main__":
    main()
