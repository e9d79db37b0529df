#!/usr/bin/env python3
"""Reference run for the aisfx (Cnn_9layers) parity fixtures (needs torch + librosa 0.9.2; NOT CI).

Normally called by scripts/parity/regen-aisfx-fixtures.sh. Direct use:

    python aisfx_reference.py --pkg DIR --out tests/fixtures/parity-aisfx            # torch venv
    python aisfx_reference.py --essentia --pkg DIR --out tests/fixtures/parity-aisfx # essentia venv

DIR holds the unpacked aisfx 0.1.2 wheel (its `aisfx/` package, never copied into this
repository). The first form writes the clips (44.1 kHz 16-bit mono WAV), the package's librosa
log-mel of each (`spectrogram_librosa.compute_spectrogram`, transposed to frames x mel_bins,
before the package's min-max normalisation) and the package's own torch network's embedding of
the whole clip (`load_weights` + `load_bestModel`, `get_embedding` on
`spectrogram_normalize(spec, "original")`), plus manifest.json. `--essentia` adds the
package's Essentia log-mel of each clip (the front end the paper used) to the manifest.

Every clip's largest magnitude sample is exactly -32768 (-1.0), so the librosa path's
"divide by the file's peak" is the identity and the same samples reach both sides.
"""

import argparse
import hashlib
import importlib.metadata
import json
import os
import sys
import wave

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SR = 44100
FE = dict(sr=SR, block_size=2048, hop_size=1024, n_mels=96, f_min=0.0, f_max=22050.0)


def to_i16_peak_minus_one(x, rng):
    """Scale so the peak is exactly -32768 and every other sample is inside (-32768, 32767]."""
    x = np.asarray(x, dtype=np.float64)
    x = x / np.max(np.abs(x)) * 32000.0
    q = np.clip(np.round(x), -32767, 32767).astype(np.int16)
    q[int(np.argmax(np.abs(x)))] = -32768
    return q


def make_clips():
    sys.path.insert(0, os.path.join(REPO, "models"))
    import make_checkpoint as mc

    rng = np.random.default_rng(2022)
    t2 = np.arange(2 * SR) / SR
    clips = [
        ("machine_2s", to_i16_peak_minus_one(mc.machine_sound(rng, SR, 2.0, f0=90.0, noise_db=-18, level_db=-10), rng)),
        ("noise_tone_1s", to_i16_peak_minus_one(
            rng.standard_normal(SR) * 0.2 + np.sin(2 * np.pi * 3000.0 * t2[:SR]), rng)),
        ("chirp_1500ms", to_i16_peak_minus_one(
            np.sin(2 * np.pi * np.cumsum(np.exp(np.linspace(np.log(50), np.log(18000), 66150))) / SR)
            * np.hanning(66150) + 0.01 * rng.standard_normal(66150), rng)),
        ("quiet_clicks_500ms", to_i16_peak_minus_one(
            np.where(np.arange(22050) % 4410 == 0, 1.0, 0.0) + 0.002 * rng.standard_normal(22050), rng)),
    ]
    return clips


def write_wav(path, samples):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(samples.astype("<i2").tobytes())


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_torch(args):
    import librosa
    import torch
    from aisfx import inference, preprocessing  # the package's own code, from --pkg
    from aisfx.spectrogram import spectrogram_librosa

    torch.set_num_threads(2)
    # torch >= 2.6 loads weights only; the checkpoint's dataset table holds numpy integers, so
    # allow exactly those (still no arbitrary code) instead of weights_only=False.
    torch.serialization.add_safe_globals([np.core.multiarray.scalar, np.dtype, type(np.dtype("int64"))])
    weights, ds_dict = inference.load_weights("cpu")
    model = inference.load_bestModel(weights, ds_dict, "cpu")
    os.makedirs(args.out, exist_ok=True)
    clips = {}
    for name, samples in make_clips():
        wav = f"{name}.wav"
        path = os.path.join(args.out, wav)
        write_wav(path, samples)
        spec = spectrogram_librosa.compute_spectrogram(filename=path, **FE)  # (mel, frames)
        lm = np.ascontiguousarray(spec.T).astype("<f4")
        lm_file = f"{name}.librosa.logmel.f32"
        lm.tofile(os.path.join(args.out, lm_file))
        normed = preprocessing.spectrogram_normalize(lm, spec_norm="original")
        with torch.no_grad():
            emb = model.get_embedding(torch.Tensor(normed[None])).numpy()[0].astype("<f4")
        emb_file = f"{name}.embedding.f32"
        emb.tofile(os.path.join(args.out, emb_file))
        clips[name] = {"wav": wav, "sample_rate": SR, "samples": int(samples.size), "frames": int(lm.shape[0]),
                       "mel_bins": int(lm.shape[1]), "logmel_librosa": lm_file, "embedding": emb_file,
                       "embedding_dim": int(emb.size)}
        print(f"aisfx reference: {name}: {lm.shape[0]} frames, |emb| {np.linalg.norm(emb):.3f}")
    manifest = {
        "fixture_version": 1,
        "description": "aisfx 0.1.2 parity fixtures: WAVs are 16-bit PCM mono at 44.1 kHz with peak "
                       "exactly -32768 (read as i16/32768); *.f32 are raw little-endian float32. "
                       "logmel_librosa: the package's spectrogram_librosa.compute_spectrogram "
                       "(log10(1 + 1e4 mel power)), transposed to frames x mel_bins. embedding: the "
                       "package's torch CrossNet.get_embedding (checkpoint.pth) on the whole clip's "
                       "spectrogram_normalize(logmel, 'original').",
        "generated_by": "scripts/parity/regen-aisfx-fixtures.sh",
        "versions": {"aisfx": "0.1.2", "torch": torch.__version__, "librosa": librosa.__version__,
                     "numpy": np.__version__},
        "checkpoint_sha256": sha256(inference.get_path_modelWeights()),
        "clips": clips,
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


def run_essentia(args):
    import importlib.util

    import essentia

    # Load just the module file: the package's __init__ imports torch, which this venv lacks.
    spec_path = os.path.join(args.pkg, "aisfx", "spectrogram", "spectrogram_essentia.py")
    mod_spec = importlib.util.spec_from_file_location("aisfx_spectrogram_essentia", spec_path)
    spectrogram_essentia = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(spectrogram_essentia)

    mpath = os.path.join(args.out, "manifest.json")
    manifest = json.load(open(mpath))
    for name, c in manifest["clips"].items():
        spec = spectrogram_essentia.compute_spectrogram(os.path.join(args.out, c["wav"]), **{
            "sr": float(SR), "block_size": 2048, "hop_size": 1024, "n_mels": 96, "f_min": 0.0, "f_max": 22050.0})
        lm = np.ascontiguousarray(spec).astype("<f4")  # essentia's pool is already frames x bands
        f = f"{name}.essentia.logmel.f32"
        lm.tofile(os.path.join(args.out, f))
        c["logmel_essentia"] = f
        c["frames_essentia"] = int(lm.shape[0])
        print(f"aisfx essentia: {name}: {lm.shape[0]} frames")
    manifest["versions"]["essentia"] = essentia.__version__
    with open(mpath, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pkg", required=True, help="dir with the unpacked aisfx wheel")
    ap.add_argument("--out", required=True)
    ap.add_argument("--essentia", action="store_true", help="add the Essentia log-mels to existing fixtures")
    args = ap.parse_args()
    sys.path.insert(0, args.pkg)
    (run_essentia if args.essentia else run_torch)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
