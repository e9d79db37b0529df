#!/usr/bin/env python3
"""Fast checks of the torch-free checkpoint writer/reader and the converter (numpy + onnx only).

Run: python3 models/test_convert.py   (exit status non-zero on failure)
"""

import collections
import json
import os
import shutil
import sys
import tempfile
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aisfx_cnn9 as ax  # noqa: E402
import convert_panns as cp  # noqa: E402
import make_checkpoint as mc  # noqa: E402

TMP = tempfile.mkdtemp(prefix="earshot-convert-test-")
RESULTS = []


def case(fn):
    try:
        fn()
        RESULTS.append((fn.__name__, None))
    except Exception:  # report every failing case, not just the first
        RESULTS.append((fn.__name__, traceback.format_exc()))
    return fn


def expect_refusal(path, arch, *needles):
    try:
        cp.convert(path, os.path.join(TMP, "refused"), arch=arch)
    except cp.ConvertError as e:
        msg = str(e)
        for n in needles:
            assert n in msg, f"refusal message lacks {n!r}: {msg}"
        return msg
    raise AssertionError(f"{path} converted as {arch} but should have been refused")


SD = mc.make_state_dict("MobileNetV1", seed=7, calibrate=False)


@case
def round_trip_both_formats_is_exact():
    extra = {"earshot_seeded": {"seed": 7}}
    for fmt, save in (("zip", mc.save_zip), ("legacy", mc.save_legacy)):
        path = os.path.join(TMP, f"rt-{fmt}.pth")
        save(path, SD, extra)
        ckpt, got_fmt = cp.read_checkpoint(path)
        assert got_fmt == fmt, (got_fmt, fmt)
        assert ckpt["iteration"] == 0 and ckpt["earshot_seeded"] == {"seed": 7}
        sd = ckpt["model"]
        assert isinstance(sd, collections.OrderedDict)
        assert list(sd) == list(SD), "key order changed"
        for k, v in SD.items():
            assert sd[k].dtype == v.dtype and sd[k].shape == v.shape, (k, sd[k].dtype, sd[k].shape)
            assert np.array_equal(sd[k], v), k
        assert sd["bn0.num_batches_tracked"].shape == () and sd["bn0.num_batches_tracked"].dtype == np.int64


@case
def state_dict_matches_reference_key_list():
    names = [k for k, _, _ in cp.expected_keys("MobileNetV1")]
    assert len(names) == 174, len(names)  # what the reference MobileNetV1().state_dict() holds
    assert len(cp.expected_keys("Cnn14")) == 84 and len(cp.expected_keys("Cnn14_16k")) == 84
    assert cp.min_frames("Cnn14") == 32 and cp.min_frames("MobileNetV1") == 32 and cp.min_frames("Cnn10") == 16
    for fname, arch in (("Cnn14_mAP=0.431.pth", "Cnn14"), ("Cnn14_16k_mAP=0.438.pth", "Cnn14_16k"),
                        ("MobileNetV1_mAP=0.389.pth", "MobileNetV1"), ("/x/MobileNetV2_mAP=0.383.pth", "MobileNetV2")):
        assert cp.infer_arch(fname, {}) == arch, fname
    assert cp.infer_arch("weights.pth", SD) == "MobileNetV1"


@case
def untrusted_globals_are_never_called():
    marker = os.path.join(TMP, "pwned")

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    path = os.path.join(TMP, "evil.pth")
    mc.save_zip(path, SD, {"sampler": Evil()})
    ckpt, _ = cp.read_checkpoint(path)
    assert not os.path.exists(marker), "reader executed a global from the checkpoint"
    assert np.array_equal(ckpt["model"]["fc1.bias"], SD["fc1.bias"])


@case
def converts_and_graph_matches_numpy_forward():
    path = os.path.join(TMP, "MobileNetV1-seed7.pth")
    mc.save_zip(path, SD, {"earshot_seeded": {"seed": 7}})
    out = os.path.join(TMP, "m1")
    card, fmt = cp.convert(path, out)  # architecture inferred from the file name
    assert fmt == "zip"
    on_disk = json.load(open(os.path.join(out, "card.json")))
    assert on_disk == card
    assert card["architecture"] == "MobileNetV1" and card["embedding_dim"] == 1024 and card["min_frames"] == 32
    assert card["onnx"]["sha256"] == cp.sha256_file(os.path.join(out, "model.onnx"))
    assert card["provenance"]["weights"] == "seeded-random" and card["provenance"]["seed"] == 7
    assert card["frontend"]["fmax"] == 14000.0 and card["sample_rate"] == 32000

    import onnx
    from onnx.reference import ReferenceEvaluator
    model = onnx.load(os.path.join(out, "model.onnx"))
    assert [i.name for i in model.graph.input] == ["logmel"]
    assert [o.name for o in model.graph.output] == ["embedding", "clipwise_output"]
    assert model.opset_import[0].version == 17
    rng = np.random.default_rng(3)
    lm = (-40.0 + 15.0 * rng.standard_normal((2, 40, 64))).astype(np.float32)
    emb, clip = ReferenceEvaluator(model).run(None, {"logmel": lm[:, None]})
    _, ref_emb, ref_clip = mc.forward("MobileNetV1", SD, lm.astype(np.float64))
    for i in range(2):
        cos = float(emb[i] @ ref_emb[i] / (np.linalg.norm(emb[i]) * np.linalg.norm(ref_emb[i])))
        assert cos > 0.9999, cos
    assert np.max(np.abs(clip - ref_clip)) < 1e-3


@case
def refuses_missing_and_unexpected_keys():
    bad = collections.OrderedDict(SD)
    bad["fc1.weight_renamed"] = bad.pop("fc1.weight")
    path = os.path.join(TMP, "wrongkey.pth")
    mc.save_zip(path, bad, {})
    expect_refusal(path, "MobileNetV1", "missing keys", "fc1.weight", "unexpected keys", "fc1.weight_renamed")


@case
def refuses_wrong_shape():
    bad = collections.OrderedDict(SD)
    bad["features.3.4.weight"] = np.zeros((128, 64, 1, 1), dtype=np.float32)
    path = os.path.join(TMP, "wrongshape.pth")
    mc.save_legacy(path, bad, {})
    expect_refusal(path, "MobileNetV1", "features.3.4.weight", "(128, 64, 1, 1)", "(128, 128, 1, 1)")


@case
def refuses_16k_checkpoint_as_32k():
    sd16 = mc.make_state_dict("Cnn14_16k", seed=5, calibrate=False)
    path = os.path.join(TMP, "Cnn14_16k-seed5.pth")
    mc.save_zip(path, sd16, {})
    msg = expect_refusal(path, "Cnn14", "logmel_extractor.melW", "(257, 64)", "Cnn14_16k")
    assert "16 kHz" in msg, msg
    # and the right architecture accepts it (inferred from the file name)
    card, _ = cp.convert(path, os.path.join(TMP, "c16"))
    assert card["architecture"] == "Cnn14_16k" and card["sample_rate"] == 16000 and card["frontend"]["fmax"] == 8000.0


@case
def refuses_other_mel_filterbank_of_same_shape():
    bad = collections.OrderedDict(SD)
    bad["logmel_extractor.melW"] = cp.slaney_melW(16000, 1024, 64, 50.0, 8000.0)  # same shape, other front end
    path = os.path.join(TMP, "othermel.pth")
    mc.save_zip(path, bad, {})
    expect_refusal(path, "MobileNetV1", "does not match a Slaney mel filterbank", "sample_rate=32000", "--arch")


@case
def refuses_non_checkpoint():
    path = os.path.join(TMP, "junk.pth")
    with open(path, "wb") as f:
        f.write(b"this is not a checkpoint")
    expect_refusal(path, "MobileNetV1", "junk.pth")


@case
def bundled_model_is_well_conditioned():
    """The shipped seeded model must separate different sounds and keep similar ones close."""
    import onnx
    from onnx import numpy_helper
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "panns-mobilenetv1-seeded")
    card = json.load(open(os.path.join(d, "card.json")))
    assert card["onnx"]["sha256"] == cp.sha256_file(os.path.join(d, "model.onnx")), "card sha256 is stale"
    assert card["provenance"]["weights"] == "seeded-random" and "NOT trained" in card["provenance"]["note"]
    sd = {i.name: numpy_helper.to_array(i) for i in onnx.load(os.path.join(d, "model.onnx")).graph.initializer}
    # bn0 is folded into scale/shift in the graph; express it as an identity-stat batch norm
    sd["bn0.weight"], sd["bn0.bias"] = sd.pop("bn0.scale"), sd.pop("bn0.shift")
    sd["bn0.running_mean"] = np.zeros(64, np.float32)
    sd["bn0.running_var"] = np.full(64, 1.0 - cp.BN_EPS, np.float32)
    sr = 32000
    rng = np.random.default_rng(5)
    t = np.arange(sr) / sr
    tone = np.sin(2 * np.pi * 440 * t) * 0.3
    hum = mc.machine_sound(np.random.default_rng(1), sr, 1.0, f0=100, noise_db=-15, level_db=-20)
    clips = {"noise_a": rng.standard_normal(sr) * 0.05, "noise_b": rng.standard_normal(sr) * 0.05,
             "tone_a": tone + rng.standard_normal(sr) * 1e-3, "tone_b": tone + rng.standard_normal(sr) * 1e-3,
             "silence": np.zeros(sr), "hum_a": hum, "hum_b": hum + rng.standard_normal(sr) * 1e-3}
    lm = np.stack([cp.logmel_numpy(x, cp.FRONTEND_32K) for x in clips.values()])
    _, emb, clip = mc.forward("MobileNetV1", sd, lm)
    norms = np.linalg.norm(emb, axis=1)
    assert np.all(np.isfinite(emb)) and np.all(norms > 1.0) and np.all(norms < 1e3), norms
    assert np.all((emb > 0).mean(axis=1) > 0.2), "too many dead embedding units"
    n = emb / norms[:, None]
    dist = 1.0 - n @ n.T
    k = {name: i for i, name in enumerate(clips)}
    similar = [dist[k["noise_a"], k["noise_b"]], dist[k["tone_a"], k["tone_b"]], dist[k["hum_a"], k["hum_b"]]]
    different = [dist[k[a], k[b]] for a in ("noise_a", "tone_a", "silence", "hum_a")
                 for b in ("noise_a", "tone_a", "silence", "hum_a") if a < b]
    assert max(similar) < 0.5 * min(different), (similar, different)
    assert min(different) > 0.1, different


@case
def converts_aisfx_cnn9_and_graph_matches_numpy_forward():
    """The aisfx checkpoint layout (a (state_dict, datasets) tuple with classifier heads) converts
    to a graph whose embedding and block-3 feature map equal an independent numpy forward."""
    sd = ax.seeded_state_dict(11)
    path = os.path.join(TMP, "checkpoint.pth")
    mc.save_zip(path, sd, {"prosfx": (0, 5), "soundly": (1, 7)}, tuple_layout=True)
    out = os.path.join(TMP, "cnn9")
    card, fmt = cp.convert(path, out, intermediate=("conv_block3",))  # architecture from the keys
    assert fmt == "zip" and card["architecture"] == "Cnn_9layers" and card["embedding_dim"] == 512
    assert card["sample_rate"] == 44100 and card["min_frames"] == 8
    fe = card["frontend"]
    assert (fe["mel_scale"], fe["mel_norm"], fe["log"], fe["pad_mode"]) == ("htk", "l1", "log10_1p", "constant")
    assert card["outputs"] == {"embedding": "embedding", "intermediate": ["conv_block3"]}
    # not the published file, so the card must not claim the published training
    assert card["provenance"]["weights"] == "unverified", card["provenance"]
    import onnx
    from onnx.reference import ReferenceEvaluator
    model = onnx.load(os.path.join(out, "model.onnx"))
    assert [o.name for o in model.graph.output] == ["embedding", "conv_block3"]
    assert not any(i.name.startswith("fc.") for i in model.graph.initializer), "classifier heads exported"
    rng = np.random.default_rng(4)
    wave = rng.standard_normal(44100) * 0.1
    lm = ax.logmel_numpy(wave)  # (44, 96)
    assert lm.shape == (44, 96)
    emb, feat = ReferenceEvaluator(model).run(None, {"logmel": lm[None, None].astype(np.float32)})
    ref_emb, taps = ax.forward(sd, lm[None], taps=("conv_block3",))
    cos = float(emb[0] @ ref_emb[0] / (np.linalg.norm(emb[0]) * np.linalg.norm(ref_emb[0])))
    assert cos > 0.9999, cos
    assert feat.shape == taps["conv_block3"].shape == (1, 256, 5, 12), feat.shape
    assert np.max(np.abs(feat - taps["conv_block3"])) < 1e-3 * np.max(np.abs(feat))


@case
def aisfx_mel_filterbank_is_htk_with_unit_sum():
    """Independent checks of the numpy HTK/L1 filterbank: known HTK points, unit sums, and the
    triangle peaks at the mel-spaced centres."""
    assert abs(ax.hz_to_mel_htk(700.0) - 2595.0 * np.log10(2.0)) < 1e-9
    w = ax.htk_l1_melW(44100, 2048, 96, 0.0, 22050.0)
    assert w.shape == (1025, 96)
    assert np.allclose(w.sum(axis=0), 1.0)
    centres = ax.mel_to_hz_htk(np.linspace(0.0, ax.hz_to_mel_htk(22050.0), 98))[1:-1]
    peak_hz = np.argmax(w, axis=0) * 44100 / 2048
    assert np.all(np.abs(peak_hz - centres) <= 44100 / 2048), np.max(np.abs(peak_hz - centres))


@case
def bundled_aisfx_model_matches_its_card_and_carries_the_licence():
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "aisfx-cnn9")
    card = json.load(open(os.path.join(d, "card.json")))
    assert card["onnx"]["sha256"] == cp.sha256_file(os.path.join(d, "model.onnx")), "card sha256 is stale"
    prov = card["provenance"]
    assert prov["checkpoint_sha256"] == ax.KNOWN_CHECKPOINT_SHA256 and prov["weights"] == "sfx-pretrained"
    assert prov["license"] == "CC-BY-4.0" and "Ma" in prov["attribution"] and "Lerch" in prov["attribution"]
    lic = open(os.path.join(d, "LICENSE")).read()
    assert "Attribution 4.0 International" in lic and "A.B. Ma and A. Lerch" in lic


@case
def official_name_with_wrong_sha256_is_refused():
    """A file named like an official PANNs checkpoint must be the official file: a seeded stand-in
    under that name is refused with the fix spelled out, and converts with --no-verify."""
    sd = mc.make_state_dict("Cnn14_16k", seed=5, calibrate=False)
    for official in ("Cnn14_mAP=0.431.pth", "Cnn14_16k_mAP=0.438.pth"):
        assert official in cp.OFFICIAL_SHA256
    path = os.path.join(TMP, "Cnn14_16k_mAP=0.438.pth")
    mc.save_zip(path, sd, {})
    msg = expect_refusal(path, None, "e2ee543a27919542c2ea03eabaa70b24dcd4e6c8e05621de6b67a94e4c5058e6",
                         "zenodo.org/record/3987831", "--no-verify")
    assert cp.sha256_file(path) in msg
    card, _ = cp.convert(path, os.path.join(TMP, "noverify"), verify=False)
    assert card["architecture"] == "Cnn14_16k"
    assert cp.main([path, os.path.join(TMP, "cli-refused")]) == 2


if __name__ == "__main__":
    failed = [(n, tb) for n, tb in RESULTS if tb]
    for n, tb in RESULTS:
        print(f"{'FAIL' if tb else 'ok  '} {n}")
        if tb:
            print(tb)
    print(f"{len(RESULTS) - len(failed)}/{len(RESULTS)} passed")
    shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(1 if failed else 0)
