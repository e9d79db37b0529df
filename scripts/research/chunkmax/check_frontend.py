"""Checks common.py's front end against earshot's numpy reference (models/aisfx_cnn9.py,
imported read-only, no bytecode written) and the per-cell model against model.onnx."""
import os
import sys
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "models"))
import numpy as np
import aisfx_cnn9 as ref
import common as C

x = C.load_audio(C.manifest()[0]["path"])
print("samples", x.size, "frames", C.logmel(x).shape, "1 s window frames", C.logmel(x[:44100]).shape)
g = C.level_gain(x)
a = C.logmel(x, g).astype(np.float64)
b = ref.logmel_numpy(x * g)
print("max |logmel - reference|", np.abs(a - b).max())
s0 = C.session(); s1 = C.session(C.make_cells_model())
L = a[None, :44].astype(np.float32)
e0 = s0.run(None, {"logmel": L[:, None]})[0]
cells = C.run_cells(s1, L)
print("cells shape", cells.shape, "max |emb - max(cells)|", np.abs(e0 - cells.max(axis=2)).max())
