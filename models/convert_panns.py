#!/usr/bin/env python3
"""Convert a PANNs checkpoint (Kong et al. 2020) into earshot's ONNX model + card.json.

Why this exists: the official PANNs checkpoints are torch pickles and the reference model
computes its spectrogram with a Conv1d "STFT", which is what usually breaks ONNX export. earshot
computes the log-mel front end in Rust, so the graph here starts at the log-mel (dB, before
bn0) and is built directly with onnx.helper from the checkpoint's arrays: no torch needed,
nothing from the checkpoint is ever executed (a restricted unpickler turns every global it does
not know into an inert placeholder and only the tensor-rebuild globals produce data).

Usage:
    python3 models/convert_panns.py CHECKPOINT.pth OUTDIR [--arch Cnn14] [--name NAME]

It refuses checkpoints whose keys or shapes do not match the architecture, and checkpoints whose
mel filterbank does not match the front end the card will announce (e.g. a 16 kHz checkpoint
converted as a 32 kHz model), naming what is wrong. A file named like an official checkpoint
(OFFICIAL_SHA256) must have the official SHA-256 unless --no-verify is given.

It also converts Cnn_9layers as trained by Ma and Lerch (ISMIR 2022, the `aisfx` package's
checkpoint.pth; see models/aisfx_cnn9.py and models/fetch_aisfx.sh): that graph takes
log10(1 + 1e4 mel power) and returns only `embedding` (512-d), optionally block feature maps.

ONNX contract (the Rust loader relies on it):
    input  logmel          float32 [batch, 1, frames, mel_bins]  log-mel in dB (torchlibrosa)
    output embedding       float32 [batch, D]
    output clipwise_output float32 [batch, 527]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import json
import os
import pickle
import struct
import sys
import zipfile

import numpy as np

import aisfx_cnn9

NUM_CLASSES = 527
BN_EPS = 1e-5
OPSET = 17

FRONTEND_32K = {
    "sample_rate": 32000, "window_size": 1024, "hop_size": 320, "mel_bins": 64,
    "fmin": 50.0, "fmax": 14000.0,
}
FRONTEND_16K = {
    "sample_rate": 16000, "window_size": 512, "hop_size": 160, "mel_bins": 64,
    "fmin": 50.0, "fmax": 8000.0,
}


class ConvertError(Exception):
    """A problem the user can act on (wrong file, wrong --arch); printed without a traceback."""


# ---------------------------------------------------------------------------------------------
# Architectures as a tiny layer list. The same list drives the expected state_dict (key names and
# shapes, used for validation and by make_checkpoint.py), the numpy reference forward used for
# calibration, and the ONNX graph, so the three cannot drift apart.
#   ("conv", prefix, cin, cout, k, groups)   Conv2d, stride 1, padding k//2, no bias
#   ("bn", prefix, channels)                 BatchNorm2d (eval: running stats)
#   ("relu",) ("relu6",) ("pool", s)         AvgPool2d(s), floor mode; s == 1 is identity
#   ("res_begin",) ("res_end",)              MobileNetV2 residual: x + block(x)
# ---------------------------------------------------------------------------------------------

def _cnn_blocks(channels, k, two_convs, last_pool):
    layers = []
    cin = 1
    for i, cout in enumerate(channels, start=1):
        p = f"conv_block{i}"
        layers += [("conv", f"{p}.conv1", cin, cout, k, 1), ("bn", f"{p}.bn1", cout), ("relu",)]
        if two_convs:
            layers += [("conv", f"{p}.conv2", cout, cout, k, 1), ("bn", f"{p}.bn2", cout), ("relu",)]
        pool = last_pool if i == len(channels) else 2
        if pool != 1:
            layers.append(("pool", pool))
        cin = cout
    return layers


def _mobilenet_v1():
    layers = [("conv", "features.0.0", 1, 32, 3, 1), ("pool", 2), ("bn", "features.0.2", 32), ("relu",)]
    cfg = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
           (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1),
           (512, 1024, 2), (1024, 1024, 1)]
    for i, (inp, oup, s) in enumerate(cfg, start=1):
        p = f"features.{i}"
        layers += [("conv", f"{p}.0", inp, inp, 3, inp)]
        if s != 1:
            layers.append(("pool", s))
        layers += [("bn", f"{p}.2", inp), ("relu",),
                   ("conv", f"{p}.4", inp, oup, 1, 1), ("bn", f"{p}.5", oup), ("relu",)]
    return layers


def _mobilenet_v2():
    layers = [("conv", "features.0.0", 1, 32, 3, 1), ("pool", 2), ("bn", "features.0.2", 32), ("relu6",)]
    setting = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 2),
               (6, 160, 3, 1), (6, 320, 1, 1)]
    inp = 32
    idx = 1
    for t, c, n, s in setting:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = int(round(inp * t))
            res = stride == 1 and inp == c
            p = f"features.{idx}.conv"
            block = []
            if t == 1:
                block += [("conv", f"{p}.0", hidden, hidden, 3, hidden)]
                if stride != 1:
                    block.append(("pool", stride))
                block += [("bn", f"{p}.2", hidden), ("relu6",),
                          ("conv", f"{p}.4", hidden, c, 1, 1), ("bn", f"{p}.5", c)]
            else:
                block += [("conv", f"{p}.0", inp, hidden, 1, 1), ("bn", f"{p}.1", hidden), ("relu6",),
                          ("conv", f"{p}.3", hidden, hidden, 3, hidden)]
                if stride != 1:
                    block.append(("pool", stride))
                block += [("bn", f"{p}.5", hidden), ("relu6",),
                          ("conv", f"{p}.7", hidden, c, 1, 1), ("bn", f"{p}.8", c)]
            layers += ([("res_begin",)] + block + [("res_end",)]) if res else block
            inp = c
            idx += 1
    layers += [("conv", f"features.{idx}.0", inp, 1280, 1, 1), ("bn", f"features.{idx}.1", 1280), ("relu6",)]
    return layers


ARCHS = {
    "Cnn14": dict(frontend=FRONTEND_32K, layers=lambda: _cnn_blocks([64, 128, 256, 512, 1024, 2048], 3, True, 1),
                  feat_dim=2048, emb_dim=2048, checkpoint="Cnn14_mAP=0.431.pth"),
    "Cnn14_16k": dict(frontend=FRONTEND_16K, layers=lambda: _cnn_blocks([64, 128, 256, 512, 1024, 2048], 3, True, 1),
                      feat_dim=2048, emb_dim=2048, checkpoint="Cnn14_16k_mAP=0.438.pth"),
    "Cnn10": dict(frontend=FRONTEND_32K, layers=lambda: _cnn_blocks([64, 128, 256, 512], 3, True, 2),
                  feat_dim=512, emb_dim=512, checkpoint="Cnn10_mAP=0.380.pth"),
    "Cnn6": dict(frontend=FRONTEND_32K, layers=lambda: _cnn_blocks([64, 128, 256, 512], 5, False, 2),
                 feat_dim=512, emb_dim=512, checkpoint="Cnn6_mAP=0.343.pth"),
    "MobileNetV1": dict(frontend=FRONTEND_32K, layers=_mobilenet_v1, feat_dim=1024, emb_dim=1024,
                        checkpoint="MobileNetV1_mAP=0.389.pth"),
    "MobileNetV2": dict(frontend=FRONTEND_32K, layers=_mobilenet_v2, feat_dim=1280, emb_dim=1024,
                        checkpoint="MobileNetV2_mAP=0.383.pth"),
}


# SHA-256 of the official PANNs files on Zenodo record 3987831 that earshot has verified. A file
# with one of these names but another hash is refused (a truncated download, a re-trained file
# under the official name): the card would otherwise claim an official model it is not.
OFFICIAL_SHA256 = {
    "Cnn14_mAP=0.431.pth": "0dc499e40e9761ef5ea061ffc77697697f277f6a960894903df3ada000e34b31",
    "Cnn14_16k_mAP=0.438.pth": "e2ee543a27919542c2ea03eabaa70b24dcd4e6c8e05621de6b67a94e4c5058e6",
}

ALL_ARCHS = sorted(ARCHS) + [aisfx_cnn9.ARCH]


def verify_official(path, sha):
    """Refuses a file that carries an official checkpoint's name but not its content."""
    want = OFFICIAL_SHA256.get(os.path.basename(path))
    if want is not None and sha != want:
        raise ConvertError(
            f"{path} has the name of an official PANNs checkpoint but its SHA-256 is {sha}, not the "
            f"official {want}: the download is incomplete or the file is not the published one. "
            f"Download it again from https://zenodo.org/record/3987831 (see models/README.md); if it "
            f"is your own checkpoint, rename it or pass --no-verify")


def arch_layers(arch):
    return ARCHS[arch]["layers"]()


def min_frames(arch):
    """Smallest frame count the graph accepts: every stride-2 pool halves time (floor)."""
    n = 1
    for layer in arch_layers(arch):
        if layer[0] == "pool":
            n *= layer[1]
    return n


def bn_keys(prefix, c):
    return [(f"{prefix}.weight", (c,), "f4"), (f"{prefix}.bias", (c,), "f4"),
            (f"{prefix}.running_mean", (c,), "f4"), (f"{prefix}.running_var", (c,), "f4"),
            (f"{prefix}.num_batches_tracked", (), "i8")]


def expected_keys(arch):
    """Ordered (key, shape, dtype) list exactly as the reference module's state_dict()."""
    spec = ARCHS[arch]
    fe = spec["frontend"]
    nfreq = fe["window_size"] // 2 + 1
    keys = [("spectrogram_extractor.stft.conv_real.weight", (nfreq, 1, fe["window_size"]), "f4"),
            ("spectrogram_extractor.stft.conv_imag.weight", (nfreq, 1, fe["window_size"]), "f4"),
            ("logmel_extractor.melW", (nfreq, fe["mel_bins"]), "f4")]
    keys += bn_keys("bn0", fe["mel_bins"])
    # Reference state_dict order is module registration order: layer order, except that a
    # ConvBlock registers its convolutions before its batch norms.
    mods = []
    for layer in arch_layers(arch):
        if layer[0] == "conv":
            _, p, cin, cout, k, g = layer
            mods.append((p, 0, [(f"{p}.weight", (cout, cin // g, k, k), "f4")]))
        elif layer[0] == "bn":
            mods.append((layer[1], 1, bn_keys(layer[1], layer[2])))
    order = {}
    for p, _, _ in mods:
        block = p.split(".")[0] if p.startswith("conv_block") else p
        order.setdefault(block, len(order))
    mods.sort(key=lambda m: (order[m[0].split(".")[0] if m[0].startswith("conv_block") else m[0]],
                             m[1] if m[0].startswith("conv_block") else 0))
    for _, _, ks in mods:
        keys += ks
    keys += [("fc1.weight", (spec["emb_dim"], spec["feat_dim"]), "f4"), ("fc1.bias", (spec["emb_dim"],), "f4"),
             ("fc_audioset.weight", (NUM_CLASSES, spec["emb_dim"]), "f4"),
             ("fc_audioset.bias", (NUM_CLASSES,), "f4")]
    return keys


# ---------------------------------------------------------------------------------------------
# Front end in numpy (the same definitions as torchlibrosa/librosa, written from their formulas)
# ---------------------------------------------------------------------------------------------

def _hz_to_mel_slaney(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz_slaney(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def slaney_melW(sr, n_fft, n_mels, fmin, fmax):
    """Slaney-style, area-normalised triangular mel filterbank, shape (n_fft//2+1, n_mels)."""
    fft_freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    mel_pts = np.linspace(_hz_to_mel_slaney(fmin), _hz_to_mel_slaney(fmax), n_mels + 2)
    hz_pts = _mel_to_hz_slaney(mel_pts)
    fdiff = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    w = np.zeros((n_mels, fft_freqs.size), dtype=np.float64)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        w[i] = np.maximum(0.0, np.minimum(lower, upper))
    w *= (2.0 / (hz_pts[2:n_mels + 2] - hz_pts[:n_mels]))[:, None]
    return w.T.astype(np.float32)


def stft_kernels(n_fft):
    """torchlibrosa's Conv1d STFT kernels: periodic Hann window times DFT basis, (n_fft//2+1, 1, n_fft)."""
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)
    k = np.arange(n_fft // 2 + 1)
    ang = -2.0 * np.pi * np.outer(k, n) / n_fft
    real = (np.cos(ang) * window[None, :]).astype(np.float32)[:, None, :]
    imag = (np.sin(ang) * window[None, :]).astype(np.float32)[:, None, :]
    return real, imag


def logmel_numpy(wave, frontend):
    """Reference-equivalent log-mel (dB) of a mono float waveform, shape (frames, mel_bins).

    Used for calibration and as a cross-check only; float64 throughout.
    """
    n_fft, hop = frontend["window_size"], frontend["hop_size"]
    x = np.pad(np.asarray(wave, dtype=np.float64), (n_fft // 2, n_fft // 2), mode="reflect")
    frames = 1 + (x.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    spec = np.abs(np.fft.rfft(x[idx] * window[None, :], axis=1)) ** 2
    melW = slaney_melW(frontend["sample_rate"], n_fft, frontend["mel_bins"], frontend["fmin"],
                       frontend["fmax"]).astype(np.float64)
    return 10.0 * np.log10(np.maximum(spec @ melW, 1e-10))


# ---------------------------------------------------------------------------------------------
# Checkpoint reading without torch
# ---------------------------------------------------------------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class _StorageRef:
    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.array = None


class _LazyTensor:
    """A tensor whose storage bytes may come later in the file (legacy format)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialize(self):
        base = self.storage.array
        if base is None:
            raise ConvertError(f"checkpoint is truncated: storage {self.storage.key!r} has no data")
        n = int(np.prod(self.size)) if self.size else 1
        if n == 0:
            return np.zeros(self.size, dtype=base.dtype)
        last = self.offset + sum((s - 1) * st for s, st in zip(self.size, self.stride))
        if self.offset < 0 or last >= base.size:
            raise ConvertError(f"checkpoint is corrupt: tensor view exceeds storage {self.storage.key!r}")
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(base[self.offset:], shape=self.size,
                                               strides=tuple(st * item for st in self.stride))
        return np.array(view, copy=True)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *rest):
    if not isinstance(storage, _StorageRef):
        raise ConvertError("checkpoint is not a plain tensor checkpoint (unexpected tensor storage)")
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *rest):
    return data


class _Opaque:
    """Inert stand-in for any global the checkpoint mentions that we do not need (e.g. the
    training 'sampler' state). It never calls anything; it just swallows arguments/state."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self._state = state

    def __setitem__(self, k, v):
        pass

    def append(self, v):
        pass

    def extend(self, v):
        pass


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages
        self.opaque_globals = []

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        self.opaque_globals.append(f"{module}.{name}")
        return type(f"Opaque_{name}", (_Opaque,), {"_global": f"{module}.{name}"})

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] not in ("storage", b"storage"):
            raise ConvertError(f"checkpoint has an unsupported persistent id {pid!r:.80}")
        stype, key, numel = pid[1], pid[2], pid[4]
        if isinstance(key, bytes):
            key = key.decode("ascii")
        if not isinstance(stype, _StorageType):
            raise ConvertError(f"checkpoint uses an unsupported storage type {stype!r:.80}")
        if len(pid) >= 6 and pid[5] is not None:
            raise ConvertError("checkpoint uses storage views (legacy feature) which this reader does not support")
        ref = self.storages.get(key)
        if ref is None:
            ref = _StorageRef(key, stype.dtype, numel)
            self.storages[key] = ref
        return ref


def _resolve(obj):
    if isinstance(obj, _LazyTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(v)) for k, v in obj.items()) if isinstance(obj, collections.OrderedDict) \
            else {k: _resolve(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v) for v in obj)
    return obj


def _read_zip(path):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if not pkl:
            raise ConvertError(f"{path}: zip file without <archive>/data.pkl; not a torch checkpoint")
        prefix = pkl[0][: -len("data.pkl")]
        storages = {}
        up = _RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), storages)
        obj = up.load()
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = zf.read(prefix + "byteorder").decode("ascii").strip()
        for key, ref in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise ConvertError(f"{path}: storage {member} missing from the archive")
            dt = np.dtype(ref.dtype).newbyteorder("<" if byteorder == "little" else ">")
            ref.array = np.frombuffer(zf.read(member), dtype=dt).astype(ref.dtype)
    return obj, "zip"


def _read_legacy(path):
    with open(path, "rb") as f:
        try:
            magic = pickle.load(f)
        except Exception as e:  # not a pickle at all
            raise ConvertError(f"{path}: neither a zip nor a legacy torch checkpoint ({e})") from None
        if magic != LEGACY_MAGIC:
            raise ConvertError(f"{path}: not a torch checkpoint (bad magic number)")
        proto = pickle.load(f)
        if proto != LEGACY_PROTOCOL:
            raise ConvertError(f"{path}: unsupported legacy protocol version {proto}")
        sys_info = pickle.load(f)
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise ConvertError(f"{path}: big-endian legacy checkpoints are not supported")
        storages = {}
        up = _RestrictedUnpickler(f, storages)
        obj = up.load()
        keys = pickle.load(f)
        for key in keys:
            key = key.decode("ascii") if isinstance(key, bytes) else key
            ref = storages.get(key)
            if ref is None:
                raise ConvertError(f"{path}: storage key {key!r} listed but never referenced")
            (numel,) = struct.unpack("<q", f.read(8))
            itemsize = np.dtype(ref.dtype).itemsize
            data = f.read(numel * itemsize)
            if len(data) != numel * itemsize:
                raise ConvertError(f"{path}: file is truncated (storage {key!r})")
            ref.array = np.frombuffer(data, dtype=np.dtype(ref.dtype).newbyteorder("<")).astype(ref.dtype)
    return obj, "legacy"


def read_checkpoint(path):
    """Returns (checkpoint_object, format) with every tensor as a numpy array. Never imports torch."""
    if not os.path.isfile(path):
        raise ConvertError(f"{path}: no such file")
    obj, fmt = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    return _resolve(obj), fmt


def state_dict_of(ckpt):
    if isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt["model"], dict):
        sd = ckpt["model"]
    elif isinstance(ckpt, tuple) and ckpt and isinstance(ckpt[0], dict) and \
            all(isinstance(v, np.ndarray) for v in ckpt[0].values()):
        sd = ckpt[0]  # aisfx: (state_dict, {dataset: (index, classes)})
    elif isinstance(ckpt, dict) and all(isinstance(v, np.ndarray) for v in ckpt.values()):
        sd = ckpt  # a bare state_dict
    else:
        raise ConvertError("checkpoint has no 'model' state_dict (expected {'model': state_dict, ...})")
    out = collections.OrderedDict()
    for k, v in sd.items():
        if not isinstance(v, np.ndarray):
            raise ConvertError(f"state_dict entry {k!r} is not a tensor")
        out[k[len("module."):] if k.startswith("module.") else k] = v
    return out


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

def infer_arch(path, sd):
    base = os.path.basename(path).lower()
    for name in sorted(ARCHS, key=len, reverse=True):
        if base.startswith(name.lower() + "_") or base.startswith(name.lower() + ".") or \
                base.startswith(name.lower() + "-"):
            return name
    if aisfx_cnn9.looks_like(sd):
        return aisfx_cnn9.ARCH
    keys = set(sd)
    nfreq = sd.get("logmel_extractor.melW", np.zeros((0, 0))).shape[0]
    if "conv_block6.conv1.weight" in keys:
        return "Cnn14_16k" if nfreq == 257 else "Cnn14"
    if "conv_block4.conv2.weight" in keys:
        return "Cnn10"
    if "conv_block4.conv1.weight" in keys:
        return "Cnn6"
    if "features.14.4.weight" in keys or "features.13.4.weight" in keys:
        return "MobileNetV1"
    if "features.18.0.weight" in keys:
        return "MobileNetV2"
    raise ConvertError("cannot infer the architecture from the file name or keys; pass --arch "
                       f"({', '.join(ARCHS)})")


def validate(arch, sd):
    exp = expected_keys(arch)
    exp_names = [k for k, _, _ in exp]
    missing = [k for k in exp_names if k not in sd]
    unexpected = [k for k in sd if k not in set(exp_names)]
    problems = []
    if missing:
        problems.append(f"missing keys for {arch}: {', '.join(missing[:12])}" + (" ..." if len(missing) > 12 else ""))
    if unexpected:
        problems.append(f"unexpected keys for {arch}: {', '.join(unexpected[:12])}" + (" ..." if len(unexpected) > 12 else ""))
    fe = ARCHS[arch]["frontend"]
    for k, shape, dt in exp:
        if k in sd and tuple(sd[k].shape) != shape:
            msg = f"{k} has shape {tuple(sd[k].shape)} but {arch} expects {shape}"
            if k == "logmel_extractor.melW" or k.startswith("spectrogram_extractor"):
                n_fft = 2 * (sd[k].shape[0] - 1)
                hint = ("this looks like a 16 kHz checkpoint: use --arch Cnn14_16k" if n_fft == 512 else
                        "this looks like a 32 kHz checkpoint: use a 32 kHz --arch such as Cnn14 or MobileNetV1"
                        if n_fft == 1024 else "no supported architecture uses this FFT size")
                msg += (f" (the checkpoint's FFT size is {n_fft}, {arch} uses window {fe['window_size']} at "
                        f"{fe['sample_rate']} Hz; {hint})")
            problems.append(msg)
    if problems:
        raise ConvertError("checkpoint does not match the architecture:\n  " + "\n  ".join(problems))
    for k, shape, dt in exp:
        if not np.all(np.isfinite(sd[k])):
            raise ConvertError(f"{k} contains NaN or infinite values")
    # The front end is not in the graph, so make sure the card we write describes the front end the
    # weights were trained with: the mel filterbank and the STFT kernels are in the checkpoint.
    ref = slaney_melW(fe["sample_rate"], fe["window_size"], fe["mel_bins"], fe["fmin"], fe["fmax"])
    got = sd["logmel_extractor.melW"].astype(np.float32)
    err = float(np.max(np.abs(got - ref)))
    if err > 1e-4 * max(1e-12, float(np.max(np.abs(ref)))) + 1e-7:
        raise ConvertError(
            f"logmel_extractor.melW does not match a Slaney mel filterbank for sample_rate="
            f"{fe['sample_rate']}, window_size={fe['window_size']}, mel_bins={fe['mel_bins']}, "
            f"fmin={fe['fmin']}, fmax={fe['fmax']} (max abs difference {err:.3g}); this checkpoint was "
            f"trained with a different front end (for example a 16 kHz model converted as a 32 kHz one): "
            f"pick the matching --arch")
    real, imag = stft_kernels(fe["window_size"])
    for k, r in (("spectrogram_extractor.stft.conv_real.weight", real),
                 ("spectrogram_extractor.stft.conv_imag.weight", imag)):
        e = float(np.max(np.abs(sd[k].astype(np.float32) - r)))
        if e > 1e-4:
            raise ConvertError(f"{k} is not a Hann-windowed DFT of size {fe['window_size']} (max abs difference "
                               f"{e:.3g}); the card would describe the wrong front end")


# ---------------------------------------------------------------------------------------------
# ONNX graph
# ---------------------------------------------------------------------------------------------

def build_onnx(arch, sd, name):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    fe = ARCHS[arch]["frontend"]
    spec = ARCHS[arch]
    nodes, inits = [], []
    counter = [0]

    def fresh(base):
        counter[0] += 1
        return f"{base}_{counter[0]}"

    def init(nm, arr, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=dtype), nm))
        return nm

    # bn0 normalises each mel bin (the reference transposes mel to the channel axis): fold it into a
    # per-bin scale and shift broadcast over the last axis, computed in float64.
    m = sd["bn0.running_mean"].astype(np.float64)
    v = sd["bn0.running_var"].astype(np.float64)
    g = sd["bn0.weight"].astype(np.float64)
    b = sd["bn0.bias"].astype(np.float64)
    scale = g / np.sqrt(v + BN_EPS)
    shift = b - m * scale
    x = fresh("bn0_mul")
    nodes.append(helper.make_node("Mul", ["logmel", init("bn0.scale", scale)], [x]))
    y = fresh("bn0_add")
    nodes.append(helper.make_node("Add", [x, init("bn0.shift", shift)], [y]))
    x = y

    res_stack = []
    for layer in arch_layers(arch):
        kind = layer[0]
        out = fresh(kind)
        if kind == "conv":
            _, p, cin, cout, k, groups = layer
            w = init(f"{p}.weight", sd[f"{p}.weight"])
            nodes.append(helper.make_node("Conv", [x, w], [out], kernel_shape=[k, k], pads=[k // 2] * 4,
                                          strides=[1, 1], group=groups, name=p))
        elif kind == "bn":
            p = layer[1]
            ins = [x] + [init(f"{p}.{s}", sd[f"{p}.{s}"]) for s in ("weight", "bias", "running_mean", "running_var")]
            nodes.append(helper.make_node("BatchNormalization", ins, [out], epsilon=BN_EPS, name=p))
        elif kind == "relu":
            nodes.append(helper.make_node("Relu", [x], [out]))
        elif kind == "relu6":
            nodes.append(helper.make_node("Clip", [x, init(fresh("zero"), np.array(0.0)), init(fresh("six"), np.array(6.0))], [out]))
        elif kind == "pool":
            s = layer[1]
            nodes.append(helper.make_node("AveragePool", [x], [out], kernel_shape=[s, s], strides=[s, s]))
        elif kind == "res_begin":
            res_stack.append(x)
            continue
        elif kind == "res_end":
            nodes.append(helper.make_node("Add", [res_stack.pop(), x], [out]))
        x = out

    # Global pooling: mean over mel, then max + mean over time.
    freq_mean = fresh("freq_mean")
    nodes.append(helper.make_node("ReduceMean", [x], [freq_mean], axes=[3], keepdims=0))
    tmax, tmean, pooled = fresh("time_max"), fresh("time_mean"), fresh("pooled")
    nodes.append(helper.make_node("ReduceMax", [freq_mean], [tmax], axes=[2], keepdims=0))
    nodes.append(helper.make_node("ReduceMean", [freq_mean], [tmean], axes=[2], keepdims=0))
    nodes.append(helper.make_node("Add", [tmax, tmean], [pooled]))
    fc1 = fresh("fc1")
    nodes.append(helper.make_node("Gemm", [pooled, init("fc1.weight", sd["fc1.weight"]), init("fc1.bias", sd["fc1.bias"])],
                                  [fc1], transB=1, name="fc1"))
    nodes.append(helper.make_node("Relu", [fc1], ["embedding"]))
    logits = fresh("logits")
    nodes.append(helper.make_node("Gemm", ["embedding", init("fc_audioset.weight", sd["fc_audioset.weight"]),
                                           init("fc_audioset.bias", sd["fc_audioset.bias"])], [logits], transB=1,
                                  name="fc_audioset"))
    nodes.append(helper.make_node("Sigmoid", [logits], ["clipwise_output"]))

    graph = helper.make_graph(
        nodes, f"panns_{arch}",
        [helper.make_tensor_value_info("logmel", TensorProto.FLOAT, ["batch", 1, "frames", fe["mel_bins"]])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", spec["emb_dim"]]),
         helper.make_tensor_value_info("clipwise_output", TensorProto.FLOAT, ["batch", NUM_CLASSES])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="earshot/models/convert_panns.py")
    model.ir_version = 8  # opset 17 era; accepted by every ONNX Runtime >= 1.13
    model.doc_string = f"{name}: PANNs {arch} from log-mel (dB, before bn0) to embedding + clipwise_output"
    onnx.checker.check_model(model, full_check=False)
    return model


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_card(arch, name, onnx_sha, ckpt_path, ckpt_sha, seed, weights, note):
    fe = ARCHS[arch]["frontend"]
    return {
        "card_version": 1,
        "name": name,
        "architecture": arch,
        "sample_rate": fe["sample_rate"],
        "frontend": {"window_size": fe["window_size"], "hop_size": fe["hop_size"], "mel_bins": fe["mel_bins"],
                     "fmin": float(fe["fmin"]), "fmax": float(fe["fmax"]), "window": "hann", "center": True,
                     "pad_mode": "reflect", "power": 2.0, "mel_norm": "slaney", "amin": 1e-10, "ref": 1.0},
        "input": {"name": "logmel", "layout": "batch,1,frames,mel_bins"},
        "outputs": {"embedding": "embedding", "clipwise": "clipwise_output"},
        "embedding_dim": ARCHS[arch]["emb_dim"],
        "num_classes": NUM_CLASSES,
        "min_frames": min_frames(arch),
        "onnx": {"file": "model.onnx", "sha256": onnx_sha, "opset": OPSET},
        "provenance": {"weights": weights, "checkpoint": os.path.basename(ckpt_path), "checkpoint_sha256": ckpt_sha,
                       "seed": seed, "converted_by": "models/convert_panns.py", "note": note},
    }


def _seed_from_checkpoint(ckpt):
    meta = ckpt.get("earshot_seeded") if isinstance(ckpt, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("seed"), int):
        return meta["seed"]
    return None


def validate_sfx(sd):
    """Checks an aisfx CrossNet state_dict: the embedding network exactly, the heads only by prefix."""
    exp = aisfx_cnn9.expected_keys()
    names = {k for k, _, _ in exp}
    missing = [k for k, _, _ in exp if k not in sd]
    unexpected = [k for k in sd if k not in names and not aisfx_cnn9.is_head_key(k)]
    problems = []
    if missing:
        problems.append(f"missing keys for {aisfx_cnn9.ARCH}: {', '.join(missing[:12])}")
    if unexpected:
        problems.append(f"unexpected keys for {aisfx_cnn9.ARCH}: {', '.join(unexpected[:12])}")
    for k, shape, _ in exp:
        if k in sd and tuple(sd[k].shape) != shape:
            problems.append(f"{k} has shape {tuple(sd[k].shape)} but {aisfx_cnn9.ARCH} expects {shape}")
    if problems:
        raise ConvertError("checkpoint does not match the architecture:\n  " + "\n  ".join(problems))
    for k, _, _ in exp:
        if not np.all(np.isfinite(sd[k])):
            raise ConvertError(f"{k} contains NaN or infinite values")


def _save(model, outdir, card_fn):
    import onnx
    os.makedirs(outdir, exist_ok=True)
    onnx_path = os.path.join(outdir, "model.onnx")
    tmp = onnx_path + ".tmp"
    onnx.save_model(model, tmp)
    os.replace(tmp, onnx_path)
    card = card_fn(sha256_file(onnx_path))
    with open(os.path.join(outdir, "card.json"), "w") as f:
        json.dump(card, f, indent=2)
        f.write("\n")
    return card


def convert(ckpt_path, outdir, arch=None, name=None, verify=True, intermediate=()):
    ckpt, fmt = read_checkpoint(ckpt_path)
    sd = state_dict_of(ckpt)
    ckpt_sha = sha256_file(ckpt_path)
    if verify:
        verify_official(ckpt_path, ckpt_sha)
    arch = arch or infer_arch(ckpt_path, sd)
    if arch == aisfx_cnn9.ARCH:
        validate_sfx(sd)
        name = name or "aisfx-cnn9"
        model = aisfx_cnn9.build_onnx(sd, name, OPSET, intermediate)
        card = _save(model, outdir, lambda sha: aisfx_cnn9.make_card(
            name, sha, os.path.basename(ckpt_path), ckpt_sha, OPSET, intermediate))
        return card, fmt
    if arch not in ARCHS:
        raise ConvertError(f"unknown --arch {arch!r}; choose one of {', '.join(ALL_ARCHS)}")
    if intermediate:
        raise ConvertError(f"intermediate outputs are only available for {aisfx_cnn9.ARCH}")
    validate(arch, sd)
    seed = _seed_from_checkpoint(ckpt)
    if seed is not None:
        weights = "seeded-random"
        note = (f"Seeded random weights (seed {seed}) with calibrated batch-norm statistics, NOT trained: the "
                f"embeddings are deterministic and distinguish sounds, but they carry no AudioSet knowledge. "
                f"For production convert the AudioSet-pretrained {ARCHS[arch]['checkpoint']} "
                f"(see models/README.md).")
        name = name or f"panns-{arch.lower()}-seeded"
    else:
        weights = "audioset-pretrained"
        note = (f"Converted from the PANNs checkpoint {os.path.basename(ckpt_path)} (Kong et al. 2020, trained on "
                f"AudioSet); graph starts at the log-mel in dB before bn0.")
        name = name or f"panns-{arch.lower()}"
    model = build_onnx(arch, sd, name)
    card = _save(model, outdir, lambda sha: make_card(arch, name, sha, ckpt_path, ckpt_sha, seed, weights, note))
    return card, fmt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="PANNs .pth checkpoint (official or from make_checkpoint.py)")
    ap.add_argument("outdir", help="directory that receives model.onnx and card.json")
    ap.add_argument("--arch", choices=ALL_ARCHS, help="architecture (default: inferred from file name/keys)")
    ap.add_argument("--name", help="model name written to the card")
    ap.add_argument("--no-verify", action="store_true",
                    help="convert a file named like an official checkpoint even if its SHA-256 is not the official one")
    ap.add_argument("--intermediate", action="append", default=[], metavar="BLOCK",
                    help=f"also output this block's feature map ({aisfx_cnn9.ARCH} only: conv_block1..conv_block4)")
    args = ap.parse_args(argv)
    try:
        card, fmt = convert(args.checkpoint, args.outdir, args.arch, args.name, verify=not args.no_verify,
                            intermediate=tuple(args.intermediate))
    except ConvertError as e:
        print(f"convert_panns: error: {e}", file=sys.stderr)
        return 2
    print(f"convert_panns: {args.checkpoint} ({fmt} format, {card['architecture']}) -> "
          f"{os.path.join(args.outdir, 'model.onnx')} sha256 {card['onnx']['sha256'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
