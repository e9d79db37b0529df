#!/usr/bin/env python3
"""Times the reference way of running PANNs (PyTorch eager, torchlibrosa front end inside the
model) for the cases benches/core.rs measures, so the Rust figures have a baseline.

Not part of CI and not part of earshot: it needs torch and torchlibrosa (a venv of its own) and
the reference models.py of qiuqiangkong/audioset_tagging_cnn, which is read from a git mirror
into a temporary directory (never copied into this repository).

Usage:
  /work/refenv/venv/bin/python scripts/bench/python_reference.py \
      [--mirror /work/.mirror/qiuqiangkong+audioset_tagging_cnn/repo | --reference DIR] \
      [--models MobileNetV1,Cnn14,Cnn14_16k] [--threads 1,2] [--quick] [--json]
  ... python_reference.py --stream WAV --model-card CARD --window S --hop S [--threads N] --json
      (the streaming case of scripts/bench/pipeline.py: librosa load + resample of WAV, then
      one forward per window; prints CPU s per audio s, start-up excluded)

Weights are random (default init): speed does not depend on the weights. Figures are medians
over timed runs after warm-up runs that are not counted, with [min / p90 / max].
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

CONFIGS = {
    # name: (sample_rate, window_size, hop_size, mel_bins, fmin, fmax)
    "MobileNetV1": (32000, 1024, 320, 64, 50, 14000),
    "Cnn14": (32000, 1024, 320, 64, 50, 14000),
    "Cnn14_16k": (16000, 512, 160, 64, 50, 8000),
}


def machine_sound(seconds, rate, f0, seed):
    """The recipe of benches/core.rs (hum, harmonics, AM, white noise); content does not
    change the cost."""
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    v = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 9))
    am = 1.0 + 0.2 * np.sin(2 * np.pi * 0.7 * t)
    noise = np.random.default_rng(seed).uniform(-1, 1, n)
    return (0.15 * am * v + 0.05 * noise).astype(np.float32)


def stats(v):
    s = sorted(v)
    n = len(s)
    med = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    return {"n": n, "median": med, "min": s[0], "p90": s[min(n - 1, round(0.9 * (n - 1)))], "max": s[-1]}


def timed(fn, quick):
    warmup, min_iters, max_iters, budget = (1, 3, 30, 0.3) if quick else (2, 7, 300, 2.5)
    for _ in range(warmup):
        fn()
    wall = []
    start = time.perf_counter()
    while len(wall) < max_iters and (len(wall) < min_iters or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
    return stats(wall)


def load_reference(args, tmp):
    if args.reference:
        sys.path.insert(0, args.reference)
    else:
        for name in ("models.py", "pytorch_utils.py"):
            src = subprocess.run(
                ["git", "-C", args.mirror, "show", f"HEAD:pytorch/{name}"],
                check=True, capture_output=True,
            ).stdout
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(src)
        sys.path.insert(0, tmp)
    import models  # noqa: E402  (the reference code, from the temp dir)
    return models


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mirror", default="/work/.mirror/qiuqiangkong+audioset_tagging_cnn/repo")
    p.add_argument("--reference", help="directory holding the reference models.py and pytorch_utils.py")
    p.add_argument("--models", default="MobileNetV1,Cnn14,Cnn14_16k")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--stream", help="WAV to process the way people do today (see --model-card)")
    p.add_argument("--model-card", help="earshot card.json naming the architecture and front end")
    p.add_argument("--window", type=float, default=1.0)
    p.add_argument("--hop", type=float, default=0.5)
    args = p.parse_args()

    import torch

    if args.stream:
        return stream(args, torch)

    recs = []
    with tempfile.TemporaryDirectory() as tmp:
        models = load_reference(args, tmp)
        for name in args.models.split(","):
            sr, ws, hs, mb, fmin, fmax = CONFIGS[name]
            torch.manual_seed(0)
            model = getattr(models, name)(
                sample_rate=sr, window_size=ws, hop_size=hs, mel_bins=mb, fmin=fmin, fmax=fmax, classes_num=527
            ).eval()
            one = [torch.from_numpy(machine_sound(1.0, sr, 90.0 + i, i)) for i in range(8)]
            b1 = one[0][None, :]
            b8 = torch.stack(one)
            ten = torch.from_numpy(machine_sound(10.0, sr, 97.0, 99))[None, :]

            def frontend(x):
                return model.logmel_extractor(model.spectrogram_extractor(x))

            for threads in [int(t) for t in args.threads.split(",")]:
                torch.set_num_threads(threads)
                cases = [
                    ("forward (front end + network), batch 1 x 1 s", 1.0, lambda: model(b1)),
                    ("forward, batch 8 x 1 s", 8.0, lambda: model(b8)),
                    ("forward, 1 x 10 s", 10.0, lambda: model(ten)),
                    ("front end only (torchlibrosa), 1 x 1 s", 1.0, lambda: frontend(b1)),
                    ("front end only (torchlibrosa), 1 x 10 s", 10.0, lambda: frontend(ten)),
                ]
                with torch.no_grad():
                    for case, audio_s, fn in cases:
                        st = timed(fn, args.quick)
                        recs.append({"model": name, "threads": threads, "case": case, "audio_s": audio_s, "wall_ms": st})
                        if not args.json:
                            per = {k: (v / audio_s if k != "n" else v) for k, v in st.items()}
                            print(
                                f"{name:<12} thr {threads} {case:<48} "
                                f"{per['median']:8.2f} ms per audio s [{per['min']:.2f} / {per['p90']:.2f} / {per['max']:.2f}]  "
                                f"runs {st['n']}",
                                flush=True,
                            )
    if args.json:
        print(json.dumps({"torch": torch.__version__, "records": recs}, indent=2))


def stream(args, torch):
    """librosa load + resample, then one PyTorch forward (front end inside the model) per
    window of `window` s every `hop` s: CPU s (process time, all threads) per audio s."""
    import librosa

    card = json.load(open(args.model_card))
    fe = card["frontend"]
    sr = card["sample_rate"]
    torch.set_num_threads(int(str(args.threads).split(",")[0]))
    if card["architecture"] == "Cnn_9layers":
        return stream_aisfx(args, torch, librosa, card)
    with tempfile.TemporaryDirectory() as tmp:
        models = load_reference(args, tmp)
        torch.manual_seed(0)
        model = getattr(models, card["architecture"])(
            sample_rate=sr, window_size=fe["window_size"], hop_size=fe["hop_size"], mel_bins=fe["mel_bins"],
            fmin=fe["fmin"], fmax=fe["fmax"], classes_num=card.get("num_classes", 527)).eval()
        with torch.no_grad():
            model(torch.zeros(1, sr))  # warm-up, outside the timing like earshot's start-up
            c0 = time.process_time()
            x, _ = librosa.load(args.stream, sr=sr, mono=True)
            c1 = time.process_time()
            win, hop = int(round(args.window * sr)), max(1, int(round(args.hop * sr)))
            n = 0
            for s in range(0, len(x) - win + 1, hop):
                model(torch.from_numpy(x[s:s + win])[None, :])
                n += 1
            c2 = time.process_time()
    audio_s = len(x) / sr
    print(json.dumps({"torch": torch.__version__, "librosa": librosa.__version__, "windows": n,
                      "audio_s": audio_s, "load_cpu_s": c1 - c0, "forward_cpu_s": c2 - c1,
                      "cpu_per_audio_s": (c2 - c0) / audio_s}))


def stream_aisfx(args, torch, librosa, card):
    """The aisfx package's own way (its `spectrogram_librosa` front end: librosa HTK mel, norm 1,
    log10(1e4 x + 1); its `EmbeddingNet('max', 3, 1, 64)`, as `aisfx.inference` builds it), per
    window. Needs the `aisfx` package (PyPI, 0.1.2; `pip install --no-deps aisfx==0.1.2`: its
    pins are old, only its torch model code is used). Weights stay at their random init:
    speed does not depend on them."""
    import numpy as np
    from aisfx.models.cnn2d import EmbeddingNet

    fe = card["frontend"]
    sr = card["sample_rate"]
    torch.manual_seed(0)
    model = EmbeddingNet("max", 3, 1, 64).eval()

    def window_embedding(y):
        spec = librosa.feature.melspectrogram(
            y=y, sr=sr, n_mels=fe["mel_bins"], norm=1.0, fmin=fe["fmin"], fmax=fe["fmax"], htk=True,
            power=fe["power"], n_fft=fe["window_size"], hop_length=fe["hop_size"], win_length=fe["window_size"])
        spec = np.log10(spec * fe.get("log_scale", 10000.0) + 1)
        return model(torch.from_numpy(spec.T.astype(np.float32))[None, :, :])

    with torch.no_grad():
        window_embedding(np.zeros(sr, dtype=np.float32))  # warm-up, outside the timing
        c0 = time.process_time()
        x, _ = librosa.load(args.stream, sr=sr, mono=True)
        c1 = time.process_time()
        win, hop = int(round(args.window * sr)), max(1, int(round(args.hop * sr)))
        n = 0
        for s in range(0, len(x) - win + 1, hop):
            window_embedding(x[s:s + win])
            n += 1
        c2 = time.process_time()
    audio_s = len(x) / sr
    print(json.dumps({"torch": torch.__version__, "librosa": librosa.__version__, "windows": n,
                      "audio_s": audio_s, "load_cpu_s": c1 - c0, "forward_cpu_s": c2 - c1,
                      "cpu_per_audio_s": (c2 - c0) / audio_s, "reference": "aisfx 0.1.2 librosa front end"}))


if __name__ == "__main__":
    main()
