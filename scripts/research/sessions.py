"""Normal drift between recording sessions (issue 9 item 3d): one pooled k-NN memory, or a
memory per session?

The dev set has no dated recording sessions, but each normal clip carries the real background
recording it was mixed with (manifest column `background_file`: wind, rain, a steam engine, a
pumpjack, traffic, a factory, at 10-30 dB SNR): the acoustic condition around a machine, which
is what changes from one session to the next on a plant floor. Grouping clips by it gives
sessions, and three questions:

A. With every session in the training audio: does a memory per session beat the pooled
   memory? Candidates (window scores, clip = mean of the top 3, AUC / pAUC as `earshot eval`):
   - pooled: today's k-NN (k = 3, cosine on unit embeddings, all normal windows);
   - per-session min: the k-NN distance to each session's own windows, the smallest;
   - per-session z-min: each session's distance in units of that session's own
     leave-one-clip-out scores (mean, std), the smallest (a sparse or noisy session is not
     penalised for its spread).
B. Drift: one session left out of the training audio (leave-one-session-out, for sessions with
   normal test clips). How far do its normal test clips move: AUC of those clips against the
   machine's anomalous test clips, and the share of them whose clip score exceeds the largest
   leave-one-clip-out clip score of the training normals (a proxy for a false event).
C. Recovery: the same with one clip of the left-out session put back, which is what
   `earshot feedback --normal` does with the first false event of a new condition.

Inputs as `scorers.py`: the log-mel dump and the feature cache (`features.py`).

  python scripts/research/sessions.py DUMP_DIR CACHE_DIR
"""
import csv
import os
import sys
from collections import defaultdict

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.dirname(__file__))
from scorers import MANIFEST, clip_feats, clip_score, knn_dist, l2n, load, pauc  # noqa: E402

K = 3


def sessions_of(rows):
    """The background recording of each manifest row (by path)."""
    out = {}
    for r in csv.DictReader(open(MANIFEST)):
        out[r["path"]] = r["background_file"].rsplit("/", 1)[-1] or "none"
    return [out[r["path"]] for r in rows]


def bank_of(clips):
    bank = l2n(np.concatenate(clips))
    cid = np.concatenate([np.full(len(c), i) for i, c in enumerate(clips)])
    return bank, cid


def loo_clip_scores(clips):
    """Leave-one-clip-out window scores per clip of a pooled memory."""
    bank, cid = bank_of(clips)
    loo = knn_dist(bank, bank, K, cid, cid, cosine=True)
    return np.split(loo, np.cumsum([len(c) for c in clips])[:-1])


def pooled(train, test):
    bank, _ = bank_of(train)
    return [knn_dist(l2n(t), bank, K, cosine=True) for t in test]


def per_session(train, sess, test, z):
    groups = defaultdict(list)
    for c, s in zip(train, sess):
        groups[s].append(c)
    per = []
    for s, clips in groups.items():
        bank, _ = bank_of(clips)
        if len(clips) > 1 and z:
            loo = np.concatenate(loo_clip_scores(clips))
            mu, sd = loo.mean(), loo.std() + 1e-9
        else:
            mu, sd = 0.0, 1.0
        if z and len(clips) < 2:
            continue  # no spread to normalise by: the session is left to the others
        per.append([(knn_dist(l2n(t), bank, min(K, len(bank)), cosine=True) - mu) / sd for t in test])
    return [np.min([p[i] for p in per], 0) for i in range(len(test))]


def aucs(y, scores):
    s = np.array([clip_score(t) for t in scores])
    return roc_auc_score(y, s), pauc(y, s)


def main(dump, cache):
    by = load(dump, cache)
    table_a = defaultdict(dict)
    rows_b = []
    for machine, rows in sorted(by.items()):
        train_rows = [r for r in rows if r["split"] == "train"]
        test_rows = [r for r in rows if r["split"] == "test"]
        train = [clip_feats(dump, cache, r, "embedding") for r in train_rows]
        test = [clip_feats(dump, cache, r, "embedding") for r in test_rows]
        tr_sess = sessions_of(train_rows)
        te_sess = sessions_of(test_rows)
        y = np.array([r["anomaly"] for r in test_rows], int)
        table_a["pooled"][machine] = aucs(y, pooled(train, test))
        table_a["per-session min"][machine] = aucs(y, per_session(train, tr_sess, test, False))
        table_a["per-session z-min"][machine] = aucs(y, per_session(train, tr_sess, test, True))
        print(machine, {k: v[machine] for k, v in table_a.items()},
              "train sessions", dict(zip(*np.unique(tr_sess, return_counts=True))), flush=True)

        anomalous = [t for t, a in zip(test, y) if a]
        for s in sorted(set(te_sess)):
            normals = [t for t, a, ts in zip(test, y, te_sess) if not a and ts == s]
            held = [i for i, ts in enumerate(tr_sess) if ts == s]
            if not normals or not held:
                continue
            for variant, keep in (("seen", held), ("left out", []), ("1 clip back", held[:1])):
                tr = [c for i, c in enumerate(train) if tr_sess[i] != s or i in keep]
                limit = max(clip_score(l) for l in loo_clip_scores(tr))
                sn = [clip_score(x) for x in pooled(tr, normals)]
                sa = [clip_score(x) for x in pooled(tr, anomalous)]
                yy = np.r_[np.zeros(len(sn)), np.ones(len(sa))]
                rows_b.append((machine, s, variant, len(normals),
                               roc_auc_score(yy, np.r_[sn, sa]),
                               float(np.mean(np.array(sn) > limit))))
            print(*rows_b[-3:], sep="\n", flush=True)

    machines = sorted(next(iter(table_a.values())).keys())
    print("\n## A. every session in the training audio (top-3 AUC / pAUC)\n")
    print("| memory | " + " | ".join(machines) + " | mean AUC | mean pAUC |")
    print("|---" * (len(machines) + 3) + "|")
    for name, r in table_a.items():
        cells = [f"{r[m][0]:.3f} / {r[m][1]:.3f}" for m in machines]
        print(f"| {name} | " + " | ".join(cells)
              + f" | {np.mean([r[m][0] for m in machines]):.3f} | {np.mean([r[m][1] for m in machines]):.3f} |")
    print("\n## B/C. one session left out (pooled memory; mean over machine x session)\n")
    print("| session in training | pairs | AUC (its normals vs anomalies) | normal clips above the LOO max |")
    print("|---|---|---|---|")
    for variant in ("seen", "left out", "1 clip back"):
        v = [r for r in rows_b if r[2] == variant]
        print(f"| {variant} | {len(v)} | {np.mean([r[4] for r in v]):.3f} | {np.mean([r[5] for r in v]):.3f} |")
    print("\n| machine | session | normal test clips | AUC seen / left out / 1 back | above LOO max seen / left out / 1 back |")
    print("|---|---|---|---|---|")
    keyed = defaultdict(dict)
    for m, s, variant, n, a, f in rows_b:
        keyed[(m, s, n)][variant] = (a, f)
    for (m, s, n), v in keyed.items():
        a = " / ".join(f"{v[x][0]:.3f}" for x in ("seen", "left out", "1 clip back"))
        f = " / ".join(f"{v[x][1]:.2f}" for x in ("seen", "left out", "1 clip back"))
        print(f"| {m} | {s} | {n} | {a} | {f} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
