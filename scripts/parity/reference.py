#!/usr/bin/env python3
"""Reference run for earshot's PANNs parity fixtures (needs torch + torchlibrosa; NOT used in CI).

Normally called by scripts/parity/regen-fixtures.sh, which prepares everything. Direct use:

    python scripts/parity/reference.py --ref-code DIR --ckpt-dir DIR --out tests/fixtures/parity

DIR for --ref-code holds the ORIGINAL audioset_tagging_cnn `pytorch/models.py` and
`pytorch/pytorch_utils.py` (never copied into this repository). The seeded checkpoints in
--ckpt-dir come from models/make_checkpoint.py. For every clip this writes the WAV (16-bit PCM
mono, read back as i16/32768 so both sides see the same samples), the reference log-mel
(`logmel_extractor` output, frames x mel_bins, raw little-endian float32) and, per model, the
eval-mode `embedding` and `clipwise_output` (raw LE float32), plus manifest.json.
"""

import argparse
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import wave

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "models"))
import convert_panns as cp  # noqa: E402
import make_checkpoint as mc  # noqa: E402

# The models (and seeds) the fixtures cover; scripts/make-test-models.sh uses the same table.
MODELS = {
    "mobilenetv1": {"architecture": "MobileNetV1", "seed": 1, "onnx_dir": "panns-mobilenetv1-seeded", "frontend": "fe32k"},
    "cnn14": {"architecture": "Cnn14", "seed": 2, "onnx_dir": "panns-cnn14-seeded", "frontend": "fe32k"},
    "cnn14_16k": {"architecture": "Cnn14_16k", "seed": 3, "onnx_dir": "panns-cnn14_16k-seeded", "frontend": "fe16k"},
}
FRONTENDS = {"fe32k": cp.FRONTEND_32K, "fe16k": cp.FRONTEND_16K}
CLIP_SEED = 20260101


def make_clips():
    """(name, frontend, samples as int16) for every fixture clip, from one seeded generator."""
    rng = np.random.default_rng(CLIP_SEED)
    clips = []

    def to_i16(x):
        return np.clip(np.round(x * 32767.0), -32767, 32767).astype(np.int16)

    sr = 32000
    clips.append(("machine_0p5s_32k", "fe32k", to_i16(mc.machine_sound(rng, sr, 0.5, f0=120.0, noise_db=-12, level_db=-12))))
    clips.append(("machine_2s_32k", "fe32k", to_i16(mc.machine_sound(rng, sr, 2.0, f0=50.0, noise_db=-20, level_db=-18))))
    clips.append(("machine_10s_32k", "fe32k", to_i16(mc.machine_sound(rng, sr, 10.0, f0=297.0, noise_db=-8, level_db=-24))))
    clips.append(("silence_1s_32k", "fe32k", np.zeros(sr, dtype=np.int16)))
    x = mc.machine_sound(rng, sr, 1.0, f0=180.0, noise_db=-6, level_db=0.0)
    clips.append(("fullscale_1s_32k", "fe32k", to_i16(np.clip(1.4 * x / np.max(np.abs(x)), -1.0, 1.0))))
    clips.append(("machine_2s_16k", "fe16k", to_i16(mc.machine_sound(rng, 16000, 2.0, f0=75.0, noise_db=-15, level_db=-15))))
    return clips


def write_wav(path, samples, sr):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(samples.astype("<i2").tobytes())


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref-code", required=True, help="dir with the original models.py and pytorch_utils.py")
    ap.add_argument("--ckpt-dir", required=True, help="dir with <arch>-seed<N>.pth from make_checkpoint.py")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ref-commit", default=None, help="audioset_tagging_cnn commit the code came from")
    args = ap.parse_args()

    import torch
    import librosa
    sys.path.insert(0, args.ref_code)
    import models as ref_models  # the original PANNs code

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    os.makedirs(args.out, exist_ok=True)
    loaded = {}
    manifest_models = {}
    for key, spec in MODELS.items():
        arch = spec["architecture"]
        fe = FRONTENDS[spec["frontend"]]
        ckpt = os.path.join(args.ckpt_dir, f"{arch}-seed{spec['seed']}.pth")
        cls = getattr(ref_models, arch)
        model = cls(sample_rate=fe["sample_rate"], window_size=fe["window_size"], hop_size=fe["hop_size"],
                    mel_bins=fe["mel_bins"], fmin=int(fe["fmin"]), fmax=int(fe["fmax"]), classes_num=cp.NUM_CLASSES)
        state = torch.load(ckpt, map_location="cpu")
        model.load_state_dict(state["model"], strict=True)
        model.eval()
        loaded[key] = model
        manifest_models[key] = {
            "architecture": arch, "seed": spec["seed"], "checkpoint": os.path.basename(ckpt),
            "checkpoint_sha256": sha256(ckpt), "checkpoint_format": "zip",
            "sample_rate": fe["sample_rate"], "frontend": spec["frontend"], "onnx_dir": spec["onnx_dir"],
            "embedding_dim": cp.ARCHS[arch]["emb_dim"], "num_classes": cp.NUM_CLASSES,
        }

    manifest_clips = {}
    for name, fe_name, samples in make_clips():
        fe = FRONTENDS[fe_name]
        sr = fe["sample_rate"]
        wav = f"{name}.wav"
        write_wav(os.path.join(args.out, wav), samples, sr)
        wave_f32 = samples.astype(np.float32) / 32768.0
        x = torch.from_numpy(wave_f32[None, :])
        entry = {"wav": wav, "sample_rate": sr, "samples": int(samples.size), "frontend": fe_name,
                 "peak_abs_i16": int(np.max(np.abs(samples.astype(np.int32)))), "models": {}}
        with torch.no_grad():
            users = [k for k, s in MODELS.items() if s["frontend"] == fe_name]
            first = loaded[users[0]]
            lm = first.logmel_extractor(first.spectrogram_extractor(x))[0, 0].numpy().astype("<f4")
            # every model of this front end must produce the same log-mel (same melW/STFT kernels)
            for k in users[1:]:
                other = loaded[k].logmel_extractor(loaded[k].spectrogram_extractor(x))[0, 0].numpy()
                assert np.array_equal(other, lm), f"log-mel differs between models for {name}"
            lm_file = f"{name}.{fe_name}.logmel.f32"
            lm.tofile(os.path.join(args.out, lm_file))
            f64 = cp.logmel_numpy(wave_f32.astype(np.float64), fe)
            entry.update({"frames": int(lm.shape[0]), "mel_bins": int(lm.shape[1]), "logmel": lm_file,
                          "logmel_f64_numpy_maxabs_db": float(np.max(np.abs(f64 - lm)))})
            for k in users:
                out = loaded[k](x)
                emb = out["embedding"][0].numpy().astype("<f4")
                clip = out["clipwise_output"][0].numpy().astype("<f4")
                ef, cf = f"{name}.{k}.embedding.f32", f"{name}.{k}.clipwise.f32"
                emb.tofile(os.path.join(args.out, ef))
                clip.tofile(os.path.join(args.out, cf))
                entry["models"][k] = {"embedding": ef, "embedding_dim": int(emb.size), "clipwise": cf,
                                      "clipwise_dim": int(clip.size)}
        manifest_clips[name] = entry
        print(f"reference: {name}: {entry['frames']} frames, models {', '.join(entry['models'])}")

    manifest = {
        "fixture_version": 1,
        "description": "PANNs parity fixtures: seeded-random checkpoints run through the ORIGINAL "
                       "audioset_tagging_cnn pytorch/models.py in eval mode. WAVs are 16-bit PCM mono; "
                       "read samples as i16/32768. *.f32 files are raw little-endian float32; log-mel is "
                       "frames x mel_bins row-major (logmel_extractor output, dB, before bn0).",
        "generated_by": "scripts/parity/regen-fixtures.sh",
        "versions": {"torch": torch.__version__, "torchlibrosa": importlib.metadata.version("torchlibrosa"),
                     "librosa": librosa.__version__, "numpy": np.__version__,
                     "audioset_tagging_cnn_commit": args.ref_commit},
        "frontends": {k: dict(v, window="hann", center=True, pad_mode="reflect", power=2.0, mel_norm="slaney",
                              amin=1e-10, ref=1.0) for k, v in FRONTENDS.items()},
        "models": manifest_models,
        "clips": manifest_clips,
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
