#!/usr/bin/env python3
"""Where a short input's extra cost per frame goes: ONNX Runtime's own per-node profile of one
model at two input lengths (one thread, the session's full graph optimisations, as earshot runs
it), each node's median kernel time and its time per input frame side by side.

percall.py showed that Cnn14 costs more per frame on a 32-frame chunk than on a 101-frame window
and that batching chunks does not help; this says which layers. Random log-mel input: the cost
does not depend on the values. The profiler's own overhead inflates the totals a little, the
same for both lengths.

  python3 -m venv /tmp/ortv && /tmp/ortv/bin/pip install onnxruntime numpy
  /tmp/ortv/bin/python scripts/research/chunkmax/layers.py target/test-models/panns-cnn14-seeded 32 101
"""
import collections, json, os, sys, tempfile

import numpy as np
import onnxruntime as ort

model = sys.argv[1]
lengths = [int(a) for a in sys.argv[2:]] or [32, 101]
card = json.load(open(os.path.join(model, "card.json")))
mels = card["frontend"]["mel_bins"]
rng = np.random.default_rng(0)
tmp = tempfile.mkdtemp(prefix="layers-")

per_node = {}
order = []
for frames in lengths:
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.enable_profiling = True
    o.profile_file_prefix = os.path.join(tmp, f"f{frames}")
    s = ort.InferenceSession(os.path.join(model, card["onnx"]["file"]), o, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    x = (rng.standard_normal((1, 1, frames, mels)) * 10 - 40).astype(np.float32)
    for _ in range(12):
        s.run(None, {name: x})
    times = collections.defaultdict(list)
    for e in json.load(open(s.end_profiling())):
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = e["name"][: -len("_kernel_time")]
            if node not in order:
                order.append(node)
            times[node].append(e["dur"] / 1000)
    # The first two runs warm up.
    per_node[frames] = {k: float(np.median(v[2:])) for k, v in times.items()}

a, b = lengths[0], lengths[-1]
tot = {f: sum(per_node[f].values()) for f in lengths}
print(f"{os.path.basename(model.rstrip('/'))}: total {tot[a]:.1f} ms at {a} frames ({tot[a] / a * 1000:.0f} us per frame), "
      f"{tot[b]:.1f} ms at {b} ({tot[b] / b * 1000:.0f} us per frame)")
print(f"{'node':44s} {'ms @' + str(a):>9s} {'us/frame':>9s} {'ms @' + str(b):>9s} {'us/frame':>9s} {'extra ms @' + str(a):>12s}")
rows = []
for k in order:
    ta, tb = per_node[a].get(k, 0.0), per_node[b].get(k, 0.0)
    # What this node costs at `a` frames beyond its per-frame cost at `b` frames.
    rows.append((ta - tb * a / b, k, ta, tb))
shown = 0.0
for extra, k, ta, tb in rows:
    if ta >= 0.25 or tb >= 0.25:
        shown += extra
        print(f"{k[:44]:44s} {ta:9.2f} {ta / a * 1000:9.1f} {tb:9.2f} {tb / b * 1000:9.1f} {extra:12.2f}")
print(f"extra at {a} frames over {b}'s per-frame cost: {tot[a] - tot[b] * a / b:.1f} ms per call "
      f"({shown:.1f} in the nodes listed)")
