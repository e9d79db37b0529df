"""Scorer candidates for issue 9 item 3, measured on the dev set the way `earshot eval` does
(per machine: learn from the train normals, AUC and pAUC (FPR 0..0.1, McClish) of the clip
scores of the test clips; clip score = mean of the 3 highest window scores).

Inputs: the log-mel dump (`cargo run --release --example dump_logmel`) and the feature cache
(`scripts/research/features.py`). No audio is read here.

  python scripts/research/scorers.py DUMP_DIR CACHE_DIR [candidate ...]
"""
import json
import os
import sys
from collections import defaultdict

import numpy as np
from sklearn.metrics import roc_auc_score

RNG = np.random.default_rng(0)
TOP_K = 3


MANIFEST = os.environ.get("MANIFEST", "/tmp/devset-audio/devset/manifest.csv")


def load(dump, cache, frames=44, mels=96):
    """Rows per machine, in manifest order (the dump numbers files that way); machines whose
    features are not all cached yet are left out (so research can start while they run)."""
    import csv
    by = defaultdict(list)
    for i, r in enumerate(csv.DictReader(open(MANIFEST))):
        f = f"{i:04d}.f32"
        row = {"file": f, "machine": r["machine"], "split": r["split"],
               "anomaly": r["label"] != "normal", "path": r["path"]}
        by[r["machine"]].append(row)
    ready = {}
    only = os.environ.get("MACHINES")
    for m, rows in by.items():
        if only and m not in only.split(","):
            continue
        if all(os.path.exists(os.path.join(cache, r["file"].replace(".f32", ".npz"))) for r in rows):
            for r in rows:
                n = os.path.getsize(os.path.join(dump, r["file"])) // (4 * frames * mels)
                r["shape"] = [n, frames, mels]
            ready[m] = rows
    return ready


def clip_feats(dump, cache, row, what):
    if what == "logmel":
        return np.fromfile(os.path.join(dump, row["file"]), dtype="<f4").reshape(row["shape"])
    z = np.load(os.path.join(cache, row["file"].replace(".f32", ".npz")))
    return z[what].astype(np.float32)


def l2n(x, axis=-1):
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, 1e-12)


def knn_dist(q, bank, k, bank_clip=None, q_clip=None, cosine=False, chunk=4096):
    """Mean distance of each row of q to its k nearest rows of bank; rows of bank from the
    query's own clip are excluded when clip ids are given (leave-one-clip-out)."""
    out = np.empty(len(q), np.float32)
    bn = (bank * bank).sum(1)
    for s in range(0, len(q), chunk):
        qq = q[s:s + chunk]
        g = qq @ bank.T
        if cosine:
            d = 1.0 - g
        else:
            d = np.maximum((qq * qq).sum(1)[:, None] + bn[None, :] - 2 * g, 0.0)
        if bank_clip is not None:
            d[q_clip[s:s + chunk, None] == bank_clip[None, :]] = np.inf
        part = np.partition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else d
        if not cosine:
            part = np.sqrt(part)
        out[s:s + chunk] = part.mean(1)
    return out


def clip_score(win_scores, how="top3"):
    w = np.sort(win_scores)[::-1]
    return w[:TOP_K].mean() if how == "top3" else w.mean()


def pauc(y, s, max_fpr=0.1):
    return roc_auc_score(y, s, max_fpr=max_fpr)


# ---------------------------------------------------------------------------------------------
# Candidates. Each takes (train clips, test clips) as lists of per-clip feature arrays and
# returns (per-train-window LOO scores per clip, per-test-window scores per clip).
# ---------------------------------------------------------------------------------------------

def emb_knn(train, test, k=3):
    """Today's k-NN: cosine over L2-normalised embeddings, all train windows."""
    bank = l2n(np.concatenate(train))
    cid = np.concatenate([np.full(len(t), i) for i, t in enumerate(train)])
    loo = knn_dist(bank, bank, k, cid, cid, cosine=True)
    loo = np.split(loo, np.cumsum([len(t) for t in train])[:-1])
    return loo, [knn_dist(l2n(t), bank, k, cosine=True) for t in test]


def pooled_knn(train, test, pool="meanmax", k=3):
    """k-NN like emb_knn on other poolings of block 4: time-mean (and max) of the
    frequency-mean, and a per-band vector (time-max per frequency row)."""
    def emb(x):
        fm = x.mean(3)  # [w, C, T]
        if pool == "mean":
            return fm.mean(2)
        if pool == "meanmax":
            return np.concatenate([l2n(fm.mean(2)), l2n(fm.max(2))], 1)
        if pool == "gem":  # generalised mean (p=3) over time: between mean and max
            return np.cbrt((np.maximum(fm, 0) ** 3).mean(2))
        if pool == "bands":
            return x.max(2).reshape(len(x), -1)  # [w, C*F]
        raise ValueError(pool)
    return emb_knn([emb(t) for t in train], [emb(t) for t in test], k)


def patches(x, mode):
    """[windows, C, T, F] -> [windows, T*F, D] patch features."""
    w, c, t, f = x.shape
    if mode == "tf":
        p = x.transpose(0, 2, 3, 1).reshape(w, t * f, c)
    elif mode == "tf_avg3":
        # 3x3 neighbourhood average (PatchCore's local aggregation), zero-padded edges
        pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
        acc = sum(pad[:, :, i:i + t, j:j + f] for i in range(3) for j in range(3)) / 9.0
        p = acc.transpose(0, 2, 3, 1).reshape(w, t * f, c)
    elif mode == "time":
        p = x.mean(3).transpose(0, 2, 1)  # [w, T, C]
    elif mode == "freq":
        p = x.max(2).transpose(0, 2, 1)  # [w, F, C]: per band, max over time
    else:
        raise ValueError(mode)
    return p


def patch_knn(train, test, mode="tf", bank_size=8192, k=1, cosine=False, agg="max"):
    tp = [patches(t, mode) for t in train]
    npw = tp[0].shape[1]
    flat = np.concatenate([p.reshape(-1, p.shape[2]) for p in tp])
    cid = np.concatenate([np.full(p.shape[0] * p.shape[1], i) for i, p in enumerate(tp)])
    if cosine:
        flat = l2n(flat)
    sel = RNG.choice(len(flat), min(bank_size, len(flat)), replace=False)
    bank, bcid = flat[sel], cid[sel]

    def win_scores(p, own=None):
        q = p.reshape(-1, p.shape[2])
        if cosine:
            q = l2n(q)
        qc = None if own is None else np.full(len(q), own)
        d = knn_dist(q, bank, k, bcid if own is not None else None, qc, cosine=cosine)
        d = d.reshape(p.shape[0], npw)
        return d.max(1) if agg == "max" else d.mean(1)

    loo = [win_scores(p, i) for i, p in enumerate(tp)]
    return loo, [win_scores(patches(t, mode)) for t in test]


def logmel_maha(train, test, context=1, dims=None, agg="mean", shrink=1e-3):
    """Mahalanobis distance of log-mel frames (optionally stacked with neighbours, optionally
    PCA-reduced) to the training frames' Gaussian; window score = mean (or max) over frames."""
    def frames(x):
        w, t, m = x.shape
        if context == 1:
            return x
        fr = [x[:, i:t - context + 1 + i] for i in range(context)]
        return np.concatenate(fr, axis=2)

    def fit(xs):
        f = np.concatenate([frames(x).reshape(-1, frames(x).shape[2]) for x in xs])
        mu = f.mean(0)
        cov = np.cov(f - mu, rowvar=False)
        if dims:
            ev, evec = np.linalg.eigh(cov)
            evec = evec[:, ::-1][:, :dims]
            ev = ev[::-1][:dims]
            return mu, evec / np.sqrt(ev + shrink * ev.mean())
        cov += shrink * np.trace(cov) / len(cov) * np.eye(len(cov))
        l = np.linalg.cholesky(np.linalg.inv(cov))
        return mu, l

    def win_scores(x, model):
        mu, proj = model
        f = frames(x)
        z = (f - mu) @ proj
        d = np.sqrt((z * z).sum(2))
        return d.mean(1) if agg == "mean" else d.max(1)

    full = fit(train)
    # LOO: refit without the clip (cheap: 30 fits of a 96..480-d covariance)
    loo = [win_scores(x, fit(train[:i] + train[i + 1:])) for i, x in enumerate(train)]
    return loo, [win_scores(x, full) for x in test]


CANDIDATES = {
    "emb_knn": ("embedding", emb_knn, {}),
    "emb_knn1": ("embedding", emb_knn, {"k": 1}),
    "b4_mean": ("block4", pooled_knn, {"pool": "mean"}),
    "b4_meanmax": ("block4", pooled_knn, {"pool": "meanmax"}),
    "b4_gem": ("block4", pooled_knn, {"pool": "gem"}),
    "b4_bands": ("block4", pooled_knn, {"pool": "bands"}),
    "b4_tf": ("block4", patch_knn, {"mode": "tf"}),
    "b4_tf_cos": ("block4", patch_knn, {"mode": "tf", "cosine": True}),
    "b4_tfavg": ("block4", patch_knn, {"mode": "tf_avg3"}),
    "b4_tf2k": ("block4", patch_knn, {"mode": "tf", "bank_size": 2048}),
    "b4_time": ("block4", patch_knn, {"mode": "time"}),
    "b4_freq": ("block4", patch_knn, {"mode": "freq"}),
    "b3_tf": ("block3", patch_knn, {"mode": "tf"}),
    "b3_tfavg": ("block3", patch_knn, {"mode": "tf_avg3"}),
    "mel_maha": ("logmel", logmel_maha, {}),
    "mel_maha_max": ("logmel", logmel_maha, {"agg": "max"}),
    "mel_maha_c5p64": ("logmel", logmel_maha, {"context": 5, "dims": 64}),
}


def evaluate(dump, cache, names):
    by = load(dump, cache)
    results = {}  # name -> machine -> (auc, pauc)
    raw = {}      # (name, machine) -> (loo, test, labels)
    for machine, rows in sorted(by.items()):
        train_rows = [r for r in rows if r["split"] == "train"]
        test_rows = [r for r in rows if r["split"] == "test"]
        y = np.array([r["anomaly"] for r in test_rows], int)
        feats = {}
        for name in names:
            what, fn, kw = CANDIDATES[name]
            if what not in feats:
                feats[what] = ([clip_feats(dump, cache, r, what) for r in train_rows],
                               [clip_feats(dump, cache, r, what) for r in test_rows])
            loo, ts = fn(*feats[what], **kw)
            raw[(name, machine)] = (loo, ts, y)
            s = np.array([clip_score(t) for t in ts])
            results.setdefault(name, {})[machine] = (roc_auc_score(y, s), pauc(y, s))
            print(f"{machine:16s} {name:16s} AUC {results[name][machine][0]:.3f} pAUC {results[name][machine][1]:.3f}", flush=True)
    return results, raw


def fuse(raw, names, machines, how="z"):
    """Window-level fusion after normalising each scorer by its LOO train scores."""
    res = {}
    for m in machines:
        parts = []
        for n in names:
            loo, ts, y = raw[(n, m)]
            l = np.concatenate(loo)
            mu, sd = l.mean(), l.std() + 1e-9
            parts.append([(t - mu) / sd for t in ts])
        fused = [np.mean([p[i] for p in parts], 0) if how == "z" else np.max([p[i] for p in parts], 0)
                 for i in range(len(parts[0]))]
        s = np.array([clip_score(f) for f in fused])
        res[m] = (roc_auc_score(y, s), pauc(y, s))
    return res


def table(results):
    machines = sorted(next(iter(results.values())).keys())
    print("| candidate | " + " | ".join(machines) + " | mean AUC | mean pAUC | min AUC |")
    print("|---" * (len(machines) + 4) + "|")
    for name, r in results.items():
        a = [r[m][0] for m in machines]
        p = [r[m][1] for m in machines]
        cells = [f"{r[m][0]:.3f} / {r[m][1]:.3f}" for m in machines]
        print(f"| {name} | " + " | ".join(cells) + f" | {np.mean(a):.3f} | {np.mean(p):.3f} | {np.min(a):.3f} |")


if __name__ == "__main__":
    dump, cache = sys.argv[1], sys.argv[2]
    names = sys.argv[3:] or list(CANDIDATES)
    fusions = [n for n in names if "+" in n]
    singles = sorted({p for n in names for p in n.split("+")}, key=lambda n: list(CANDIDATES).index(n))
    results, raw = evaluate(dump, cache, singles)
    machines = sorted(next(iter(results.values())).keys())
    for f in fusions:
        results[f] = fuse(raw, f.split("+"), machines)
    table(results)
