"""Network CPU time (process_time, one thread, model.onnx as shipped) of each way of embedding the
same stretch of audio: 396 log-mel frames (9.2 s) of each of N clips, i.e. 9 no-overlap 1 s
windows, 18 windows at hop 0.5 s, 36 at hop 0.25 s, 18 22-frame or 36 11-frame chunks (+ the
element-wise max that builds the windows), chunks with C frames of context each side (steady
state: interior chunks, length chunk + 2C). Front end excluded (shared by all). Two call
patterns: live (one network call per hop, batch 1 or the hop's chunk) and batched (one call per
clip with all its windows/chunks).

usage: python cpu.py [--clips 6] [--repeats 2]
"""
import argparse
import json
import os
import time

import numpy as np

import common as C

FR = 396


def plans():
    p = {"no-overlap (hop 1 s)": (44, 44, 0, 0)}  # (unit frames, step, n_per_window, ctx)
    p["exact hop 0.5"] = (44, 22, 0, 0)
    p["exact hop 0.25"] = (44, 11, 0, 0)
    for n, h in ((22, "0.5"), (11, "0.25")):
        for ctx in (0, 8, 16):
            p[f"chunk-max hop {h}" + (f" C={ctx}" if ctx else "")] = (n, n, 44 // n, ctx)
    return p


def units(L, unit, step, ctx):
    """Model inputs of one pass over frames [ctx, ctx + FR) + a window's tail."""
    if unit == 44:
        n = (FR - 44) // step + 1 if step < 44 else FR // 44
        return [L[s:s + 44] for s in range(0, n * step, step)]
    n = FR // unit
    return [L[16 + unit * j - ctx:16 + unit * j + unit + ctx] for j in range(n)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    sess = C.session()
    rows, seen = [], set()
    for r in C.manifest():
        if r["split"] == "test" and r["machine"] not in seen and len(rows) < a.clips:
            seen.add(r["machine"])
            rows.append(r)
    mels = []
    for r in rows:
        x = C.load_audio(r["path"])
        mels.append(C.logmel(x, C.level_gain(x)))
    run = lambda b: sess.run(None, {"logmel": np.ascontiguousarray(np.stack(b)[:, None])})[0]
    run([mels[0][:44]])  # warm-up
    res = {}
    for name, (unit, step, npw, ctx) in plans().items():
        for mode in ("live", "batched"):
            t = 0.0
            nwin = 0
            for _ in range(a.repeats):
                for L in mels:
                    us = units(L, unit, step, ctx)
                    t0 = time.process_time()
                    if mode == "live":
                        embs = [run([u]) [0] for u in us]
                    else:
                        embs = list(run(us))
                    if npw:  # windows = max over the chunks of each window
                        embs = np.stack(embs)
                        wins = [embs[j:j + npw].max(axis=0) for j in range(len(embs) - npw + 1)]
                    else:
                        wins = embs
                    t += time.process_time() - t0
                    nwin += len(wins)
            res[f"{name}|{mode}"] = dict(seconds_per_clip=t / (a.repeats * len(mels)),
                                         windows_per_clip=nwin / (a.repeats * len(mels)))
            print(name, mode, f"{res[f'{name}|{mode}']['seconds_per_clip']:.3f} s", flush=True)
    with open(os.path.join(C.OUT, "cpu.json"), "w") as f:
        json.dump(res, f, indent=1)
    print("\n| method | windows per 9.2 s | live s | live ratio | batched s | batched ratio |\n|---|---|---|---|---|---|")
    b_live = res["no-overlap (hop 1 s)|live"]["seconds_per_clip"]
    b_bat = res["no-overlap (hop 1 s)|batched"]["seconds_per_clip"]
    for name in plans():
        l, b = res[f"{name}|live"], res[f"{name}|batched"]
        print(f"| {name} | {l['windows_per_clip']:.0f} | {l['seconds_per_clip']:.3f} | {l['seconds_per_clip'] / b_live:.2f} | "
              f"{b['seconds_per_clip']:.3f} | {b['seconds_per_clip'] / b_bat:.2f} |")


if __name__ == "__main__":
    main()
