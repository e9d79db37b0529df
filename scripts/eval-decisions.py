#!/usr/bin/env python3
"""Detection delay and false events per day of earshot's decision rules, measured through the
real daemon (`earshot run`, fast WAV replay, the events file) -- no rule is re-implemented here.

Two rule sets are compared on the same audio:
  * n_of_m     -- `[monitor.decide] transient = false`: N of M only (sustained changes);
  * both       -- the defaults: N of M plus the transient rule (embedding transient levels and
                  the impulse scorer).

Material:
  generator  `earshot synth dataset` (train clips -> profile) and `earshot synth stream`
             (one stream per fault kind with a known onset, and a long normal stream);
  devset     the DCASE-style dev set (manifest.csv with anomaly_onsets_s): per machine a
             profile from its train clips; its normal test clips, then its anomalous test
             clips, each concatenated into one replay with 2 s of digital silence between
             clips (the no-signal gate separates them, as a stopped machine would).

Figures: per rule set, anomalous files/clips detected, median and max detection delay
(detected.stream_s - onset), and false events per day = events that start on normal audio
(normal clips, or before the onset) per second of normal audio x 86400.

Usage:
  cargo build --release
  scripts/eval-decisions.py generator [--model DIR] [--normal-minutes 30]
  scripts/eval-decisions.py devset --manifest /tmp/devset-audio/devset/manifest.csv [--model DIR]
"""
import argparse
import csv
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EARSHOT = os.path.join(ROOT, "target", "release", "earshot")
GAP_S = 2.0
RULESETS = {"n_of_m": "transient = false", "both": "transient = true"}


def run(args, **kw):
    r = subprocess.run([EARSHOT] + args, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"earshot {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r


def model_args(model):
    return ["--model", model] if model else []


def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2, f"{path}: 16-bit WAVs only"
        ch, rate, n = w.getnchannels(), w.getframerate(), w.getnframes()
        raw = w.readframes(n)
    s = struct.unpack(f"<{n * ch}h", raw)
    if ch > 1:
        s = [sum(s[i:i + ch]) // ch for i in range(0, len(s), ch)]
    return list(s), rate


def write_wav(path, rate, samples):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))


def concat(paths, out):
    """Clips joined with GAP_S of digital silence; returns [(start_s, end_s)] per clip."""
    allv, spans, rate0, t = [], [], None, 0.0
    for p in paths:
        s, rate = read_wav(p)
        if rate0 is None:
            rate0 = rate
        assert rate == rate0, f"{p}: sample rate {rate} differs from {rate0}"
        if allv:
            allv.extend([0] * int(GAP_S * rate))
            t += GAP_S
        spans.append((t, t + len(s) / rate))
        t += len(s) / rate
        allv.extend(s)
    write_wav(out, rate0, allv)
    return spans


def replay(work, monitors, decide, model):
    """Runs the daemon over `monitors` [(name, profile, wav)] with `decide` (TOML inline
    table body); returns {monitor: [anomaly_started events]}."""
    state = tempfile.mkdtemp(dir=work)
    cfg = os.path.join(state, "earshot.toml")
    with open(cfg, "w") as f:
        if model:
            f.write(f'[model]\ndir = "{model}"\n')
        f.write(f'[daemon]\nstate_dir = "{state}"\n[metrics]\nenabled = false\n')
        for name, prof, wav in monitors:
            f.write(
                f'[[monitor]]\nname = "{name}"\nprofile = "{prof}"\n'
                f'source = {{ file = "{wav}", realtime = false, loop = false }}\n'
                f"decide = {{ {decide}, release_after = 2.0 }}\n"
            )
    run(["run", "--config", cfg, "--exit-when-done"], cwd=state)
    out = {m[0]: [] for m in monitors}
    with open(os.path.join(state, "events.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") == "anomaly_started":
                out[r["labels"]["monitor"]].append(r["event"])
    shutil.rmtree(state)
    return out


def summarise(label, delays, missed, false_events, normal_s, by_rule):
    d = sorted(delays)
    fmt = lambda v: f"{v:.2f}"
    return {
        "rules": label,
        "detected": f"{len(d)}/{len(d) + missed}",
        "median_delay_s": fmt(statistics.median(d)) if d else "-",
        "max_delay_s": fmt(d[-1]) if d else "-",
        "false_events": false_events,
        "normal_h": f"{normal_s / 3600:.2f}",
        "false_per_day": f"{false_events / normal_s * 86400:.1f}" if normal_s else "-",
        "first_by": ", ".join(f"{k}: {v}" for k, v in sorted(by_rule.items())),
    }


def score_events(events, onset, end):
    """(delay of the first event detected after the onset, false events before it)."""
    false = [e for e in events if e["detected"]["stream_s"] <= onset]
    hit = [e for e in events if onset < e["detected"]["stream_s"] <= end + 3.0]
    return (hit[0] if hit else None), len(false)


def rule_of(e):
    return f'{e.get("rule")}:{"+".join(e.get("fired", []))}'


def generator(a, work):
    data = os.path.join(work, "data")
    rate = "16000"
    machines = [("motor", 1), ("fan", 2), ("pump", 3)]
    run(["synth", "dataset", "--out", data, "--test-clips", "1", "--sample-rate", rate]
        + sum([["--machine", f"{k}:{i}"] for k, i in machines], []))
    faults = ["impact", "bearing", "rub", "cavitation", "imbalance", "speed-change"]
    results = {}
    monitors, truth = [], {}
    for kind, mid in machines:
        name = f"{kind}_id{mid:02d}"
        prof = os.path.join(work, "prof-" + name)
        run(["learn", "--normal", os.path.join(data, name, "train"), "--out", prof]
            + model_args(a.model))
        secs = a.normal_minutes * 60
        wav = os.path.join(work, f"{name}-normal.wav")
        run(["synth", "stream", "--out", wav, "--machine", kind, "--id", str(mid),
             "--fault", "bearing", "--level-db", "-60", "--seconds", str(secs + 1),
             "--onset", str(secs), "--sample-rate", rate, "--seed", "7"])
        monitors.append((f"{name}-normal", prof, wav))
        truth[f"{name}-normal"] = (None, secs)
        for f in faults:
            if kind != "pump" and f == "cavitation":
                continue
            for lvl in a.levels:
                wav = os.path.join(work, f"{name}-{f}{lvl}.wav")
                run(["synth", "stream", "--out", wav, "--machine", kind, "--id", str(mid),
                     "--fault", f, "--level-db", str(lvl), "--seconds", "40", "--onset", "20",
                     "--sample-rate", rate, "--seed", "3"])
                monitors.append((f"{name}-{f}{lvl}", prof, wav))
                truth[f"{name}-{f}{lvl}"] = (20.0, 40.0)
    rows, per_fault = [], {}
    for label, decide in RULESETS.items():
        ev = replay(work, monitors, decide, a.model)
        delays, missed, false, normal_s, by = [], 0, 0, 0.0, {}
        for m, events in ev.items():
            onset, end = truth[m]
            if onset is None:
                false += len(events)
                normal_s += end
                continue
            hit, f = score_events(events, onset, end)
            false += f
            normal_s += onset
            fault = m.split("-", 1)[1]
            per_fault.setdefault((label, fault), []).append(
                hit["detected"]["stream_s"] - onset if hit else None)
            if hit:
                delays.append(hit["detected"]["stream_s"] - onset)
                by[rule_of(hit)] = by.get(rule_of(hit), 0) + 1
            else:
                missed += 1
        rows.append(summarise(label, delays, missed, false, normal_s, by))
    return rows, per_fault


def devset(a, work):
    base = os.path.dirname(os.path.abspath(a.manifest))
    with open(a.manifest) as f:
        rows = list(csv.DictReader(f))
    machines = sorted({r["machine"] for r in rows})
    monitors, truth = [], {}
    for m in machines:
        prof = os.path.join(work, "prof-" + m)
        train = [os.path.join(base, r["path"]) for r in rows
                 if r["machine"] == m and r["split"] == "train"]
        run(["learn", "--normal"] + train + ["--out", prof] + model_args(a.model))
        for label in ["normal", "anomaly"]:
            clips = [r for r in rows
                     if r["machine"] == m and r["split"] == "test" and r["label"] == label]
            wav = os.path.join(work, f"{m}-{label}.wav")
            spans = concat([os.path.join(base, r["path"]) for r in clips], wav)
            onsets = []
            for r, (s0, s1) in zip(clips, spans):
                # "2.19 4.52" (events) or "state 2.44-3.96s" (a changed state from 2.44 s).
                text = r.get("anomaly_onsets_s", "").replace("state", " ").replace(";", " ")
                on = [float(x.split("-")[0].rstrip("s")) for x in text.split()]
                # Faults without onsets (a changed speed) are there from the clip's start.
                onsets.append((s0 + (min(on) if on else 0.0), s0, s1, r["anomaly_type"]))
            monitors.append((f"{m}-{label}", prof, wav))
            truth[f"{m}-{label}"] = (label, spans, onsets)
    out, per_fault = [], {}
    for label, decide in RULESETS.items():
        ev = replay(work, monitors, decide, a.model)
        delays, missed, false, normal_s, by = [], 0, 0, 0.0, {}
        for mon, events in ev.items():
            kind, spans, onsets = truth[mon]
            if kind == "normal":
                false += len(events)
                normal_s += sum(s1 - s0 for s0, s1 in spans)
                continue
            for onset, s0, s1, atype in onsets:
                inside = [e for e in events if s0 <= e["detected"]["stream_s"] <= s1 + 3.0]
                before = [e for e in inside if e["detected"]["stream_s"] <= onset]
                after = [e for e in inside if e["detected"]["stream_s"] > onset]
                false += len(before)
                normal_s += onset - s0
                d = after[0]["detected"]["stream_s"] - onset if after else None
                per_fault.setdefault((label, atype), []).append(d)
                if after:
                    delays.append(d)
                    by[rule_of(after[0])] = by.get(rule_of(after[0]), 0) + 1
                else:
                    missed += 1
        out.append(summarise(label, delays, missed, false, normal_s, by))
    return out, per_fault


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["generator", "devset"])
    p.add_argument("--manifest", default="/tmp/devset-audio/devset/manifest.csv")
    p.add_argument("--model", default=None, help="model directory (default: earshot's)")
    p.add_argument("--normal-minutes", type=float, default=30.0)
    p.add_argument("--levels", type=float, nargs="+", default=[-6.0])
    a = p.parse_args()
    if not os.path.exists(EARSHOT):
        sys.exit(f"{EARSHOT} missing: run `cargo build --release` first")
    if a.model:
        a.model = os.path.abspath(a.model)
    with tempfile.TemporaryDirectory(prefix="earshot-eval-decisions-") as work:
        rows, per_fault = generator(a, work) if a.what == "generator" else devset(a, work)
    cols = list(rows[0].keys())
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print()
    print("| rules | fault | detected | median delay s |")
    print("|---|---|---|---|")
    for (label, fault), ds in sorted(per_fault.items()):
        hit = sorted(d for d in ds if d is not None)
        med = f"{statistics.median(hit):.2f}" if hit else "-"
        print(f"| {label} | {fault} | {len(hit)}/{len(ds)} | {med} |")


if __name__ == "__main__":
    main()
