"""Network features for scorer research (issue 9 item 3).

Reads the log-mel windows dumped by `cargo run --release --example dump_logmel` (exactly what
earshot feeds the network) and runs the model's ONNX graph with the inner block outputs added
as graph outputs, caching per clip: the 512-d embedding, block 3 after pooling and block 4
(both [windows, C, 5, 12] for 1 s windows), as float16.

  python scripts/research/features.py DUMP_DIR MODEL_DIR CACHE_DIR N_ROWS [FRAMES MELS]
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

# Tensors of the aisfx-cnn9 graph (models/aisfx_cnn9.py): block 3 after its 2x2 max-pool and
# block 4's last ReLU (before the frequency mean / time max that make the embedding).
INNER = {"block3": "maxpool_22", "block4": "relu_28"}


def session(model_dir):
    m = onnx.load(os.path.join(model_dir, "model.onnx"))
    for name in INNER.values():
        m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def rows(dump, n_rows, frames, mels):
    """The dump's rows as they are written (the dump and this can run side by side): a file is
    complete once the next one exists or index.json is written."""
    import time
    for i in range(n_rows):
        f = os.path.join(dump, f"{i:04d}.f32")
        nxt = os.path.join(dump, f"{i + 1:04d}.f32")
        while not (os.path.exists(nxt) or os.path.exists(os.path.join(dump, "index.json"))):
            time.sleep(2)
        n = os.path.getsize(f) // (4 * frames * mels)
        yield i, {"file": os.path.basename(f), "shape": [n, frames, mels]}


def main(dump, model_dir, cache, n_rows, frames=44, mels=96):
    os.makedirs(cache, exist_ok=True)
    sess = session(model_dir)
    names = ["embedding"] + list(INNER.values())
    for i, row in rows(dump, int(n_rows), int(frames), int(mels)):
        out = os.path.join(cache, row["file"].replace(".f32", ".npz"))
        if os.path.exists(out):
            continue
        x = np.fromfile(os.path.join(dump, row["file"]), dtype="<f4").reshape(row["shape"])
        res = {n: [] for n in names}
        for b in range(0, len(x), 8):
            r = sess.run(names, {"logmel": x[b:b + 8, None]})
            for n, v in zip(names, r):
                res[n].append(v)
        np.savez(out, embedding=np.concatenate(res["embedding"]).astype(np.float32),
                 **{k: np.concatenate(res[v]).astype(np.float16) for k, v in INNER.items()})
        if i % 20 == 0:
            print(i, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
