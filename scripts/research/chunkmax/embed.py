"""Embeds every dev-set clip in all the ways compared, cached per clip and part in cache/.

Parts:
  base    ex    : exact 44-frame windows every 11 frames from the clip log-mel (36 per clip)
          c11   : 11-frame chunks (39), c22: 22-frame chunks (19), model run on the chunk alone
          stream: per-cell output of one run over the whole clip (431 frames -> 53 cells)
          dm    : daemon-like exact windows: 44100-sample windows at hop 22050 samples, each
                  scaled to -10 dBFS RMS and given its own centred log-mel (19 per clip)
  ctx     c{11,22}_C{8,16}_{full,crop}: chunk plus C frames of real context each side (clipped
          at the clip's ends); full = model's embedding (max over all cells, context cells
          included), crop = max over the cells whose centre frame lies inside the chunk.
  aligned ex48 (48-frame windows every 16 frames), c8, c16 chunks: see part_aligned.
  level   c11_own, c11_run: 11-frame chunks levelled per chunk, as a stream must: see part_level.

usage: python embed.py --part base|ctx|aligned [--subset N]   (N clips per machine, first N test clips
       of each machine in manifest order; default all clips)
"""
import argparse
import os
import sys
import time

import numpy as np

import common as C


def emb_of(cells):
    return cells.max(axis=2)


def run_groups(sess, L, spans):
    """spans: list of (lo, hi); returns list of cells arrays (512, n) in order."""
    out = [None] * len(spans)
    by_len = {}
    for i, (lo, hi) in enumerate(spans):
        by_len.setdefault(hi - lo, []).append(i)
    for n, idx in by_len.items():
        batch = np.stack([L[spans[i][0]:spans[i][1]] for i in idx])
        cells = C.run_cells(sess, batch)
        for k, i in enumerate(idx):
            out[i] = cells[k]
    return out


def part_base(sess, x, L):
    T = L.shape[0]
    d = {}
    nw = (T - C.WIN_FRAMES) // 11 + 1
    d["ex"] = emb_of(C.run_cells(sess, np.stack([L[11 * w:11 * w + C.WIN_FRAMES] for w in range(nw)])))
    for n in (11, 22):
        nc = T // n
        d[f"c{n}"] = emb_of(C.run_cells(sess, np.stack([L[n * j:n * j + n] for j in range(nc)])))
    d["stream"] = C.run_cells(sess, L[None])[0]
    starts = list(range(0, x.size - C.WIN_SAMPLES + 1, C.WIN_SAMPLES // 2))
    mels = []
    for s in starts:
        w = x[s:s + C.WIN_SAMPLES]
        mels.append(C.logmel(w, C.level_gain(w)))
    d["dm"] = emb_of(C.run_cells(sess, np.stack(mels)))
    return d


def part_ctx(sess, x, L):
    T = L.shape[0]
    d = {}
    for n in (11, 22):
        nc = T // n
        for ctx in (8, 16):
            spans = [(max(0, n * j - ctx), min(T, n * j + n + ctx)) for j in range(nc)]
            cells = run_groups(sess, L, spans)
            full, crop = [], []
            for j, ((lo, hi), c) in enumerate(zip(spans, cells)):
                full.append(c.max(axis=1))
                a, b = n * j - lo, n * j + n - lo
                mid = 8 * np.arange(c.shape[1]) + 3.5
                keep = (mid >= a) & (mid < b)
                if not keep.any():
                    keep = np.abs(mid - (a + b) / 2) == np.abs(mid - (a + b) / 2).min()
                crop.append(c[:, keep].max(axis=1))
            d[f"c{n}_C{ctx}_full"] = np.stack(full)
            d[f"c{n}_C{ctx}_crop"] = np.stack(crop)
    return d


def part_aligned(sess, x, L):
    """Extra: chunk lengths that are multiples of the network's time stride (8 frames), so no
    frame falls off the floor poolings: 48-frame windows (1.115 s) at hop 16 frames (0.372 s),
    exact vs 3 chunks of 16 or 6 chunks of 8."""
    T = L.shape[0]
    d = {}
    nw = (T - 48) // 16 + 1
    d["ex48"] = emb_of(C.run_cells(sess, np.stack([L[16 * w:16 * w + 48] for w in range(nw)])))
    for n in (8, 16):
        nc = T // n
        d[f"c{n}"] = emb_of(C.run_cells(sess, np.stack([L[n * j:n * j + n] for j in range(nc)])))
    return d


def part_level(sess, x, L):
    """Chunk-max with the level set per chunk, as the daemon would have to (each chunk serves
    four windows, so no window's own gain can be used): the chunk's mel power scaled by
    c11_own: the gain that brings the samples its frames read to -10 dBFS RMS;
    c11_run: the gain of the last 1 s of audio up to the chunk's last sample (causal, smoother).
    The base part's chunks share one gain per clip."""
    P = C.mel_power(x)
    n = 11
    nc = P.shape[0] // n
    own, run = [], []
    for j in range(nc):
        lo = max(0, n * j * C.HOP - C.N_FFT // 2)
        hi = min(x.size, (n * j + n - 1) * C.HOP + C.N_FFT // 2)
        frames = P[n * j:n * j + n]
        for out, g in ((own, C.level_gain(x[lo:hi])), (run, C.level_gain(x[max(0, hi - C.WIN_SAMPLES):hi]))):
            out.append(np.log10(1.0 + 1e4 * g * g * frames).astype(np.float32))
    return {"c11_own": emb_of(C.run_cells(sess, np.stack(own))),
            "c11_run": emb_of(C.run_cells(sess, np.stack(run)))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["base", "ctx", "aligned", "level"], required=True)
    ap.add_argument("--subset", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(C.CACHE, exist_ok=True)
    sess = C.session(C.make_cells_model())
    rows = C.manifest()
    if a.subset:
        pick, seen = [], {}
        for r in rows:
            if r["split"] == "test" and seen.get(r["machine"], 0) < a.subset:
                seen[r["machine"]] = seen.get(r["machine"], 0) + 1
                pick.append(r)
        rows = pick
    fn = {"base": part_base, "ctx": part_ctx, "aligned": part_aligned, "level": part_level}[a.part]
    t0 = time.time()
    done = 0
    for i, r in enumerate(rows):
        key = r["path"].replace("/", "__").replace(".wav", "")
        out = os.path.join(C.CACHE, f"{key}.{a.part}.npz")
        if os.path.exists(out):
            continue
        x = C.load_audio(r["path"])
        L = C.logmel(x, C.level_gain(x))
        d = fn(sess, x, L)
        np.savez(out + ".tmp.npz", **{k: v.astype(np.float32) for k, v in d.items()})
        os.replace(out + ".tmp.npz", out)
        done += 1
        if done % 20 == 0:
            print(f"{a.part}: {i + 1}/{len(rows)} clips, {time.time() - t0:.0f} s", flush=True)
    print(f"{a.part}: finished {len(rows)} clips ({done} new) in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
