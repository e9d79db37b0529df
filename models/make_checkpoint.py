#!/usr/bin/env python3
"""Write a seeded, checkpoint-shaped PANNs file without torch (numpy + pickle + zipfile only).

Why: tests and the bundled default model need PANNs weights that anyone can regenerate
bit-for-bit, without downloading 300 MB checkpoints or installing torch. The file is read by
`torch.load` exactly like the official checkpoints ({'model': state_dict, 'iteration': 0}, same
key names, shapes and dtypes, accepted by the reference `load_state_dict(strict=True)`), in
either the torch >= 1.6 zip format or the legacy pickle format of the 2019/2020 checkpoints.
A top-level 'earshot_seeded' entry (ignored by load_state_dict, like the official files'
'sampler' entry) lets convert_panns.py label the weights honestly as seeded random.

Weights are PANNs-like (Xavier-uniform convolutions and linear layers) and then *calibrated*: a
numpy forward pass over generated sounds (noise, tones, machine-like mixtures) sets every
batch-norm layer's running mean/variance to the statistics of its input, so each layer sees
roughly unit-variance input, nothing vanishes or saturates, and different sounds give clearly
different embeddings. Batch-norm affine weights/biases are random (non-trivial) too.

Usage:
    python3 models/make_checkpoint.py --arch MobileNetV1 --seed 1 --format zip OUT.pth
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import pickle
import struct
import sys
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_panns import (ARCHS, BN_EPS, LEGACY_MAGIC, LEGACY_PROTOCOL, NUM_CLASSES,  # noqa: E402
                           arch_layers, expected_keys, logmel_numpy, slaney_melW, stft_kernels)

GENERATOR_VERSION = 1
FC1C = 1.0  # fraction of the calibration mean removed from fc1 (spreads embeddings)
BETA = 1.0  # bn beta offset: keeps ~84% of ReLUs active, so the random net stays near-linear, not chaotic
CENTER = 1.0  # fraction of the batch mean used as bn running_mean


# ---------------------------------------------------------------------------------------------
# Pickling torch objects without torch: emit the globals by name.
# ---------------------------------------------------------------------------------------------

class _Global:
    """Pickles as a GLOBAL reference (module.name) without importing the module."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *a):  # pickle's save_reduce insists the reduce function is callable
        raise RuntimeError("placeholder")


_REBUILD = _Global("torch._utils", "_rebuild_tensor_v2")
_STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage",
                  np.dtype(np.float64): "DoubleStorage", np.dtype(np.int32): "IntStorage"}


class _Tensor:
    def __init__(self, array, key):
        # np.ascontiguousarray would turn 0-d arrays (num_batches_tracked) into shape (1,)
        self.array = np.array(array, order="C", copy=True)
        self.key = key

    def __reduce__(self):
        a = self.array
        stride = tuple(s // a.itemsize for s in a.strides) if a.ndim else ()
        return (_REBUILD, (_StorageMarker(self), 0, tuple(a.shape), stride, False, collections.OrderedDict()))


class _StorageMarker:
    def __init__(self, tensor):
        self.tensor = tensor


class _TorchPickler(pickle._Pickler):
    """Pure-Python pickler (so we can add a dispatch entry) writing protocol 2 like torch.save."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, f, pid_fn):
        super().__init__(f, protocol=2)
        self._pid_fn = pid_fn

    def persistent_id(self, obj):
        return self._pid_fn(obj) if isinstance(obj, _StorageMarker) else None

    def _save_global_ref(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[_Global] = _save_global_ref


def _tensorize(state_dict):
    return collections.OrderedDict((k, _Tensor(v, str(i))) for i, (k, v) in enumerate(state_dict.items()))


def _checkpoint_obj(state_dict, extra):
    obj = {"model": _tensorize(state_dict), "iteration": 0}
    obj.update(extra)
    return obj


def save_zip(path, state_dict, extra, tuple_layout=False):
    """Writes a torch zip checkpoint: {'model': state_dict, ...extra} or, with `tuple_layout`,
    the aisfx package's (state_dict, extra) tuple."""
    tensors = []

    def pid(marker):
        t = marker.tensor
        tensors.append(t)
        return ("storage", _Global("torch", _STORAGE_NAMES[t.array.dtype]), t.key, "cpu", int(t.array.size))

    buf = io.BytesIO()
    obj = (_tensorize(state_dict), extra) if tuple_layout else _checkpoint_obj(state_dict, extra)
    _TorchPickler(buf, pid).dump(obj)
    name = "archive"
    with open(path, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zf:
        def put(member, data):
            # torch aligns every record's data to 64 bytes (for mmap); pad the local header's extra field.
            info = zipfile.ZipInfo(f"{name}/{member}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            header_end = raw.tell() + 30 + len(info.filename.encode())
            pad = (-(header_end + 4)) % 64
            info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
            zf.writestr(info, data)
        put("data.pkl", buf.getvalue())
        put("byteorder", b"little")
        for t in tensors:
            put(f"data/{t.key}", t.array.astype(t.array.dtype.newbyteorder("<")).tobytes())
        put("version", b"3\n")
        put(".data/version", b"3\n")


def save_legacy(path, state_dict, extra):
    storages = []

    def pid(marker):
        t = marker.tensor
        storages.append(t)
        return ("storage", _Global("torch", _STORAGE_NAMES[t.array.dtype]), t.key, "cpu", int(t.array.size), None)

    with open(path, "wb") as f:
        pickle.dump(LEGACY_MAGIC, f, protocol=2)
        pickle.dump(LEGACY_PROTOCOL, f, protocol=2)
        pickle.dump({"protocol_version": LEGACY_PROTOCOL, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 8}}, f, protocol=2)
        _TorchPickler(f, pid).dump(_checkpoint_obj(state_dict, extra))
        keys = sorted({t.key for t in storages})
        pickle.dump(keys, f, protocol=2)
        by_key = {t.key: t for t in storages}
        for k in keys:
            a = by_key[k].array
            f.write(struct.pack("<q", a.size))
            f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())


# ---------------------------------------------------------------------------------------------
# numpy forward (eval semantics of the reference) used for calibration and sanity checks
# ---------------------------------------------------------------------------------------------

def _conv(x, w, groups):
    """x (N,C,H,W), w (O,C/g,k,k), stride 1, same padding."""
    n, c, h, wd = x.shape
    o, cg, k, _ = w.shape
    p = k // 2
    if k == 1:
        return np.einsum("nchw,oc->nohw", x, w[:, :, 0, 0], optimize=True)
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    if groups == c and cg == 1 and o == c:  # depthwise
        out = np.zeros_like(x)
        for i in range(k):
            for j in range(k):
                out += xp[:, :, i:i + h, j:j + wd] * w[None, :, 0, i, j, None, None]
        return out
    assert groups == 1
    cols = np.empty((n, h, wd, c, k, k), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, :, :, i, j] = xp[:, :, i:i + h, j:j + wd].transpose(0, 2, 3, 1)
    out = cols.reshape(n * h * wd, c * k * k) @ w.reshape(o, -1).T
    return out.reshape(n, h, wd, o).transpose(0, 3, 1, 2)


def _pool(x, s):
    n, c, h, w = x.shape
    h2, w2 = h // s, w // s
    return x[:, :, :h2 * s, :w2 * s].reshape(n, c, h2, s, w2, s).mean(axis=(3, 5))


def _bn(x, sd, p):
    scale = sd[f"{p}.weight"].astype(np.float64) / np.sqrt(sd[f"{p}.running_var"].astype(np.float64) + BN_EPS)
    shift = sd[f"{p}.bias"].astype(np.float64) - sd[f"{p}.running_mean"].astype(np.float64) * scale
    return x * scale[None, :, None, None] + shift[None, :, None, None]


def forward(arch, sd, logmel, calibrate_rng=None):
    """logmel (N, frames, mel) float64 -> (pooled, embedding, clipwise). With calibrate_rng, every
    bn layer's running stats are first set from its input batch (in place in sd)."""
    x = logmel.astype(np.float64)[:, None, :, :]
    # bn0 over mel bins
    if calibrate_rng is not None:
        sd["bn0.running_mean"] = x.mean(axis=(0, 1, 2)).astype(np.float32)
        sd["bn0.running_var"] = x.var(axis=(0, 1, 2)).astype(np.float32) + np.float32(1e-3)
    m = sd["bn0.running_mean"].astype(np.float64)
    v = sd["bn0.running_var"].astype(np.float64)
    x = (x - m) / np.sqrt(v + BN_EPS) * sd["bn0.weight"].astype(np.float64) + sd["bn0.bias"].astype(np.float64)
    stack = []
    for layer in arch_layers(arch):
        kind = layer[0]
        if kind == "conv":
            x = _conv(x, sd[f"{layer[1]}.weight"].astype(np.float64), layer[5])
        elif kind == "bn":
            p = layer[1]
            if calibrate_rng is not None:
                mu = CENTER * x.mean(axis=(0, 2, 3))
                ms = ((x - mu[None, :, None, None]) ** 2).mean(axis=(0, 2, 3))
                sd[f"{p}.running_mean"] = mu.astype(np.float32)
                sd[f"{p}.running_var"] = (ms + 1e-4 * (ms.mean() + 1e-12)).astype(np.float32)
            x = _bn(x, sd, p)
        elif kind == "relu":
            x = np.maximum(x, 0.0)
        elif kind == "relu6":
            x = np.clip(x, 0.0, 6.0)
        elif kind == "pool":
            x = _pool(x, layer[1])
        elif kind == "res_begin":
            stack.append(x)
        elif kind == "res_end":
            x = stack.pop() + x
    x = x.mean(axis=3)
    pooled = x.max(axis=2) + x.mean(axis=2)
    w1 = sd["fc1.weight"].astype(np.float64)
    if calibrate_rng is not None:
        # centre every fc1 unit on the calibration set so about half of them are active
        pre = pooled @ w1.T
        sd["fc1.bias"] = (-FC1C * pre.mean(axis=0) + 0.25 * pre.std(axis=0) * calibrate_rng.standard_normal(pre.shape[1])
                          ).astype(np.float32)
    emb = np.maximum(pooled @ w1.T + sd["fc1.bias"].astype(np.float64), 0.0)
    w2 = sd["fc_audioset.weight"].astype(np.float64)
    if calibrate_rng is not None:
        pre = emb @ w2.T
        sd["fc_audioset.bias"] = (-pre.mean(axis=0) - 2.0 + 0.5 * calibrate_rng.standard_normal(pre.shape[1])
                                  ).astype(np.float32)
    logits = emb @ w2.T + sd["fc_audioset.bias"].astype(np.float64)
    return pooled, emb, 1.0 / (1.0 + np.exp(-logits))


# ---------------------------------------------------------------------------------------------
# Generated calibration sounds
# ---------------------------------------------------------------------------------------------

def machine_sound(rng, sr, seconds, f0=None, noise_db=None, level_db=None):
    """Harmonic hum (rotating machine) + coloured broadband noise + slight amplitude modulation."""
    n = int(round(sr * seconds))
    t = np.arange(n) / sr
    f0 = f0 if f0 is not None else rng.uniform(40.0, 400.0)
    x = np.zeros(n)
    for h in range(1, 12):
        if f0 * h >= sr / 2 - 100:
            break
        x += rng.uniform(0.1, 1.0) / h * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi))
    noise = rng.standard_normal(n)
    # one-pole low-pass colours the noise like bearing/airflow noise
    a = rng.uniform(0.0, 0.95)
    col = np.empty(n)
    acc = 0.0
    for i in range(0, n, 4096):
        seg = noise[i:i + 4096]
        out = np.empty_like(seg)
        for j, s in enumerate(seg):
            acc = a * acc + (1 - a) * s
            out[j] = acc
        col[i:i + 4096] = out
    col /= np.std(col) + 1e-12
    nd = noise_db if noise_db is not None else rng.uniform(-30.0, 0.0)
    x = x / (np.std(x) + 1e-12) + 10 ** (nd / 20) * col
    x *= 1.0 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 8.0) * t)
    lvl = level_db if level_db is not None else rng.uniform(-40.0, -6.0)
    return x / (np.max(np.abs(x)) + 1e-12) * 10 ** (lvl / 20)


def calibration_logmels(arch, rng, count, seconds):
    fe = ARCHS[arch]["frontend"]
    sr = fe["sample_rate"]
    n = int(sr * seconds)
    mels = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            x = machine_sound(rng, sr, seconds)
        elif kind == 1:
            x = rng.standard_normal(n) * 10 ** (rng.uniform(-50, -10) / 20)
        elif kind == 2:
            t = np.arange(n) / sr
            x = np.sin(2 * np.pi * rng.uniform(100, 4000) * t) * 10 ** (rng.uniform(-40, -3) / 20)
            x += rng.standard_normal(n) * 1e-4
        else:
            t = np.arange(n) / sr
            f = np.exp(np.linspace(np.log(rng.uniform(60, 300)), np.log(rng.uniform(1000, 12000)), n))
            x = np.sin(2 * np.pi * np.cumsum(f) / sr) * 10 ** (rng.uniform(-30, -6) / 20)
            x += machine_sound(rng, sr, seconds, level_db=-40)
        mels.append(logmel_numpy(x, fe))
    return np.stack(mels)


# ---------------------------------------------------------------------------------------------

def _xavier(rng, shape, fan_in, fan_out):
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def make_state_dict(arch, seed, calibrate=True, calib_count=8, calib_seconds=1.0):
    rng = np.random.default_rng(seed)
    fe = ARCHS[arch]["frontend"]
    sd = collections.OrderedDict()
    real, imag = stft_kernels(fe["window_size"])
    for key, shape, dt in expected_keys(arch):
        if key == "spectrogram_extractor.stft.conv_real.weight":
            sd[key] = real
        elif key == "spectrogram_extractor.stft.conv_imag.weight":
            sd[key] = imag
        elif key == "logmel_extractor.melW":
            sd[key] = slaney_melW(fe["sample_rate"], fe["window_size"], fe["mel_bins"], fe["fmin"], fe["fmax"])
        elif key.endswith("num_batches_tracked"):
            sd[key] = np.array(int(rng.integers(100000, 1000000)), dtype=np.int64)
        elif key.endswith("running_mean"):
            sd[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        elif key.endswith("running_var"):
            sd[key] = rng.uniform(0.5, 2.0, size=shape).astype(np.float32)
        elif key.startswith("bn0."):
            sd[key] = (np.ones(shape) if key.endswith("weight") else np.zeros(shape)).astype(np.float32)
        elif len(shape) == 1 and key.endswith(".weight"):  # bn gamma
            sd[key] = rng.uniform(0.7, 1.3, size=shape).astype(np.float32)
        elif len(shape) == 1 and (key.startswith("fc") and key.endswith(".bias")):
            sd[key] = np.zeros(shape, dtype=np.float32)
        elif len(shape) == 1:  # bn beta
            sd[key] = (BETA + rng.uniform(-0.3, 0.3, size=shape)).astype(np.float32)
        elif len(shape) == 4:
            o, cg, k, _ = shape
            sd[key] = _xavier(rng, shape, cg * k * k, o * k * k)
        elif len(shape) == 2:
            sd[key] = _xavier(rng, shape, shape[1], shape[0])
        else:
            raise AssertionError(f"unhandled key {key}")
    # bn0 gets a mild non-trivial affine on top of calibrated stats
    sd["bn0.weight"] = rng.uniform(0.8, 1.2, size=fe["mel_bins"]).astype(np.float32)
    sd["bn0.bias"] = rng.uniform(-0.2, 0.2, size=fe["mel_bins"]).astype(np.float32)
    if calibrate:
        mels = calibration_logmels(arch, rng, calib_count, calib_seconds)
        forward(arch, sd, mels, calibrate_rng=rng)
    return sd


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write a seeded PANNs checkpoint without torch.")
    ap.add_argument("out", help="output .pth path")
    ap.add_argument("--arch", required=True, choices=sorted(ARCHS))
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--format", choices=["zip", "legacy"], default="zip")
    ap.add_argument("--no-calibrate", action="store_true", help="skip the batch-norm calibration pass")
    args = ap.parse_args(argv)
    sd = make_state_dict(args.arch, args.seed, calibrate=not args.no_calibrate)
    extra = {"earshot_seeded": {"seed": args.seed, "arch": args.arch, "generator": "models/make_checkpoint.py",
                                "generator_version": GENERATOR_VERSION, "calibrated": not args.no_calibrate}}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    (save_zip if args.format == "zip" else save_legacy)(tmp, sd, extra)
    os.replace(tmp, args.out)
    print(f"make_checkpoint: {args.arch} seed {args.seed} -> {args.out} ({args.format})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
