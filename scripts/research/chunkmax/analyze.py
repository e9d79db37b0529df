"""Fidelity (cosine exact vs approximate window embeddings) and detection (k-NN AUC/pAUC) from
the cached embeddings (embed.py). Writes results.json and prints markdown tables.

usage: python analyze.py
"""
import json
import os

import numpy as np
from sklearn.metrics import roc_auc_score

import common as C

MACHINES = ["chainsaw", "diesel_idle", "furnace_burner", "helicopter", "hoist_motor", "tracked_vehicle"]


def wmax(chunks, n_per_window, step, nw):
    """window w = max of chunks[w*step : w*step + n_per_window]."""
    return np.stack([chunks[w * step:w * step + n_per_window].max(axis=0) for w in range(nw)])


def stream_windows(cells, starts):
    mid = 8 * np.arange(cells.shape[1]) + 3.5
    return np.stack([cells[:, (mid >= s) & (mid < s + C.WIN_FRAMES)].max(axis=1) for s in starts])


AL = "0.372 (w=48)"  # aligned extra: 48-frame windows at hop 16 frames


def windows_of(base, ctx, al=None, lvl=None):
    """{(hop, method): (n_windows, 512)} for one clip."""
    ex = base["ex"]
    n4 = ex.shape[0]  # hop 0.25 s windows (start 11w)
    n2 = (n4 + 1) // 2  # hop 0.5 s windows (start 22w)
    out = {
        ("0.5", "exact"): ex[0::2],
        ("0.25", "exact"): ex,
        ("0.5", "daemon_exact"): base["dm"],
        ("0.5", "chunkmax"): wmax(base["c22"], 2, 1, n2),
        ("0.5", "chunkmax_c11"): wmax(base["c11"], 4, 2, n2),
        ("0.25", "chunkmax"): wmax(base["c11"], 4, 1, n4),
        ("0.5", "stream"): stream_windows(base["stream"], [22 * w for w in range(n2)]),
        ("0.25", "stream"): stream_windows(base["stream"], [11 * w for w in range(n4)]),
    }
    if ctx is not None:
        for c in (8, 16):
            for kind in ("full", "crop"):
                out[("0.5", f"chunkmax_C{c}_{kind}")] = wmax(ctx[f"c22_C{c}_{kind}"], 2, 1, n2)
                out[("0.25", f"chunkmax_C{c}_{kind}")] = wmax(ctx[f"c11_C{c}_{kind}"], 4, 1, n4)
    if lvl is not None:
        for kind in ("own", "run"):
            out[("0.25", f"chunkmax_{kind}_level")] = wmax(lvl[f"c11_{kind}"], 4, 1, n4)
            out[("0.5", f"chunkmax_c11_{kind}_level")] = wmax(lvl[f"c11_{kind}"], 4, 2, n2)
    if al is not None:
        nw = al["ex48"].shape[0]
        out[(AL, "exact")] = al["ex48"]
        out[(AL, "chunkmax16")] = wmax(al["c16"], 3, 1, nw)
        out[(AL, "chunkmax8")] = wmax(al["c8"], 6, 2, nw)
    return out


def load_all():
    data = {}
    for r in C.manifest():
        key = r["path"].replace("/", "__").replace(".wav", "")
        b = os.path.join(C.CACHE, f"{key}.base.npz")
        if not os.path.exists(b):
            continue
        c = os.path.join(C.CACHE, f"{key}.ctx.npz")
        a = os.path.join(C.CACHE, f"{key}.aligned.npz")
        lv = os.path.join(C.CACHE, f"{key}.level.npz")
        opt = lambda p: dict(np.load(p)) if os.path.exists(p) else None  # noqa: E731
        data[r["path"]] = (r, windows_of(dict(np.load(b)), opt(c), opt(a), opt(lv)))
    return data


def cos(a, b):
    return (C.l2n(a) * C.l2n(b)).sum(axis=1)


def fidelity(data, paths):
    res = {}
    for p in paths:
        w = data[p][1]
        for (hop, m), e in w.items():
            if m in ("exact", "daemon_exact"):
                continue
            res.setdefault((hop, m), []).append(cos(w[(hop, "exact")], e))
        # reference scale: exact window vs the exact window one hop later (11 / 22 frames)
        for hop in ("0.25", "0.5", AL):
            if (hop, "exact") not in w:
                continue
            e = w[(hop, "exact")]
            res.setdefault((hop, "(ref) exact next window"), []).append(cos(e[:-1], e[1:]))
    out = {}
    for k, v in res.items():
        v = np.concatenate(v)
        out[k] = dict(n=int(v.size), clips=len(res[k]), median=float(np.median(v)),
                      p5=float(np.percentile(v, 5)), min=float(v.min()))
    return out


def detection(data, hop, method):
    per = {}
    for m in MACHINES:
        train = [w[(hop, method)] for r, w in data.values()
                 if r["machine"] == m and r["split"] == "train" and (hop, method) in w]
        test = [(r, w[(hop, method)]) for r, w in data.values()
                if r["machine"] == m and r["split"] == "test" and (hop, method) in w]
        n_train = sum(1 for r, _ in data.values() if r["machine"] == m and r["split"] == "train")
        if not train or len(train) < 30 or len(test) < 40:
            return None  # incomplete
        mem = C.l2n(np.concatenate(train))
        y, s, dn = [], [], []
        for r, e in test:
            d = 1.0 - (C.l2n(e) @ mem.T).max(axis=1)
            if r["label"] == "normal":
                dn.append(d)
            s.append(np.sort(d)[-3:].mean())
            y.append(1 if r["label"] == "anomaly" else 0)
        per[m] = dict(auc=float(roc_auc_score(y, s)), pauc=float(roc_auc_score(y, s, max_fpr=0.1)),
                      normal_window_dist_median=float(np.median(np.concatenate(dn))),
                      _y=y, _s=s, _p=[r["path"] for r, _ in test])
    per["mean"] = {k: float(np.mean([per[m][k] for m in MACHINES])) for k in per[MACHINES[0]] if not k.startswith("_")}
    return per


def _auc_rows(neg, pos):
    """AUC of each row: neg (n, a), pos (n, b) scores -> (n,)."""
    d = pos[:, :, None] - neg[:, None, :]
    return ((d > 0) + 0.5 * (d == 0)).mean(axis=(1, 2))


def boot_diff(a, b, n=2000, seed=0):
    """Paired bootstrap (clips resampled within machine and label) of mean AUC(a) - AUC(b)."""
    rng = np.random.default_rng(seed)
    tot = np.zeros(n)
    for m in MACHINES:
        assert a[m]["_p"] == b[m]["_p"]
        y = np.array(a[m]["_y"]); sa = np.array(a[m]["_s"]); sb = np.array(b[m]["_s"])
        neg, pos = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
        ni = rng.choice(neg, size=(n, neg.size)); pi = rng.choice(pos, size=(n, pos.size))
        tot += _auc_rows(sa[ni], sa[pi]) - _auc_rows(sb[ni], sb[pi])
    diffs = tot / len(MACHINES)
    return dict(mean=float(diffs.mean()), lo=float(np.percentile(diffs, 2.5)), hi=float(np.percentile(diffs, 97.5)))


def main():
    data = load_all()
    subset, seen = [], {}
    for r, _ in data.values():
        if r["split"] == "test" and seen.get(r["machine"], 0) < 5:
            seen[r["machine"]] = seen.get(r["machine"], 0) + 1
            subset.append(r["path"])
    fid_sub = fidelity(data, subset)
    fid_all = fidelity(data, list(data))
    methods = sorted({k for _, w in data.values() for k in w})
    det = {f"{h}|{m}": detection(data, h, m) for h, m in methods}
    boots = {}
    for k, v in det.items():
        h, m = k.split("|")
        if v is None or m == "exact" or det.get(f"{h}|exact") is None:
            continue
        boots[k] = boot_diff(v, det[f"{h}|exact"])
    for v in det.values():
        for m in MACHINES if v else ():
            for x in ("_y", "_s", "_p"):
                v[m].pop(x)
    res = dict(clips=len(data), auc_diff_vs_exact_bootstrap=boots,
               fidelity_subset={f"{h}|{m}": v for (h, m), v in fid_sub.items()},
               fidelity_all={f"{h}|{m}": v for (h, m), v in fid_all.items()},
               detection=det)
    with open(os.path.join(C.OUT, "results.json"), "w") as f:
        json.dump(res, f, indent=1)

    print(f"clips with embeddings: {len(data)}\n")
    for name, fid in (("subset: first 5 test clips per machine", fid_sub), ("all clips", fid_all)):
        print(f"### Fidelity, {name}: cosine(exact window, approximation)\n")
        print("| hop | method | clips | windows | median | 5th pct | min |\n|---|---|---|---|---|---|---|")
        for (h, m), v in sorted(fid.items()):
            print(f"| {h} | {m} | {v['clips']} | {v['n']} | {v['median']:.4f} | {v['p5']:.4f} | {v['min']:.4f} |")
        print()
    print("### Detection: AUC / pAUC(0.1) per machine\n")
    print("| hop | method | " + " | ".join(MACHINES) + " | mean |\n|---|---|" + "---|" * (len(MACHINES) + 1))
    for k, v in sorted(det.items()):
        if v is None:
            continue
        h, m = k.split("|")
        cells = " | ".join(f"{v[x]['auc']:.3f} / {v[x]['pauc']:.3f}" for x in MACHINES + ["mean"])
        print(f"| {h} | {m} | {cells} |")
    print("\n### Mean AUC minus exact (same hop), paired bootstrap 95% interval\n")
    for k, v in sorted(boots.items()):
        print(f"- {k}: {v['mean']:+.4f} [{v['lo']:+.4f}, {v['hi']:+.4f}]")
    print("\n### Median k-NN distance (1 - cosine) of normal test windows, mean over machines\n")
    for k, v in sorted(det.items()):
        if v is not None:
            print(f"- {k}: {v['mean']['normal_window_dist_median']:.4f}")


if __name__ == "__main__":
    main()
