#!/usr/bin/env python3
"""Self-check: converted ONNX models reproduce the PANNs reference outputs.

Usage: python scripts/parity/check_onnx.py FIXTURE_DIR MODELS_DIR

FIXTURE_DIR is tests/fixtures/parity (from regen-fixtures.sh), MODELS_DIR what
scripts/make-test-models.sh produced. Needs numpy + onnxruntime (Python). For every clip and
model it feeds the reference log-mel to the ONNX graph and requires embedding cosine >= 0.99999
(and reports clipwise max abs error). It also checks that each card records the checkpoint the
fixtures were made from. Exit status 1 on any failure.
"""

import json
import os
import sys

import numpy as np

COSINE_MIN = 0.99999
CLIPWISE_MAX_ABS = 1e-4


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    fix, models_dir = sys.argv[1], sys.argv[2]
    import onnxruntime as ort

    manifest = json.load(open(os.path.join(fix, "manifest.json")))
    failures = 0
    sessions = {}
    for key, m in manifest["models"].items():
        d = os.path.join(models_dir, m["onnx_dir"])
        card = json.load(open(os.path.join(d, "card.json")))
        if card["provenance"]["checkpoint_sha256"] != m["checkpoint_sha256"]:
            print(f"WARN {key}: card checkpoint sha256 differs from the fixtures' (regenerated elsewhere?)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        sessions[key] = (ort.InferenceSession(os.path.join(d, card["onnx"]["file"]), opts,
                                              providers=["CPUExecutionProvider"]), card)
    print(f"{'clip':<20} {'model':<12} {'1 - cosine':>12} {'emb maxabs':>11} {'clip maxabs':>11}")
    for name, c in manifest["clips"].items():
        lm = np.fromfile(os.path.join(fix, c["logmel"]), dtype="<f4").reshape(c["frames"], c["mel_bins"])
        for key, files in c["models"].items():
            sess, card = sessions[key]
            emb, clip = sess.run(["embedding", "clipwise_output"], {"logmel": lm[None, None]})
            ref_e = np.fromfile(os.path.join(fix, files["embedding"]), dtype="<f4")
            ref_c = np.fromfile(os.path.join(fix, files["clipwise"]), dtype="<f4")
            e = emb[0].astype(np.float64)
            r = ref_e.astype(np.float64)
            cos = float(e @ r / (np.linalg.norm(e) * np.linalg.norm(r)))
            emax = float(np.max(np.abs(e - r)))
            cmax = float(np.max(np.abs(clip[0] - ref_c)))
            ok = cos >= COSINE_MIN and cmax <= CLIPWISE_MAX_ABS and c["frames"] >= card["min_frames"]
            failures += not ok
            print(f"{name:<20} {key:<12} {1.0 - cos:12.3g} {emax:11.3g} {cmax:11.3g} {'ok' if ok else 'FAIL'}")
    print("parity: all ok" if failures == 0 else f"parity: {failures} FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
