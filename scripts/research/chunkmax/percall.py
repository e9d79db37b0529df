#!/usr/bin/env python3
"""ONNX Runtime's cost per call against input length and batch, for one model (one thread).

Why chunk-max stops at 1.4x the no-overlap limit for Cnn14: is a 32-frame chunk dearer per
frame than a 101-frame window, and is that a fixed cost per call (which batching would share)
or a cost per frame? Random log-mel input: the cost does not depend on the values.

  python3 -m venv /tmp/ortv && /tmp/ortv/bin/pip install onnxruntime numpy
  /tmp/ortv/bin/python scripts/research/chunkmax/percall.py target/test-models/panns-cnn14-seeded
"""
import json, os, resource, sys

import numpy as np
import onnxruntime as ort

model = sys.argv[1]
card = json.load(open(os.path.join(model, "card.json")))
mels = card["frontend"]["mel_bins"]
o = ort.SessionOptions()
o.intra_op_num_threads = 1
o.inter_op_num_threads = 1
s = ort.InferenceSession(os.path.join(model, card["onnx"]["file"]), o, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
rng = np.random.default_rng(0)


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


for frames, batch in [(32, 1), (32, 3), (64, 1), (96, 1), (101, 1), (101, 3), (202, 1), (320, 1)]:
    x = (rng.standard_normal((batch, 1, frames, mels)) * 10 - 40).astype(np.float32)
    for _ in range(2):
        s.run(None, {name: x})
    ts = []
    for _ in range(7):
        t = cpu()
        s.run(None, {name: x})
        ts.append(cpu() - t)
    m = float(np.median(ts)) * 1000
    print(f"frames {frames:4d} batch {batch}: {m:7.1f} ms per call, {m / (frames * batch):.3f} ms per frame", flush=True)
