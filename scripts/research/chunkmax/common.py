"""Shared pieces for the chunk-max measurement (research14): audio loading, the aisfx-cnn9
log-mel front end (written from the card / models/aisfx_cnn9.py description), ONNX sessions,
and the frame layout of windows and chunks.

Frame layout (clip-level log-mel, 44.1 kHz, hop 1024, centred):
  a 10 s clip = 441000 samples -> 431 frames; a 1 s window (44100 samples) -> 44 frames.
  window w starts at frame 11*w (hop 0.25 s ~ 11 frames = 0.2554 s) and spans 44 frames;
  hop 0.5 s = 22 frames (0.5108 s) = every second hop-0.25 window.
  chunk11[j] = frames [11j, 11j+11), chunk22[j] = frames [22j, 22j+22);
  window starting at 11w = chunk11[w..w+3] (4 chunks); window starting at 22w = chunk22[w..w+1].
"""
import csv
import os

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

DEVSET = os.environ.get("DEVSET", "/tmp/devset-audio/devset")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
MODEL = os.path.join(REPO, "models", "aisfx-cnn9", "model.onnx")
# Outputs (hundreds of MB of cached embeddings) go outside the repository.
OUT = os.environ.get("CHUNKMAX_OUT", "/tmp/research-chunkmax")
os.makedirs(OUT, exist_ok=True)
MODEL_CELLS = os.path.join(OUT, "model_cells.onnx")  # same graph + per-cell output
CACHE = os.path.join(OUT, "cache")

SR = 44100
N_FFT = 2048
HOP = 1024
N_MELS = 96
LEVEL_DBFS = -10.0  # config/earshot.toml [window] level_dbfs
MAX_GAIN = 100.0  # src/embed/mod.rs MAX_LEVEL_GAIN
WIN_FRAMES = 44  # frames the front end gives for 44100 samples: 1 + 44100 // 1024
WIN_SAMPLES = 44100


def manifest():
    with open(os.path.join(DEVSET, "manifest.csv")) as f:
        return list(csv.DictReader(f))


def load_audio(rel):
    import soundfile as sf
    from scipy.signal import resample_poly

    x, sr = sf.read(os.path.join(DEVSET, rel), dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    if sr != SR:
        from math import gcd

        g = gcd(SR, sr)
        x = resample_poly(x, SR // g, sr // g)
    return x


def level_gain(x, dbfs=LEVEL_DBFS):
    rms = np.sqrt(np.mean(x * x))
    if rms <= 0:
        return 1.0
    return min(10 ** (dbfs / 20.0) / rms, MAX_GAIN)


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_matrix():
    """HTK triangles 0..22050 Hz, each scaled to unit sum; (n_fft/2+1, n_mels)."""
    freqs = np.linspace(0.0, SR / 2.0, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SR / 2.0), N_MELS + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    tri = np.maximum(0.0, np.minimum((freqs[None] - lo) / (mid - lo), (hi - freqs[None]) / (hi - mid)))
    s = tri.sum(axis=1, keepdims=True)
    tri = np.where(s > 0, tri / np.where(s > 0, s, 1.0), 0.0)
    return tri.T


_MEL = None
_WIN = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann


def mel_power(x):
    """Mel power (frames, 96) of a waveform, centred frames with zero padding."""
    global _MEL
    if _MEL is None:
        _MEL = mel_matrix()
    xp = np.pad(np.asarray(x, dtype=np.float64), (N_FFT // 2, N_FFT // 2))
    n = 1 + (xp.size - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
    spec = np.abs(np.fft.rfft(xp[idx] * _WIN[None, :], axis=1)) ** 2
    return spec @ _MEL


def logmel(x, gain=1.0):
    return np.log10(1.0 + 1e4 * (gain * gain) * mel_power(x)).astype(np.float32)


def session(path=MODEL):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def make_cells_model():
    """Copy of model.onnx that also outputs the per-cell tensor before the max over time
    ([batch, 512, cells], the ReduceMean over frequency). Embedding = its max over cells."""
    import onnx

    if os.path.exists(MODEL_CELLS):
        return MODEL_CELLS
    m = onnx.load(MODEL)
    rmean = [n for n in m.graph.node if n.op_type == "ReduceMean"]
    assert len(rmean) == 1
    out = onnx.helper.make_tensor_value_info(rmean[0].output[0], onnx.TensorProto.FLOAT, ["batch", 512, "cells"])
    m.graph.output.append(out)
    onnx.save(m, MODEL_CELLS)
    return MODEL_CELLS


def run_cells(sess, batch):
    """batch: (B, T, 96) float32 -> cells (B, 512, T//8)."""
    outs = sess.run(None, {"logmel": np.ascontiguousarray(batch[:, None], dtype=np.float32)})
    return outs[1]


def l2n(e):
    e = np.asarray(e, dtype=np.float64)
    return e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
