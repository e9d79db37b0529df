#!/usr/bin/env python3
"""Writes the small seed corpora under fuzz/corpus/<target>/ (committed; rerun to regenerate).

Each seed is a valid (or nearly valid) instance of what the target parses, so the fuzzer starts
from inputs that reach deep into the parser instead of bouncing off its first check.
"""
import json, os, struct, hashlib

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)


def put(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def wav(fmt, channels, rate, bits, frames_bytes):
    block = channels * ((bits + 7) // 8)
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk
    body += b"data" + struct.pack("<I", len(frames_bytes)) + frames_bytes
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- wav
put("wav", "pcm16_mono", wav(1, 1, 16000, 16, struct.pack("<8h", 0, 1000, -1000, 32767, -32768, 5, 6, 7)))
put("wav", "pcm8_stereo", wav(1, 2, 8000, 8, bytes([128, 0, 255, 127, 1, 2])))
put("wav", "pcm24_mono", wav(1, 1, 48000, 24, bytes(range(12))))
put("wav", "float32_stereo", wav(3, 2, 44100, 32, struct.pack("<4f", 0.5, -0.5, float("nan"), 1.0)))
huge = bytearray(wav(1, 1, 16000, 16, struct.pack("<2h", 1, 2)))
huge[40:44] = struct.pack("<I", 0xFFFFFFF0)  # data chunk claims ~4 GB; 4 bytes are there
put("wav", "huge_header", bytes(huge))
put("wav", "rate_1hz", wav(1, 1, 1, 16, struct.pack("<2h", 1, 2)))

# --- config: the shipped example plus a small daemon config with alerts and an Azure index
with open(os.path.join(root, "config", "earshot.toml"), "rb") as f:
    put("config", "shipped_example", f.read())
put("config", "daemon_alerts", """[daemon]
state_dir = "state"
[metrics]
listen = "127.0.0.1:0"
[alerts]
external_url = "http://edge-pc:9847"
[[alerts.webhook]]
name = "hook"
url = "http://127.0.0.1:1/hook"
retry_initial = "100ms"
[[monitor]]
name = "m1"
labels = { machine = "motor", line = "a" }
profile = "profile"
hop_seconds = 0.5
source = { file = "x.wav", realtime = false, loop = true }
index = { kind = "azure", endpoint = "http://127.0.0.1:1", index_name = "n", api_key_env = "K" }
""")

# --- model_card: the shipped cards
for m in ("panns-mobilenetv1-seeded", "aisfx-cnn9"):
    with open(os.path.join(root, "models", m, "card.json"), "rb") as f:
        put("model_card", m, f.read())

# --- profile: manifest FF00FF embeddings FF00FF centroids FF00FF ids FF00FF calibration
thr = {"value": 0.5, "target_far": 0.001, "n": 4, "method": "quantile", "calibration_far": 0.0,
       "release": 0.4, "release_quantile": 0.9, "transient": 0.9, "transient_far": 0.0001}
manifest = {
    "format": "earshot-profile", "version": 2, "created": "2026-01-01T00:00:00Z",
    "earshot_version": "0.1.0", "machine": "motor_id01",
    "model": {"name": "m", "architecture": "MobileNetV1", "onnx_sha256": "00" * 32,
              "sample_rate": 32000, "embedding_dim": 2, "untrained": True},
    "window": {"seconds": 1.0, "hop_seconds": 0.5, "level_dbfs": -20.0},
    "counts": {"clips": 1, "fit_windows": 3, "holdout_windows": 2, "holdout_clips": 1},
    "kmeans_k": 1, "knn_k": 2,
    "thresholds": {"centroid": thr, "knn": thr},
    "sources": ["train"],
    "level": {"quietest_dbfs": -40.0, "floor_dbfs": -60.0, "margin_db": 20.0},
}
emb = struct.pack("<6f", 1, 0, 0.6, 0.8, 0, 1)
cen = struct.pack("<2f", 0.6, 0.8)
ids = b"a.wav@0\na.wav@0.5\na.wav@1\n"
cal = json.dumps({"holdout_scores": {"centroid": [0.1, 0.2], "knn": [0.1, 0.3]}}).encode()
sep = b"\xff\x00\xff"
put("profile", "valid", sep.join([json.dumps(manifest).encode(), emb, cen, ids, cal]))
put("profile", "dup_ids", sep.join([json.dumps(manifest).encode(), emb, cen, b"a@0\na@0\nb@1\n", cal]))

# --- azure
put("azure", "search", json.dumps({"@odata.count": 2, "value": [
    {"@search.score": 0.9, "window_id": "a@0"}, {"@search.score": 0.6, "window_id": "b@1"}]}))
put("azure", "search_bom", b"\xef\xbb\xbf" + json.dumps({"value": []}).encode())
put("azure", "count", b"\xef\xbb\xbf42")
put("azure", "error", json.dumps({"error": {"code": "Throttled", "message": "slow down"}}))
put("azure", "definition", json.dumps({"name": "n", "fields": [
    {"name": "id", "type": "Edm.String", "key": True},
    {"name": "machine", "type": "Edm.String", "filterable": True},
    {"name": "vector", "type": "Collection(Edm.Single)", "dimensions": 1024, "vectorSearchProfile": "p"}],
    "vectorSearch": {"algorithms": [{"name": "a", "kind": "hnsw", "hnswParameters": {"metric": "cosine"}}],
                     "profiles": [{"name": "p", "algorithm": "a"}]}}))

# --- alert_payload: an anomaly_started record as events.jsonl holds it, and a bare alert
record = {
    "kind": "anomaly_started", "status": "firing",
    "labels": {"alertname": "EarshotAnomaly", "monitor": "m1", "machine": "motor"},
    "annotations": {"peak_centroid": "0.9", "fired": "centroid", "summary": "motor sounds abnormal"},
    "startsAt": "2026-01-01T00:00:00.500Z", "detectedAt": "2026-01-01T00:00:03.000Z",
    "fingerprint": "m1/0123456789abcdef",
    "event": {"type": "anomaly", "kind": "started", "event_id": "m1/0123456789abcdef",
              "labels": {"monitor": "m1"}, "start": {"stream_s": 0.5, "wall": "2026-01-01T00:00:00.500Z"},
              "detected": {"stream_s": 3.0, "wall": "2026-01-01T00:00:03.000Z"}, "end": None,
              "scores": {"centroid": {"peak": 0.9, "mean": 0.8, "threshold": 0.5, "windows": 5}},
              "fired": ["centroid"], "rule": "n_of_m", "time_base": "wall", "reason": None},
}
put("alert_payload", "record_started", json.dumps(record))
alert = {"kind": "anomaly_ended", "status": "resolved", "labels": {"alertname": "EarshotAnomaly", "event_id": "m1/1"},
         "annotations": {}, "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-01T00:01:00Z"}
put("alert_payload", "alert_resolved", json.dumps(alert))


# --- outbox: `<16 hex FNV-1a 64 of the JSON> <JSON>\n` records
def fnv(b):
    h = 0xcbf29ce484222325
    for x in b:
        h ^= x
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def rec(obj):
    j = json.dumps(obj, separators=(",", ":")).encode()
    return b"%016x " % fnv(j) + j + b"\n"


put1 = rec({"op": "put", "seq": 1, "target": "hook", "at": 1700000000000, "alert": alert})
put2 = rec({"op": "put", "seq": 2, "target": "am", "at": 1700000000001, "alert": alert})
ack = rec({"op": "ack", "seqs": [1]})
put("outbox", "put_put_ack", put1 + put2 + ack)
put("outbox", "torn_tail", put1 + put2[:-20])
put("outbox", "glued", put1[:-1] + put2 + ack)


# --- regressions (fuzz/regressions/<target>/): inputs that once crashed a target
def regression(target, name, data):
    d = os.path.join(here, "regressions", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# A record with the largest sequence number: `next_seq = max_seq + 1` overflowed (a panic in
# debug builds, a wrap to 0 that reused sequence numbers in release).
regression("outbox", "seq_max", rec({"op": "put", "seq": 2**64 - 1, "target": "hook", "at": 1, "alert": alert}))
regression("outbox", "ack_seq_max", put1 + rec({"op": "ack", "seqs": [2**64 - 1]}))
