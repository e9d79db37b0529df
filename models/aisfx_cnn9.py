"""Cnn_9layers as trained by Ma and Lerch (ISMIR 2022, the `aisfx` package), for convert_panns.py.

Why a module of its own: the network is Kong's Cnn_9layers from the DCASE 2018 cross-task
baseline (the PANNs lineage), but its checkpoint, front end and head differ from the PANNs ones:

- the checkpoint is a tuple `(state_dict, datasets)` of the training `CrossNet`; only
  `embedding_net.*` is the embedding network, the `fc.<i>.*` heads classify the training
  libraries' categories and are not exported;
- there is no bn0 and no mel filterbank in the checkpoint: the front end is fixed by the package's
  code (`aisfx/inference.py` constants and `spectrogram_librosa.py`), so the card states it and
  the parity fixtures (scripts/parity/aisfx/) prove earshot computes the same thing;
- pooling is max pooling, and the embedding is mean over frequency then max over time (no fc1).

Front end (what the card announces, earshot computes it in Rust): 44.1 kHz, periodic Hann window
of 2048, hop 1024, centred frames with zero padding (librosa 0.9.2's `pad_mode="constant"`),
power spectrum, 96 HTK-scale mel bands 0-22050 Hz, each filter scaled to unit sum (librosa
`norm=1.0`: L1 normalisation of each filter, not Slaney's area normalisation), then
log10(1 + 10000 x). The package then divides by 9.457798957824707 (its "original" min-max
normalisation with min 0): that division is the first node of the graph.

Written from the published architecture and the package's documented constants; no code of the
package is used or copied.
"""

from __future__ import annotations

import numpy as np

ARCH = "Cnn_9layers"
BN_EPS = 1e-5
EMB_DIM = 512
CHANNELS = (64, 128, 256, 512)
KEY_PREFIX = "embedding_net."
# The package's spectrogram_normalize(spec_norm="original"): (spec - 0) / (9.457798957824707 - 0).
INPUT_MAX = 9.457798957824707

FRONTEND = {
    "sample_rate": 44100, "window_size": 2048, "hop_size": 1024, "mel_bins": 96,
    "fmin": 0.0, "fmax": 22050.0,
}
# The extra card fields that make the Rust front end compute the package's librosa path.
CARD_FRONTEND = {
    "window_size": 2048, "hop_size": 1024, "mel_bins": 96, "fmin": 0.0, "fmax": 22050.0,
    "window": "hann", "center": True, "pad_mode": "constant", "power": 2.0,
    "mel_scale": "htk", "mel_norm": "l1", "log": "log10_1p", "log_scale": 10000.0,
}

# The checkpoint inside the PyPI wheel aisfx 0.1.2 (aisfx/models/checkpoint.pth).
KNOWN_CHECKPOINT_SHA256 = "499ea75909c932a2f94c35fa722fa4fabc5bcb7e84917209cc5f7402627b7eb5"
ATTRIBUTION = ("Pretrained weights: Alison B. Ma and Alexander Lerch, \"Representation Learning for the "
               "Automatic Indexing of Sound Effects Libraries\", ISMIR 2022 (PyPI package aisfx 0.1.2, "
               "model X-Sequential-CE), licensed CC BY 4.0 "
               "(https://creativecommons.org/licenses/by/4.0/); converted to ONNX by earshot's "
               "models/convert_panns.py (format change only: classifier heads dropped, weights unchanged).")
LICENSE = "CC-BY-4.0"


def layers():
    """(kind, ...) list in the same mini-language as convert_panns: conv, bn, relu, maxpool."""
    out = []
    cin = 1
    for i, cout in enumerate(CHANNELS, start=1):
        p = f"{KEY_PREFIX}conv_block{i}"
        out += [("conv", f"{p}.conv1", cin, cout, 3, 1), ("bn", f"{p}.bn1", cout), ("relu",),
                ("conv", f"{p}.conv2", cout, cout, 3, 1), ("bn", f"{p}.bn2", cout), ("relu",)]
        if i < len(CHANNELS):
            out.append(("maxpool", 2))
        out.append(("block_end", f"conv_block{i}"))
        cin = cout
    return out


def min_frames():
    """Three 2x2 max-poolings (floor) need 8 frames for one output frame."""
    return 2 ** (len(CHANNELS) - 1)


def expected_keys():
    """(key, shape, dtype) of the embedding network, in its state_dict order (convs, then bns)."""
    keys = []
    cin = 1
    for i, cout in enumerate(CHANNELS, start=1):
        p = f"{KEY_PREFIX}conv_block{i}"
        keys += [(f"{p}.conv1.weight", (cout, cin, 3, 3), "f4"), (f"{p}.conv2.weight", (cout, cout, 3, 3), "f4")]
        for bn in ("bn1", "bn2"):
            keys += [(f"{p}.{bn}.weight", (cout,), "f4"), (f"{p}.{bn}.bias", (cout,), "f4"),
                     (f"{p}.{bn}.running_mean", (cout,), "f4"), (f"{p}.{bn}.running_var", (cout,), "f4"),
                     (f"{p}.{bn}.num_batches_tracked", (), "i8")]
        cin = cout
    return keys


def is_head_key(k):
    """The CrossNet's per-dataset classifier heads (fc.<dataset>.<layer>.weight/bias)."""
    return k.startswith("fc.")


def looks_like(sd):
    return f"{KEY_PREFIX}conv_block1.conv1.weight" in sd and f"{KEY_PREFIX}conv_block4.conv2.weight" in sd


# ---------------------------------------------------------------------------------------------
# numpy reference (float64): front end and forward, for tests and cross-checks
# ---------------------------------------------------------------------------------------------

def hz_to_mel_htk(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz_htk(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def htk_l1_melW(sr, n_fft, n_mels, fmin, fmax):
    """HTK-scale triangles, each scaled so its weights sum to 1; shape (n_fft//2+1, n_mels)."""
    fft_freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    hz = mel_to_hz_htk(np.linspace(hz_to_mel_htk(fmin), hz_to_mel_htk(fmax), n_mels + 2))
    w = np.zeros((n_mels, fft_freqs.size))
    for i in range(n_mels):
        lower = (fft_freqs - hz[i]) / (hz[i + 1] - hz[i])
        upper = (hz[i + 2] - fft_freqs) / (hz[i + 2] - hz[i + 1])
        w[i] = np.maximum(0.0, np.minimum(lower, upper))
    s = w.sum(axis=1, keepdims=True)
    w = np.where(s > 0, w / np.where(s > 0, s, 1.0), 0.0)
    return w.T


def logmel_numpy(wave, fe=FRONTEND):
    """log10(1 + 1e4 * HTK/L1 mel power) of a mono waveform, (frames, mel_bins), float64."""
    n_fft, hop = fe["window_size"], fe["hop_size"]
    x = np.pad(np.asarray(wave, dtype=np.float64), (n_fft // 2, n_fft // 2), mode="constant")
    frames = 1 + (x.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    spec = np.abs(np.fft.rfft(x[idx] * window[None, :], axis=1)) ** 2
    melW = htk_l1_melW(fe["sample_rate"], n_fft, fe["mel_bins"], fe["fmin"], fe["fmax"])
    return np.log10(1.0 + 1e4 * (spec @ melW))


def forward(sd, logmel, taps=()):
    """(N, frames, mel) float64 log10(1+1e4x) -> embedding (N, 512); with `taps`, also the named
    block outputs (N, C, T', F')."""
    from make_checkpoint import _conv  # numpy conv (same padding) shared with the PANNs reference

    x = (np.asarray(logmel, dtype=np.float64) / INPUT_MAX)[:, None, :, :]
    tapped = {}
    for layer in layers():
        kind = layer[0]
        if kind == "conv":
            x = _conv(x, sd[f"{layer[1]}.weight"].astype(np.float64), 1)
        elif kind == "bn":
            p = layer[1]
            scale = sd[f"{p}.weight"].astype(np.float64) / np.sqrt(sd[f"{p}.running_var"].astype(np.float64) + BN_EPS)
            shift = sd[f"{p}.bias"].astype(np.float64) - sd[f"{p}.running_mean"].astype(np.float64) * scale
            x = x * scale[None, :, None, None] + shift[None, :, None, None]
        elif kind == "relu":
            x = np.maximum(x, 0.0)
        elif kind == "maxpool":
            n, c, h, w = x.shape
            x = x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
        elif kind == "block_end" and layer[1] in taps:
            tapped[layer[1]] = x
    emb = x.mean(axis=3).max(axis=2)
    return (emb, tapped) if taps else emb


def seeded_state_dict(seed):
    """Random weights in the checkpoint's layout (for converter tests only)."""
    rng = np.random.default_rng(seed)
    sd = {}
    for k, shape, dt in expected_keys():
        if k.endswith("num_batches_tracked"):
            sd[k] = np.array(1000, dtype=np.int64)
        elif k.endswith("running_var"):
            sd[k] = rng.uniform(0.5, 2.0, size=shape).astype(np.float32)
        elif k.endswith("running_mean") or k.endswith(".bias"):
            sd[k] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        elif len(shape) == 1:
            sd[k] = rng.uniform(0.7, 1.3, size=shape).astype(np.float32)
        else:
            fan_in = shape[1] * 9
            sd[k] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    for i, n in enumerate((5, 7)):  # two training datasets' heads, which the converter drops
        sd[f"fc.{i}.0.weight"] = np.zeros((256, 512), np.float32)
        sd[f"fc.{i}.0.bias"] = np.zeros(256, np.float32)
        sd[f"fc.{i}.4.weight"] = np.zeros((n, 128), np.float32)
    return sd


# ---------------------------------------------------------------------------------------------
# ONNX graph
# ---------------------------------------------------------------------------------------------

def build_onnx(sd, name, opset, intermediate=()):
    """logmel [batch, 1, frames, 96] (log10(1+1e4 x)) -> embedding [batch, 512], plus the named
    block outputs (e.g. "conv_block3") as extra outputs [batch, C, frames', mels'] when asked:
    the hook for patch-level scorers that need what the network sees before pooling."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    unknown = set(intermediate) - {f"conv_block{i}" for i in range(1, len(CHANNELS) + 1)}
    if unknown:
        raise ValueError(f"unknown intermediate outputs {sorted(unknown)} (conv_block1..conv_block4)")
    nodes, inits = [], []
    counter = [0]

    def fresh(base):
        counter[0] += 1
        return f"{base}_{counter[0]}"

    def init(nm, arr, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=dtype), nm))
        return nm

    x = fresh("scaled")
    nodes.append(helper.make_node("Div", ["logmel", init("input_max", np.array(INPUT_MAX))], [x],
                                  name="spectrogram_normalize"))
    outputs_extra = []
    for layer in layers():
        kind = layer[0]
        if kind == "block_end":
            if layer[1] in intermediate:
                nodes.append(helper.make_node("Identity", [x], [layer[1]]))
                outputs_extra.append(helper.make_tensor_value_info(
                    layer[1], TensorProto.FLOAT, ["batch", CHANNELS[int(layer[1][-1]) - 1], None, None]))
            continue
        out = fresh(kind)
        if kind == "conv":
            _, p, cin, cout, k, groups = layer
            short = p[len(KEY_PREFIX):]
            w = init(f"{short}.weight", sd[f"{p}.weight"])
            nodes.append(helper.make_node("Conv", [x, w], [out], kernel_shape=[k, k], pads=[k // 2] * 4,
                                          strides=[1, 1], group=groups, name=short))
        elif kind == "bn":
            p = layer[1]
            short = p[len(KEY_PREFIX):]
            ins = [x] + [init(f"{short}.{s}", sd[f"{p}.{s}"]) for s in ("weight", "bias", "running_mean", "running_var")]
            nodes.append(helper.make_node("BatchNormalization", ins, [out], epsilon=BN_EPS, name=short))
        elif kind == "relu":
            nodes.append(helper.make_node("Relu", [x], [out]))
        elif kind == "maxpool":
            s = layer[1]
            nodes.append(helper.make_node("MaxPool", [x], [out], kernel_shape=[s, s], strides=[s, s]))
        x = out
    freq_mean = fresh("freq_mean")
    nodes.append(helper.make_node("ReduceMean", [x], [freq_mean], axes=[3], keepdims=0))
    nodes.append(helper.make_node("ReduceMax", [freq_mean], ["embedding"], axes=[2], keepdims=0))
    graph = helper.make_graph(
        nodes, "aisfx_cnn9",
        [helper.make_tensor_value_info("logmel", TensorProto.FLOAT, ["batch", 1, "frames", FRONTEND["mel_bins"]])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", EMB_DIM])] + outputs_extra,
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="earshot/models/convert_panns.py")
    model.ir_version = 8
    model.doc_string = (f"{name}: Cnn_9layers (Ma and Lerch, ISMIR 2022, aisfx 0.1.2; CC BY 4.0) from "
                        f"log10(1 + 1e4 mel power) to the 512-d embedding")
    onnx.checker.check_model(model, full_check=False)
    return model


def make_card(name, onnx_sha, ckpt_name, ckpt_sha, opset, intermediate=()):
    verified = ckpt_sha == KNOWN_CHECKPOINT_SHA256
    outputs = {"embedding": "embedding"}
    if intermediate:
        outputs["intermediate"] = list(intermediate)
    return {
        "card_version": 1,
        "name": name,
        "architecture": ARCH,
        "sample_rate": FRONTEND["sample_rate"],
        "frontend": dict(CARD_FRONTEND),
        "input": {"name": "logmel", "layout": "batch,1,frames,mel_bins"},
        "outputs": outputs,
        "embedding_dim": EMB_DIM,
        "min_frames": min_frames(),
        "onnx": {"file": "model.onnx", "sha256": onnx_sha, "opset": opset},
        "provenance": {
            "weights": "sfx-pretrained" if verified else "unverified",
            "checkpoint": ckpt_name, "checkpoint_sha256": ckpt_sha,
            "converted_by": "models/convert_panns.py",
            "source": "https://pypi.org/project/aisfx/0.1.2/ (aisfx/models/checkpoint.pth)",
            "license": LICENSE,
            "attribution": ATTRIBUTION,
            "note": ("Embedding network of the X-Sequential-CE model trained on sound-effects libraries; "
                     "graph starts at log10(1 + 1e4 mel power) and ends at the 512-d embedding "
                     "(mean over frequency, max over time)." if verified else
                     "Cnn_9layers checkpoint that is NOT the known aisfx 0.1.2 file (sha256 differs): "
                     "its training is unknown."),
        },
    }
