"""Deployment exports: parity per format, the model card's lineage, manifest and verify, atomicity,
and the bad-input errors. One tiny run (small_cnn, random init, 32 px, 3 epochs) and one export
are shared by the module; tests that damage an export work on a copy."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from support import fast_config
from tlzoo.cli.main import main
from tlzoo.deploy import export as E
from tlzoo.deploy import formats
from tlzoo.deploy.formats import FP16_BOUNDS, INT8_BOUNDS, INT8_FULL_BOUNDS
from tlzoo.errors import ConfigError, ExportError, IntegrityError, ParityError

FORMATS = ["savedmodel", "onnx", "tflite", "tflite_int8", "tflite_fp16", "tflite_int8_full"]
TFLITE = ["tflite", "tflite_int8", "tflite_fp16", "tflite_int8_full"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from tlzoo.data.synthetic import write_opacity_npz
    from tlzoo.train.recipe import adapt

    root = tmp_path_factory.mktemp("export_run")
    data = write_opacity_npz(root / "scans.npz", n_train=96, n_val=48, n_test=64, size=32, contrast=60)
    # small_cnn, not mobilenet_025: from random init (frozen BatchNorm = identity) mobilenet_025's signal
    # vanishes and it predicts one constant, against which any parity check would pass vacuously.
    # calibration="none": a temperature fitted to this barely-trained model squeezes its outputs towards
    # 0.5; the calibration layer's own export parity is tested in test_calibration.py.
    adapt(fast_config(data=str(data), out=str(root / "run"), label_fraction=0.5, backbone="small_cnn",
                      calibration="none",
                      schedule={"stages": [{"name": "head", "epochs": 1, "trainable": 0, "learning_rate": 1e-2},
                                           {"name": "all", "epochs": 2, "trainable": "all", "learning_rate": 3e-3,
                                            "lr_decay": 0.8}]}))
    probs = np.load(root / "run" / "test_predictions.npz")["probs"]
    assert probs.std() > 1e-3, "the test model must depend on its input for parity to mean anything"
    return root / "run"


@pytest.fixture(scope="module")
def exported(run_dir) -> "E.ExportResult":
    return E.export(run_dir, formats=FORMATS, out=run_dir.parent / "export", verbose=0)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _no_leftovers(parent: Path) -> None:
    assert not [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


# ---------------------------------------------------------------- parity and contents


def test_every_format_matches_keras(exported, run_dir):
    out = exported.out
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"model.onnx", "model.tflite", "model_int8.tflite", "saved_model/saved_model.pb", "export.json",
            "model_card.json", "model_card.md", "manifest.json", E.SAMPLE_INPUTS, E.SAMPLE_OUTPUTS} <= names
    for fmt in ("savedmodel", "onnx", "tflite"):
        s = exported.parity[fmt]
        assert s["passed"] and s["max_abs_diff"] <= 1e-4 and s["agreement"] == 1.0, (fmt, s)
        # held-out images (the whole 64-image test split here), a batch of one, the run's batch size
        assert {c: v["n"] for c, v in s["cases"].items()} == {"heldout_64": 64, "borderline_32": 32, "batch_1": 1,
                                                            "largest_batch_32": 32}
    assert exported.parity["tflite_int8"]["passed"]
    assert exported.parity["tflite_int8"]["bounds"] == INT8_BOUNDS

    # The contract: raw uint8 [batch, H, W, C] of any size in, probabilities + int64 label out.
    info = json.loads((out / "export.json").read_text())
    contract_input = info["contract"]["input"]
    assert {k: contract_input[k] for k in ("name", "dtype", "shape", "model_shape")} == {
        "name": "image", "dtype": "uint8", "shape": [None, None, None, None], "model_shape": [None, 32, 32, 1]}
    assert info["tlzoo_version"] == "0.1.0" and info["formats"]["onnx"]["opset"] == E.DEFAULT_OPSET

    # Test metrics recomputed from ONNX Runtime equal the run's.
    run_auc = json.loads((run_dir / "metrics.json").read_text())["test"]["roc_auc"]
    assert exported.test_metrics["onnx"]["roc_auc"] == pytest.approx(run_auc, abs=1e-6)

    # The ONNX graph: named outputs, a dynamic batch dimension, the chosen opset.
    import onnx

    proto = onnx.load(str(out / "model.onnx"))
    assert [o.name for o in proto.graph.output] == ["label", "probabilities"]
    assert [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim] == [
        "batch", "height", "width", "channels"]
    assert any(o.version == E.DEFAULT_OPSET for o in proto.opset_import if o.domain in ("", "ai.onnx"))

    # Manifest lists every file; verify passes.
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == names - {"manifest.json"}
    report = E.verify(out)
    assert report["hashes"] == "ok" and all(s["passed"] for s in report["parity"].values())


def test_runners_agree_on_the_stored_samples(exported):
    x = np.load(exported.out / E.SAMPLE_INPUTS)
    ref = np.load(exported.out / E.SAMPLE_OUTPUTS)["probabilities"]
    # 16 random test images and the 16 nearest the threshold
    assert x.dtype == np.uint8 and x.shape == (32, 32, 32, 1)
    for fmt in ("savedmodel", "onnx", "tflite"):
        out = E.load_export(exported.out, fmt)(x)
        assert out["label"].dtype == np.int64 and out["label"].shape == (32,)
        np.testing.assert_allclose(out["probabilities"], ref, atol=1e-4)
        np.testing.assert_array_equal(out["label"], (ref[:, 0] >= 0.5).astype(np.int64))


def test_export_and_verify_through_the_cli(run_dir, exported, tmp_path, capsys):
    out = tmp_path / "onnx-only"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out), "--opset", "15",
                 "--no-test-metrics"]) == 0
    printed = capsys.readouterr().out
    assert "onnx" in printed and "max abs diff" in printed and str(out) in printed
    assert json.loads((out / "export.json").read_text())["formats"]["onnx"]["opset"] == 15
    assert main(["verify", str(exported.out)]) == 0
    printed = capsys.readouterr().out
    assert "files match manifest.json" in printed and "verified" in printed and "tflite_int8" in printed


def test_savedmodel_serves_without_tlzoo_or_keras(exported):
    code = f"""
import sys
BLOCKED = ("keras", "tf_keras", "tlzoo")
class Hide:  # make keras and tlzoo unimportable, as on a serving machine without them
    def __init__(self, inner): self.inner = inner
    def find_spec(self, name, path=None, target=None):
        return None if name.split(".")[0] in BLOCKED else self.inner.find_spec(name, path, target)
    def __getattr__(self, attr): return getattr(self.inner, attr)
sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
import numpy as np, tensorflow as tf
root = {str(exported.out)!r}
x = np.load(root + "/{E.SAMPLE_INPUTS}")
ref = np.load(root + "/{E.SAMPLE_OUTPUTS}")["probabilities"]
serve = tf.saved_model.load(root + "/saved_model").signatures["serving_default"]
out = serve(image=tf.constant(x))
assert out["probabilities"].dtype == tf.float32 and out["label"].dtype == tf.int64
assert np.abs(out["probabilities"].numpy() - ref).max() <= 1e-4
assert serve(image=tf.constant(x[:1]))["probabilities"].shape == (1, 1)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not leaked, leaked
print("served", len(x))
"""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "served 32" in done.stdout


# ---------------------------------------------------------------- the model card


def test_model_card_records_the_lineage(exported, run_dir):
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    card = json.loads((exported.out / "model_card.json").read_text())
    lin = card["lineage"]
    assert lin["backbone"]["name"] == config["backbone"]["name"] == "small_cnn"
    assert lin["backbone"]["input_size"] == config["adapt"]["model"]["input_size"] == 32
    assert lin["weights"]["source"] == "random" and "not applicable" in lin["weights"]["licence"]
    assert lin["plugin"]["name"] == config["plugin"]["name"] == "medical-imaging"
    assert lin["plugin"]["version"] == "0.1.0" and lin["plugin"]["class"] == config["plugin"]["class"]
    assert lin["plugin"]["options"] == config["plugin"]["options"]
    stages = lin["freeze_schedule"]["stages"]
    assert [s["name"] for s in stages] == [s["name"] for s in config["schedule"]["stages"]] == ["head", "all"]
    assert [s["epochs_run"] for s in stages] == [1, 2]
    assert lin["freeze_schedule"]["kept"]["epoch"] == metrics["best_epoch"]
    data = lin["data"]
    assert data["fingerprint_sha256"] == config["data"]["fingerprint"] and data["fingerprint_matches_at_export"] is True
    for split in ("train", "val", "test"):
        assert data["splits"][split]["label_counts"] == config["data"][split]["per_class"]
        assert data["splits"][split]["n"] == config["data"][split]["n"]
    assert data["label_fraction"] == config["adapt"]["data"]["label_fraction"] == 0.5
    assert lin["seed"] == config["adapt"]["training"]["seed"] and lin["n_train"] == metrics["n_train"]
    assert card["test_metrics"] == metrics["test"]
    assert card["test_metrics_recomputed"]["onnx"]["roc_auc"] == pytest.approx(metrics["test"]["roc_auc"], abs=1e-6)
    assert set(card["parity"]) == set(FORMATS) and card["parity"]["onnx"]["max_abs_diff"] <= 1e-4
    assert card["environment"]["training"] == config["environment"]
    assert {"tensorflow", "keras", "tf2onnx", "onnxruntime", "numpy"} <= set(card["environment"]["export"])
    assert card["dates"]["exported"] and card["dates"]["run_finished"]
    assert "Not a medical device" in card["intended_use"] and len(card["limitations"]) >= 3
    md = (exported.out / "model_card.md").read_text()
    for text in ("## Intended use", "## Known limitations", "## Lineage", config["data"]["fingerprint"],
                 "### Freeze schedule as run", "## Parity with the Keras model", "small_cnn"):
        assert text in md


# ---------------------------------------------------------------- verify: damage is caught


def test_verify_catches_a_perturbed_artefact(exported, tmp_path):
    """Hashes re-written to match: only the re-run parity can tell."""
    import onnx
    from onnx import numpy_helper

    out = _copy(exported.out, tmp_path / "export")
    proto = onnx.load(str(out / "model.onnx"))
    # The head's bias: the initializer added just before the sigmoid. Shift the logit by 0.5.
    sigmoid = next(n for n in proto.graph.node if n.op_type == "Sigmoid")
    add = next(n for n in proto.graph.node if sigmoid.input[0] in n.output)
    target = next(t for t in proto.graph.initializer if t.name in add.input)
    bias = numpy_helper.to_array(target)
    target.CopyFrom(numpy_helper.from_array((bias + 0.5).astype(bias.dtype), target.name))
    onnx.save(proto, str(out / "model.onnx"))
    E.write_manifest(out)
    with pytest.raises(ParityError, match=r"onnx differs from the stored Keras outputs"):
        E.verify(out)
    assert main(["verify", str(out)]) == 2


def test_hash_mismatch_is_refused(exported, tmp_path, capsys):
    out = _copy(exported.out, tmp_path / "export")
    blob = bytearray((out / "model.tflite").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (out / "model.tflite").write_bytes(bytes(blob))
    with pytest.raises(IntegrityError, match=r"sha256 mismatch: model\.tflite"):
        E.verify(out)
    with pytest.raises(IntegrityError, match="refusing"):
        E.load_export(out, "tflite")
    assert main(["verify", str(out), "--hashes-only"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tlzoo: error:") and "model.tflite" in err and len(err.strip().splitlines()) == 1
    (out / "extra.txt").write_text("not exported")
    (out / "model.tflite").write_bytes((exported.out / "model.tflite").read_bytes())
    with pytest.raises(IntegrityError, match=r"not in the manifest: extra\.txt"):
        E.verify(out, parity=False)


# ---------------------------------------------------------------- atomicity


def test_interrupted_export_leaves_nothing(run_dir, tmp_path, monkeypatch):
    out = tmp_path / "export"

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash while converting to TFLite")

    monkeypatch.setattr(formats.tflite, "export_tflite", crash)  # after the SavedModel and ONNX files were written
    with pytest.raises(RuntimeError, match="simulated crash"):
        E.export(run_dir, formats=["savedmodel", "onnx", "tflite"], out=out, verbose=0, test_metrics=False)
    assert not out.exists()
    _no_leftovers(tmp_path)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(E, "write_manifest", interrupt)  # the very last step
    with pytest.raises(KeyboardInterrupt):
        E.export(run_dir, formats=["savedmodel"], out=out, verbose=0, test_metrics=False)
    assert not out.exists()
    _no_leftovers(tmp_path)


def test_parity_failure_fails_the_export(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "FLOAT32_BOUNDS", {"max_abs_diff": -1.0})  # no artefact can meet it
    out = tmp_path / "export"
    with pytest.raises(ParityError, match=r"savedmodel differs from Keras: max abs diff .* > bound -1"):
        E.export(run_dir, formats=["savedmodel"], out=out, verbose=0, test_metrics=False)
    assert not out.exists()
    _no_leftovers(tmp_path)


def test_a_killed_export_does_not_look_complete(exported, tmp_path):
    """A process killed mid-export leaves only a hidden temporary folder without manifest.json."""
    leftover = _copy(exported.out, tmp_path / ".export.tmp-abc123")
    (leftover / "manifest.json").unlink()
    with pytest.raises(IntegrityError, match="no manifest.json: not a complete tlzoo export"):
        E.verify(leftover)
    with pytest.raises(IntegrityError, match="no manifest.json"):
        E.load_export(leftover, "onnx")


# ---------------------------------------------------------------- bad input


def test_bad_input_errors(run_dir, exported, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"unknown export format 'coreml'; choose from savedmodel, onnx, tflite"):
        E.export(run_dir, formats=["onnx", "coreml"], out=tmp_path / "x")
    assert main(["export", str(run_dir), "--format", "coreml", "--out", str(tmp_path / "x")]) == 2
    assert "unknown export format 'coreml'" in capsys.readouterr().err

    with pytest.raises(ConfigError, match=r"output directory .* exists; pass --overwrite"):
        E.export(run_dir, formats=["onnx"], out=exported.out)
    assert main(["export", str(run_dir), "--out", str(exported.out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="opset"):
        E.export(run_dir, formats=["onnx"], out=tmp_path / "x", opset=99)

    incomplete = _copy(run_dir, tmp_path / "incomplete")
    (incomplete / "model.keras").unlink()
    with pytest.raises(ConfigError, match=r"not a complete tlzoo run directory: model\.keras missing"):
        E.export(incomplete, out=tmp_path / "x")
    with pytest.raises(ConfigError, match="does not exist"):
        E.export(tmp_path / "nowhere", out=tmp_path / "x")

    foreign = _copy(run_dir, tmp_path / "foreign")
    config = yaml.safe_load((foreign / "config.yaml").read_text())
    config["environment"]["tlzoo"] = "0.7.2"
    (foreign / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(ConfigError, match=r"written by tlzoo 0\.7\.2, this is tlzoo 0\.1\.0"):
        E.export(foreign, out=tmp_path / "x")
    assert main(["export", str(foreign), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "major.minor differ" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_a_layer_tf2onnx_cannot_convert_is_named(run_dir, tmp_path):
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="tlzoo_test")
    class LogGamma(keras.layers.Layer):
        def call(self, x):
            return tf.math.exp(-tf.math.lgamma(1.0 + x))  # Lgamma has no ONNX conversion in tf2onnx

    bad = _copy(run_dir, tmp_path / "run")
    model = keras.saving.load_model(bad / "model.keras", compile=False)
    outputs = LogGamma(name="log_gamma")(model.outputs[0])
    keras.Model(model.inputs, outputs, name=model.name).save(bad / "model.keras")
    out = tmp_path / "export"
    with pytest.raises(ExportError, match=r"tf2onnx cannot convert model .*Lgamma"):
        E.export(bad, formats=["savedmodel", "onnx"], out=out, verbose=0, test_metrics=False)
    assert not out.exists()
    _no_leftovers(tmp_path)


# ---------------------------------------------------------------- quantised TFLite, metadata, output names


def _interpreter(path: Path):
    from tlzoo.deploy.formats.tflite import tflite_interpreter_class

    return tflite_interpreter_class()[0](model_path=str(path))


def test_quantised_tflite_formats(exported):
    info = json.loads((exported.out / "export.json").read_text())
    sizes = {f: info["formats"][f]["bytes"] for f in TFLITE}
    assert info["formats"]["tflite_fp16"]["path"] == "model_fp16.tflite"
    assert info["formats"]["tflite_int8_full"]["path"] == "model_int8_full.tflite"
    for fmt, bounds in (("tflite_fp16", FP16_BOUNDS), ("tflite_int8_full", INT8_FULL_BOUNDS),
                        ("tflite_int8", INT8_BOUNDS)):
        s = exported.parity[fmt]
        assert s["passed"] and s["bounds"] == bounds and s["agreement"] >= bounds["min_agreement"], (fmt, s)
        assert exported.test_metrics[fmt]["roc_auc"] > 0.5, (fmt, exported.test_metrics[fmt])
    # float16 weights: smaller than float32, near it in value; full int8: int8 tensors inside, calibrated on
    # the training split (96 images, half of their labels kept: 48 < 128)
    assert sizes["tflite_fp16"] < 0.75 * sizes["tflite"]
    assert exported.parity["tflite_fp16"]["max_abs_diff"] < exported.parity["tflite_int8_full"]["max_abs_diff"]
    assert info["formats"]["tflite_int8_full"]["representative_samples"] == 48
    assert "int8 full-integer" in info["formats"]["tflite_int8_full"]["precision"]
    dtypes = {f: {np.dtype(t["dtype"]).name for t in _interpreter(exported.out / info["formats"][f]["path"])
                  .get_tensor_details()} for f in ("tflite_fp16", "tflite_int8_full")}
    assert "float16" in dtypes["tflite_fp16"] and "int8" in dtypes["tflite_int8_full"]

    # The contract holds for every variant: uint8 of another size and channel count in, float32 / int64 out.
    x = np.random.default_rng(0).integers(0, 256, (3, 40, 44, 3), dtype=np.uint8)
    ref = E.load_export(exported.out, "savedmodel")(x)
    for fmt in ("tflite_fp16", "tflite_int8_full"):
        runner = E.load_export(exported.out, fmt)
        inputs = runner.runner.get_input_details()
        assert inputs["image"]["dtype"] == np.uint8 and list(inputs["image"]["shape_signature"]) == [-1, -1, -1, -1]
        out = runner(x)
        assert out["probabilities"].dtype == np.float32 and out["probabilities"].shape == (3, 1)
        assert out["label"].dtype == np.int64 and out["label"].shape == (3,)
        assert np.abs(out["probabilities"] - ref["probabilities"]).max() <= INT8_FULL_BOUNDS["max_abs_diff"]


def test_metadata_inside_every_format(exported):
    """Class names and the contract, readable without tlzoo: SavedModel assets, TFLite associated files."""
    import zipfile

    import tensorflow as tf

    info = json.loads((exported.out / "export.json").read_text())
    labels = "clear\nopacity\n"
    assert info["contract"]["class_names"] == ["clear", "opacity"]
    assets = exported.out / "saved_model" / "assets"
    assert (assets / "labels.txt").read_text() == labels
    assert json.loads((assets / "tlzoo_contract.json").read_text()) == info["contract"]
    loaded = tf.saved_model.load(str(exported.out / "saved_model"))  # tracked by the graph's objects
    assert Path(loaded.labels_file.asset_path.numpy().decode()).read_text() == labels
    assert json.loads(Path(loaded.contract_file.asset_path.numpy().decode()).read_text()) == info["contract"]
    for fmt in TFLITE:
        path = exported.out / info["formats"][fmt]["path"]
        with zipfile.ZipFile(path) as archive:  # appended after the flatbuffer, as tflite-support writes them
            assert sorted(archive.namelist()) == ["labels.txt", "tlzoo_contract.json"]
            assert archive.read("labels.txt").decode() == labels
            assert json.loads(archive.read("tlzoo_contract.json")) == info["contract"]
        assert exported.parity[fmt]["passed"]  # the interpreter loaded and ran the file with the archive


def test_tflite_outputs_are_named_by_index(exported):
    """export.json maps every index of get_output_details() to its signature name; the raw interpreter's
    outputs read through that map equal the signature runner's."""
    info = json.loads((exported.out / "export.json").read_text())
    x = np.load(exported.out / E.SAMPLE_INPUTS)[:4]
    for fmt in TFLITE:
        outputs = info["formats"][fmt]["outputs"]
        assert sorted(o["name"] for o in outputs) == ["label", "probabilities"], (fmt, outputs)
        # TensorFlow numbers the signature's outputs in sorted name order
        assert {o["name"]: o["tensor"] for o in outputs} == {"label": "StatefulPartitionedCall:0",
                                                             "probabilities": "StatefulPartitionedCall:1"}
        interpreter = _interpreter(exported.out / info["formats"][fmt]["path"])
        by_signature = interpreter.get_signature_runner("serving_default")(image=x)
        details = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(details["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(details["index"], x)
        interpreter.invoke()
        for i, d in enumerate(interpreter.get_output_details()):
            assert d["name"] == outputs[i]["tensor"]
            np.testing.assert_array_equal(interpreter.get_tensor(d["index"]), by_signature[outputs[i]["name"]])


def test_quantised_export_failures(run_dir, tmp_path, monkeypatch):
    # Full int8 is not float32 in disguise: held to the float32 bound, it fails, and nothing is written.
    monkeypatch.setattr(formats, "INT8_FULL_BOUNDS", dict(formats.FLOAT32_BOUNDS))
    out = tmp_path / "export"
    with pytest.raises(ParityError, match=r"tflite_int8_full differs from Keras: max abs diff .* > bound 0\.0001"):
        E.export(run_dir, formats=["tflite_int8_full"], out=out, verbose=0, test_metrics=False)
    assert not out.exists()
    _no_leftovers(tmp_path)
    monkeypatch.undo()

    # Without representative samples the conversion is refused before it starts.
    with pytest.raises(ExportError, match=r"tflite_int8_full needs representative training samples"):
        formats.tflite.export_tflite(tmp_path / "no_saved_model", tmp_path / "m.tflite",
                                     formats.ExportFormat.TFLITE_INT8_FULL, None, {})

    # An op without an int8 kernel: the conversion falls back to float32 kernels for it, and says so.
    convert = formats.tflite._convert

    def no_int8_kernel(*args, int8_only=True, **kwargs):
        if int8_only:
            raise ExportError("the TFLite converter cannot convert this model (tflite_int8_full): "
                              "'tfl.lgamma' op has no int8 kernel")
        return convert(*args, int8_only=False, **kwargs)

    monkeypatch.setattr(formats.tflite, "_convert", no_int8_kernel)
    result = E.export(run_dir, formats=["tflite_int8_full"], out=out, verbose=0, test_metrics=False)
    precision = json.loads((out / "export.json").read_text())["formats"]["tflite_int8_full"]["precision"]
    assert precision.endswith("float32 kernels for the ops without an int8 one "
                              "(int8 alone: 'tfl.lgamma' op has no int8 kernel)"), precision
    assert result.parity["tflite_int8_full"]["passed"]
    assert result.card["artefacts"]["tflite_int8_full"]["precision"] == precision
