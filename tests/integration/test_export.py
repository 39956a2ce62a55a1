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
from tlzoo.errors import ConfigError, DataError, ExportError, IntegrityError, ParityError

FORMATS = ["savedmodel", "onnx", "tflite", "tflite_int8", "tflite_fp16", "tflite_int8_full", "openvino"]
FLOAT_FORMATS = ["savedmodel", "onnx", "tflite", "openvino"]
TFLITE = ["tflite", "tflite_int8", "tflite_fp16", "tflite_int8_full"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from tlzoo.data.synthetic import write_opacity_npz
    from tlzoo.train.recipe import adapt

    root = tmp_path_factory.mktemp("export_run")
    data = write_opacity_npz(root / "scans.npz", n_train=96, n_val=48, n_test=64, size=32, contrast=60)
    # small_cnn, not mobilenet_025: from random init (frozen BatchNorm = identity) mobilenet_025's signal
    # vanishes and it predicts one constant, against which any parity check would pass vacuously. Four epochs
    # of the whole network: with BatchNorm statistics that match its weights, fewer leave its outputs within
    # 1e-4 of each other. calibration="none": the calibration layer's export parity is tested in
    # test_calibration.py.
    adapt(fast_config(data=str(data), out=str(root / "run"), label_fraction=0.5, backbone="small_cnn",
                      calibration="none",
                      schedule={"stages": [{"name": "head", "epochs": 1, "trainable": 0, "learning_rate": 1e-2},
                                           {"name": "all", "epochs": 4, "trainable": "all", "learning_rate": 3e-3,
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
    assert {"model.onnx", "model.tflite", "model_int8.tflite", "saved_model/saved_model.pb", "openvino/model.xml",
            "openvino/model.bin", "export.json", "model_card.json", "model_card.md", "manifest.json",
            E.SAMPLE_INPUTS, E.SAMPLE_OUTPUTS} <= names
    for fmt in FLOAT_FORMATS:
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
    for fmt in FLOAT_FORMATS:
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


def _camera_files(exported, folder: Path) -> list[Path]:
    """Test images as users send them: camera-size RGB and gray JPEGs, a portrait one, an RGBA PNG."""
    from PIL import Image

    x = np.load(exported.out / E.SAMPLE_INPUTS)[:, :, :, 0]
    p = np.load(exported.out / E.SAMPLE_OUTPUTS)["probabilities"][:, 0]
    # three of each label, the clearest ones (a camera-size resample moves a borderline one across)
    pick = [*np.argsort(-p)[:3], *np.argsort(p)[:3]]
    x = x[[pick[i] for i in (0, 3, 1, 4, 2, 5)]]
    kinds = [("rgb.jpg", (1600, 1200), "RGB"), ("gray.jpg", (1024, 768), "L"), ("portrait.jpg", (720, 1280), "RGB"),
             ("rgba.png", (640, 480), "RGBA"), ("rgb2.jpg", (1920, 1080), "RGB"), ("gray2.png", (800, 600), "L")]
    files = []
    for k, (name, size, mode) in enumerate(kinds):
        img = Image.fromarray(x[k]).resize(size, Image.BILINEAR).convert(mode)
        img.save(folder / name, quality=95) if name.endswith(".jpg") else img.save(folder / name)
        files.append(folder / name)
    return files


def test_every_format_serves_camera_images_without_tlzoo_or_keras(exported, run_dir, tmp_path):
    """Each format runs in a fresh process with only its runtime (keras and tlzoo unimportable), on
    camera-size JPEGs of any size, gray or RGB, and gives the labels the Keras model gives."""
    from PIL import Image

    files = _camera_files(exported, tmp_path)
    script = Path(__file__).parents[1] / "standalone_runtime.py"
    done = subprocess.run([sys.executable, str(script), str(exported.out), *map(str, files)], capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(served) == set(exported.formats)
    from tlzoo.deploy.contract import Contract

    keras = E.KerasRunner(E._open_run(run_dir).model, Contract.from_dict(E._read_export_info(exported.out)["contract"]))
    labels = {}
    for f in files:
        a = np.asarray(Image.open(f))
        ref = keras((a[..., None] if a.ndim == 2 else a)[None])
        for fmt, outputs in served.items():
            out = {k: np.asarray(v) for k, v in outputs[str(f)].items()}
            labels.setdefault(fmt, []).append(int(out["label"][0]))
            if fmt in FLOAT_FORMATS:  # quantised formats may move a label: their agreement has measured bounds
                np.testing.assert_array_equal(out["label"], ref["label"], err_msg=f"{fmt} on {f.name}")
            np.testing.assert_array_equal(out["label"], (out["probabilities"][:, 0] >= 0.5).astype(int))
            bound = formats.ExportFormat(fmt).bounds["max_abs_diff"]
            np.testing.assert_allclose(out["probabilities"], ref["probabilities"], atol=bound, err_msg=fmt + f.name)
    print("labels per format:", labels)
    served_p = [float(np.ravel(served["onnx"][str(f)]["probabilities"])[0]) for f in files]
    assert np.std(served_p) > 1e-3, f"the images must get different outputs for the comparison to count: {served_p}"


def test_inputs_are_checked_and_an_empty_batch_changes_nothing(exported):
    from tlzoo.errors import DataError

    x = np.load(exported.out / E.SAMPLE_INPUTS)
    for fmt in exported.formats:
        runner = E.load_export(exported.out, fmt)
        before = runner(x[:4])
        empty = runner(x[:0])
        assert {k: v.shape for k, v in empty.items()} == {"probabilities": (0, 1), "label": (0,)}, fmt
        assert empty["label"].dtype == np.int64
        after = runner(x[:4])  # the runner is unchanged by the empty call
        np.testing.assert_array_equal(after["probabilities"], before["probabilities"])
        # a gray batch without a channel axis, as MedMNIST stores it; RGB of another size; RGBA. Full-integer
        # TFLite computes the RGB -> gray luma in int8 too: a pixel may land one level off, the output one step.
        tol = 1e-5 if fmt in FLOAT_FORMATS else 2 / 256
        np.testing.assert_allclose(runner(x[:4, :, :, 0])["probabilities"], before["probabilities"], atol=1e-6)
        rgb = np.repeat(x[:4], 3, axis=-1)
        np.testing.assert_allclose(runner(rgb)["probabilities"], before["probabilities"], atol=tol, err_msg=fmt)
        rgba = np.concatenate([rgb, np.full_like(x[:4], 255)], axis=-1)
        np.testing.assert_allclose(runner(rgba)["probabilities"], before["probabilities"], atol=tol, err_msg=fmt)
        assert runner(np.zeros((2, 64, 48, 3), np.uint8))["probabilities"].shape == (2, 1)
        with pytest.raises(DataError, match="uint8 pixels .* got dtype float32"):
            runner(x[:2].astype(np.float32))
        with pytest.raises(DataError, match=r"got an array of shape \[2, 32, 32, 5\]"):
            runner(np.zeros((2, 32, 32, 5), np.uint8))
        with pytest.raises(DataError, match="within 0-255; got int64 values from -1"):
            runner(np.full((1, 8, 8, 1), -1, np.int64))
        np.testing.assert_array_equal(runner(x[:4])["label"], before["label"])
        if fmt.startswith("tflite"):  # a runtime failure (e.g. a delegate that cannot reshape) rebuilds it
            def fail(**_):
                raise RuntimeError("delegate failed to reshape")

            runner.runner = fail
            with pytest.raises(ExportError, match="LiteRT failed on a batch of shape \\[4, 32, 32, 1\\]"):
                runner(x[:4])
            np.testing.assert_array_equal(runner(x[:4])["probabilities"], before["probabilities"])


def test_a_moved_threshold_fails_verify(exported, tmp_path):
    """The threshold constant inside the ONNX graph edited (0.5 -> a value past some stored samples'
    probabilities) and the manifest re-hashed: those samples change label, and verify fails on labels."""
    import onnx
    from onnx import numpy_helper

    out = _copy(exported.out, tmp_path / "tampered")
    with np.load(out / E.SAMPLE_OUTPUTS) as stored:
        p = stored["probabilities"][:, 0]
    # the new threshold sits between the stored probabilities nearest 0.5 on one side, so >= 1 label flips
    above, below = p[p >= 0.5], p[p < 0.5]
    moved_to = float(above.min() + 1e-3) if len(above) else float(below.max() - 1e-3)
    assert ((p >= moved_to) != (p >= 0.5)).any()
    proto = onnx.load(str(out / "model.onnx"))
    moved = 0
    for init in proto.graph.initializer:
        value = numpy_helper.to_array(init)
        if value.size == 1 and value.dtype == np.float32 and value.item() == 0.5:
            init.CopyFrom(numpy_helper.from_array(np.array(moved_to, np.float32).reshape(value.shape), init.name))
            moved += 1
    for node in proto.graph.node:  # a threshold folded into a Constant node
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.name == "value":
                value = numpy_helper.to_array(attr.t)
                if value.size == 1 and value.dtype == np.float32 and value.item() == 0.5:
                    attr.t.CopyFrom(numpy_helper.from_array(np.array(moved_to, np.float32).reshape(value.shape)))
                    moved += 1
    assert moved == 1, moved
    onnx.save(proto, str(out / "model.onnx"))
    E.write_manifest(out)  # re-hashed: the hashes alone cannot tell
    assert E.verify(out, parity=False)["hashes"] == "ok"
    with pytest.raises(ParityError, match=r"onnx differs from the stored Keras outputs: label agreement [\d.]+% < 100"):
        E.verify(out)


def test_openvino_ir_keeps_the_contract(exported):
    import openvino as ov

    out = exported.out
    info = json.loads((out / "export.json").read_text())
    entry = info["formats"]["openvino"]
    assert entry["path"] == "openvino" and entry["precision"] == "float32"
    assert entry["bytes"] == sum(p.stat().st_size for p in (out / "openvino").iterdir())
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    assert {"openvino/model.xml", "openvino/model.bin"} <= set(manifest)

    # A deployment engineer reading model.xml alone: the input, the named outputs, the contract.
    model = ov.Core().read_model(str(out / "openvino" / "model.xml"))
    [image] = model.inputs
    assert image.get_any_name() == "image" and image.get_element_type() == ov.Type.u8
    assert str(image.get_partial_shape()) == "[?,?,?,?]"
    assert {o.get_any_name(): o.get_element_type() for o in model.outputs} == {
        "probabilities": ov.Type.f32, "label": ov.Type.i64}
    rt = model.get_rt_info()
    assert json.loads(rt["tlzoo"]["contract"].astype(str)) == info["contract"]
    assert json.loads(rt["tlzoo"]["class_names"].astype(str)) == info["contract"]["class_names"]
    assert rt["tlzoo"]["version"].astype(str) == "0.1.0"
    assert rt["tlzoo"]["converted_from"].astype(str) == "savedmodel serving_default"
    assert "conversion_parameters" not in rt  # it named the temporary SavedModel path
    xml = (out / "openvino" / "model.xml").read_text()
    assert 'element_type="f16"' not in xml  # float32 weights, not OpenVINO's default fp16 compression

    # RGB images of another size, resized and made gray inside the graph: the SavedModel's labels.
    x = np.load(out / E.SAMPLE_INPUTS)  # the 32 stored samples, stretched to 64x48 and made RGB
    rgb = x[:, np.arange(64) * 32 // 64][:, :, np.arange(48) * 32 // 48].repeat(3, axis=-1)
    assert rgb.shape == (32, 64, 48, 3) and rgb.dtype == np.uint8
    runner = E.load_export(out, "openvino", num_threads=1)
    got, want = runner(rgb), E.load_export(out, "savedmodel")(rgb)
    assert got["label"].dtype == np.int64 and got["label"].shape == (32,)
    np.testing.assert_array_equal(got["label"], want["label"])
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-4)
    assert np.ptp(want["probabilities"]) > 1e-3, "the outputs must depend on the images for the check to mean anything"

    # OpenVINO itself would take a float batch for the uint8 input; the runner refuses it.
    with pytest.raises(DataError, match=r"uint8 pixels \(0-255\); got dtype float32"):
        runner(rgb.astype(np.float32) / 255)
    empty = runner(np.zeros((0, 32, 32, 1), np.uint8))
    assert empty["probabilities"].shape == (0, 1) and empty["label"].dtype == np.int64


def test_openvino_falls_back_to_onnx(run_dir, exported, tmp_path, monkeypatch):
    """A model OpenVINO's TensorFlow frontend cannot read is converted from ONNX (written to the side when
    the export has none); when neither converts, one error names both failures."""
    import openvino as ov

    from tlzoo.deploy.contract import Contract
    from tlzoo.deploy.formats.openvino import export_openvino

    convert = ov.convert_model

    def no_savedmodel(source, **kwargs):
        if not str(source).endswith(".onnx"):
            raise RuntimeError("simulated: the TensorFlow frontend cannot read this SavedModel")
        return convert(source, **kwargs)

    monkeypatch.setattr(ov, "convert_model", no_savedmodel)
    out = tmp_path / "export"
    result = E.export(run_dir, formats=["openvino"], out=out, verbose=0, test_metrics=False)
    s = result.parity["openvino"]
    assert s["passed"] and s["max_abs_diff"] <= 1e-4 and s["agreement"] == 1.0
    model = ov.Core().read_model(str(out / "openvino" / "model.xml"))
    assert model.get_rt_info()["tlzoo"]["converted_from"].astype(str) == "onnx"
    assert str(model.inputs[0].get_partial_shape()) == "[?,?,?,?]"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "export.json", "manifest.json", "model_card.json", "model_card.md", "openvino/model.bin",
        "openvino/model.xml", E.SAMPLE_INPUTS, E.SAMPLE_OUTPUTS]  # the SavedModel and ONNX converted from are gone

    def nothing(source, **kwargs):
        raise RuntimeError(f"simulated: cannot convert {Path(source).name}")

    monkeypatch.setattr(ov, "convert_model", nothing)
    contract = Contract.from_dict(json.loads((exported.out / "export.json").read_text())["contract"])
    with pytest.raises(ExportError, match=r"OpenVINO cannot convert this model: from the SavedModel RuntimeError: "
                                          r"simulated: cannot convert saved_model; from ONNX RuntimeError: "
                                          r"simulated: cannot convert model.onnx"):
        export_openvino(exported.out / "saved_model", lambda: exported.out / "model.onnx", contract,
                        tmp_path / "openvino")
    assert not (tmp_path / "openvino").exists()


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
    assert [s["epochs_run"] for s in stages] == [1, 4]
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


# ---------------------------------------------------------------- lineage, latency, threshold sentence


def test_lineage_hashes_the_run_files(exported, run_dir):
    import hashlib

    info = json.loads((exported.out / "export.json").read_text())
    assert (run_dir / "best.weights.h5").is_file()
    want = {name: {"sha256": hashlib.sha256((run_dir / name).read_bytes()).hexdigest(),
                   "bytes": (run_dir / name).stat().st_size} for name in ("model.keras", "best.weights.h5")}
    assert info["lineage"] == want
    card = json.loads((exported.out / "model_card.json").read_text())
    assert card["lineage"]["run_files"] == want
    md = (exported.out / "model_card.md").read_text()
    for name, entry in want.items():
        assert f"run file `{name}`: sha256 `{entry['sha256']}`" in md


def test_latency_is_measured_per_format(exported, capsys):
    info = json.loads((exported.out / "export.json").read_text())
    card = json.loads((exported.out / "model_card.json").read_text())
    md = (exported.out / "model_card.md").read_text()
    assert "## Latency measured at export" in md
    assert info["latency"]["threads"] >= 1 and info["latency"]["batch_sizes"] == [1, 32]
    for fmt in FORMATS:
        lat = info["formats"][fmt]["latency_ms"]
        assert lat["batch_1"] > 0 and lat["batch_32"] > 0, (fmt, lat)
        assert lat["per_image_batch_32"] == pytest.approx(lat["batch_32"] / 32, rel=1e-3)
        assert lat["threads"] == info["latency"]["threads"] and min(lat["repeats"].values()) >= 1
        assert card["latency_ms"][fmt] == lat
        assert any(line.startswith(f"| {fmt} | ") for line in md.splitlines()), fmt
        with capsys.disabled():
            print(f"\nlatency {fmt:12} batch 1 {lat['batch_1']:.3f} ms, batch 32 {lat['batch_32']:.3f} ms "
                  f"({lat['per_image_batch_32']:.4f} ms/image), {lat['threads']} thread(s)")


def test_card_states_how_the_threshold_was_set(exported, run_dir):
    from tlzoo.deploy.card import threshold_statement

    # The test run: the plugin's fixed 0.5, as metrics.json records it.
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["threshold_policy"] == 0.5
    card = json.loads((exported.out / "model_card.json").read_text())
    fixed = "The decision threshold 0.5 is a fixed value (the plugin's threshold option), not tuned on data."
    assert card["model"]["decision_rule"] == fixed and fixed in card["limitations"]
    assert card["model"]["decision_threshold_policy"] == 0.5
    md = (exported.out / "model_card.md").read_text()
    assert f"- {fixed}" in md and "chosen on the validation split" not in md and "fixed before export" not in md

    config = {"data": {"val": {"n": 48}}, "plugin": {"options": {"fp_budget": 0.02}}}
    binary = {"task": "binary", "num_outputs": 1, "threshold": 0.3127, "kind": "classifier"}

    def said(policy, contract=binary, metrics=None):
        return threshold_statement(config, metrics if metrics is not None else {"threshold_policy": policy}, contract)

    assert said(0.5) == said("0.5") == ("The decision threshold 0.3127 is a fixed value (the plugin's threshold "
                                        "option), not tuned on data.")
    chosen = "The decision threshold 0.3127 was chosen on the validation split (48 samples) "
    assert said("youden").startswith(chosen + "by Youden's J (the threshold maximising sensitivity + specificity")
    assert said("sensitivity:0.9").startswith(chosen + "as the highest threshold reaching sensitivity 0.9;")
    assert said("fpr:0.05").startswith(chosen + "as the lowest threshold keeping the false-positive rate within 0.05;")
    assert said("cost:5").startswith(chosen + "as the threshold minimising 5 x missed positives + false alarms")
    assert said("fp_budget").startswith(chosen + "as the lowest threshold keeping the false-positive rate within "
                                                 "the plugin's fp_budget (0.02)")
    assert "sampling error" in said("youden") and "sampling error" not in said(0.5)
    assert said(None, metrics={}) == "The run does not record how its decision threshold (0.3127) was set."
    assert said("argmax", {**binary, "task": "multiclass", "num_outputs": 3}).startswith(
        "The label is the class with the highest probability (argmax)")
    assert said("argmax", {**binary, "task": "multilabel", "num_outputs": 4, "threshold": 0.5}) == (
        "Each label is on when its probability is >= 0.5, a fixed threshold, not tuned on data.")
    # multi-task: one rule per task, each with its own policy and labelled validation count
    tasks = {"finding": {"task": "binary", "num_outputs": 1, "threshold": 0.41},
             "view": {"task": "multiclass", "num_outputs": 3, "threshold": 0.5}}
    multi = said(None, {**binary, "task": "multitask", "tasks": tasks},
                 {"threshold_policy": {"finding": "youden", "view": "argmax"}, "val": {"finding": {"n_labelled": 30}}})
    assert multi.startswith("Decision rules per task: finding: the decision threshold 0.41 was chosen on the "
                            "validation split (30 samples) by Youden's J")
    assert "; view: the label is the class with the highest probability (argmax)" in multi
    # anomaly detectors: the false-alarm budget on held-out normal images (metrics["val"] of the defect recipe)
    anomaly = {**binary, "kind": "anomaly", "threshold": 7.25}
    val = {"n": 100, "false_alarm_rate": 0.01, "threshold": 7.25, "max_false_alarm": 0.01}
    assert said(None, anomaly, {"threshold": 7.25, "val": val}).startswith(
        "The anomaly threshold (7.25 on the raw score) was set from a false-alarm budget: the lowest that flags "
        "at most 0.01 of the 100 held-out normal images (flagged on them: 0.01)")


# ---------------------------------------------------------------- serving layouts


def _triton_expected(onnx_path: Path) -> tuple[list[dict], list[dict]]:
    """What Triton's config must say of each graph tensor, read here from onnx.load on its own."""
    import onnx

    types = {onnx.TensorProto.UINT8: "TYPE_UINT8", onnx.TensorProto.FLOAT: "TYPE_FP32",
             onnx.TensorProto.INT64: "TYPE_INT64"}
    graph = onnx.load(str(onnx_path)).graph

    def spec(v):
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
        assert dims[0] == -1, f"{v.name}: the batch dimension must be dynamic"
        out = {"name": v.name, "data_type": types[v.type.tensor_type.elem_type], "dims": dims[1:] or [1]}
        return out | ({"reshape": []} if len(dims) == 1 else {})

    return [spec(v) for v in graph.input], [spec(v) for v in graph.output]


def test_triton_layout_config_matches_the_onnx_graph(run_dir, tmp_path, capsys):
    from tlzoo.deploy.layouts import read_triton_config

    out = tmp_path / "triton-export"
    assert main(["export", str(run_dir), "--format", "onnx", "--layout", "triton", "--model-version", "3",
                 "--out", str(out), "--no-test-metrics"]) == 0
    info = json.loads((out / "export.json").read_text())
    name = info["layout"]["model_name"]
    assert info["layout"] == {"name": "triton", "model_repository": "triton", "model_name": name,
                              "config": f"triton/{name}/config.pbtxt", "version": 3, "max_batch_size": 32}
    assert info["formats"]["onnx"]["path"] == f"triton/{name}/3/model.onnx"
    model_dir = out / "triton" / name
    assert sorted(p.name for p in model_dir.iterdir()) == ["3", "config.pbtxt"] and not (out / "model.onnx").exists()

    # config.pbtxt through protobuf's text-format parser (Triton's ModelConfig field names and numbers)
    config = read_triton_config((model_dir / "config.pbtxt").read_text())
    inputs, outputs = _triton_expected(model_dir / "3" / "model.onnx")
    assert config["name"] == name and config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == 32 and config["dynamic_batching"] is True
    assert config["input"] == inputs == [{"name": "image", "data_type": "TYPE_UINT8", "dims": [-1, -1, -1]}]
    assert config["output"] == outputs == [
        {"name": "label", "data_type": "TYPE_INT64", "dims": [1], "reshape": []},
        {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [1]}]
    with pytest.raises(IntegrityError, match='no field named "dimz"'):  # the parser is strict, as Triton's is
        read_triton_config((model_dir / "config.pbtxt").read_text().replace("dims:", "dimz:", 1))

    # verify and load_export read the artefact's path from export.json; verify re-checks the config
    report = E.verify(out)
    assert report["triton_config"] == "matches the ONNX graph" and report["parity"]["onnx"]["passed"]
    x = np.load(out / E.SAMPLE_INPUTS)
    ref = np.load(out / E.SAMPLE_OUTPUTS)["probabilities"]
    np.testing.assert_allclose(E.load_export(out, "onnx")(x)["probabilities"], ref, atol=1e-4)
    card = json.loads((out / "model_card.json").read_text())
    assert card["layout"]["name"] == "triton" and f"`triton/{name}/config.pbtxt`" in (out / "model_card.md").read_text()

    # a config edited (and the manifest re-hashed) no longer matches the graph
    edited = _copy(out, tmp_path / "edited")
    pbtxt = edited / "triton" / name / "config.pbtxt"
    pbtxt.write_text(pbtxt.read_text().replace("TYPE_FP32", "TYPE_FP16"))
    E.write_manifest(edited)
    with pytest.raises(IntegrityError, match=r"does not match .*model\.onnx.*outputs"):
        E.verify(edited)

    # a layout without its format is refused up front, as are a bad version and an unknown layout
    with pytest.raises(ConfigError, match=r"the triton layout serves the onnx format, which was not requested"):
        E.export(run_dir, formats=["savedmodel"], layout="triton", out=tmp_path / "x")
    with pytest.raises(ConfigError, match=r"the tf-serving layout serves the savedmodel format"):
        E.export(run_dir, formats=["onnx"], layout="tf-serving", out=tmp_path / "x")
    with pytest.raises(ConfigError, match=r"model version must be a positive integer .* got 0"):
        E.export(run_dir, formats=["onnx"], layout="triton", model_version=0, out=tmp_path / "x")
    with pytest.raises(ConfigError, match=r"unknown export layout 'kserve'"):
        E.export(run_dir, formats=["onnx"], layout="kserve", out=tmp_path / "x")
    capsys.readouterr()
    assert main(["export", str(run_dir), "--format", "tflite", "--layout", "triton", "--out", str(tmp_path / "x")]) == 2
    assert "which was not requested" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_tf_serving_layout_loads_and_serves(run_dir, tmp_path):
    import tensorflow as tf

    out = tmp_path / "tfs-export"
    E.export(run_dir, formats=["savedmodel"], layout="tf-serving", model_version=2, out=out, verbose=0,
             test_metrics=False)
    info = json.loads((out / "export.json").read_text())
    assert info["formats"]["savedmodel"]["path"] == "saved_model/2"
    assert info["layout"] == {"name": "tf-serving", "model_base_path": "saved_model", "version": 2}
    # TF Serving's base path holds only integer version folders, each a SavedModel
    assert [p.name for p in (out / "saved_model").iterdir()] == ["2"]
    assert (out / "saved_model" / "2" / "saved_model.pb").is_file()
    serve = tf.saved_model.load(str(out / "saved_model" / "2")).signatures["serving_default"]
    x = np.load(out / E.SAMPLE_INPUTS)
    ref = np.load(out / E.SAMPLE_OUTPUTS)["probabilities"]
    got = serve(image=tf.constant(x))
    np.testing.assert_allclose(got["probabilities"].numpy(), ref, atol=1e-4)
    assert got["label"].dtype == tf.int64 and got["label"].shape == (len(x),)
    assert E.verify(out)["parity"]["savedmodel"]["passed"]
    np.testing.assert_allclose(E.load_export(out, "savedmodel")(x)["probabilities"], ref, atol=1e-4)


# ---------------------------------------------------------------- signatures


def test_signed_export_refuses_tampering_and_other_keys(run_dir, exported, tmp_path, capsys):
    from tlzoo.deploy import signing

    keys = tmp_path / "keys"
    assert main(["keys", "generate", "--out", str(keys)]) == 0
    private, public = keys / "tlzoo_ed25519.pem", keys / "tlzoo_ed25519.pub.pem"
    assert "fingerprint: sha256" in capsys.readouterr().out
    assert private.stat().st_mode & 0o777 == 0o600
    assert main(["keys", "generate", "--out", str(keys)]) == 2  # never replaces a key
    assert "exist; choose another --out" in capsys.readouterr().err
    _, other_public = signing.generate_keys(tmp_path / "other")

    out = tmp_path / "signed"
    E.export(run_dir, formats=["onnx"], out=out, sign_key=private, verbose=0, test_metrics=False)
    sig = json.loads((out / "manifest.sig").read_text())
    info = json.loads((out / "export.json").read_text())
    fp = signing.fingerprint(signing.load_public_key(public))
    assert sig["algorithm"] == "ed25519" and sig["public_key_sha256"] == fp == info["signing"]["public_key_sha256"]
    assert f"key fingerprint sha256 `{fp}`" in (out / "model_card.md").read_text()
    assert "manifest.sig" not in json.loads((out / "manifest.json").read_text())["files"]
    report = E.verify(out, public_key=public)
    assert report["signature"] == {"algorithm": "ed25519", "public_key_sha256": fp, "valid": True}
    assert E.verify(out, parity=False)["signature"]["valid"] is None  # signed, but no key given: not checked
    assert E.load_export(out, "onnx", public_key=public)
    assert main(["verify", str(out), "--public-key", str(public)]) == 0
    assert "signature valid" in capsys.readouterr().out

    # a file changed and the manifest re-hashed: the hashes agree, the signature does not
    tampered = _copy(out, tmp_path / "tampered")
    card = tampered / "model_card.md"
    card.write_text(card.read_text().replace("Known limitations", "Known limitations (none)"))
    E.write_manifest(tampered)
    assert E.verify(tampered, parity=False)["hashes"] == "ok"
    with pytest.raises(IntegrityError, match=r"the signature does not match manifest\.json"):
        E.verify(tampered, public_key=public)
    with pytest.raises(IntegrityError, match="the signature does not match"):
        E.load_export(tampered, "onnx", public_key=public)
    assert main(["verify", str(tampered), "--public-key", str(public)]) == 2
    assert "signature does not match" in capsys.readouterr().err
    # another key, no signature, a garbled signature
    with pytest.raises(IntegrityError, match=r"was signed by key .*, not by the public key"):
        E.verify(out, public_key=other_public)
    with pytest.raises(IntegrityError, match=r"is not signed \(no manifest\.sig\) but a public key was given"):
        E.verify(exported.out, public_key=public)
    garbled = _copy(out, tmp_path / "garbled")
    (garbled / "manifest.sig").write_text((out / "manifest.sig").read_text().replace(sig["signature"][:8], "A" * 8))
    with pytest.raises(IntegrityError, match="the signature does not match"):
        E.verify(garbled, public_key=public)

    # bad key files: one clear error each, before any work
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_pem = tmp_path / "rsa.pem"
    rsa_pem.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "junk.pem").write_text("not a key")
    for key, message in ((public, "is a public key; signing needs the private key"),
                         (rsa_pem, "holds a RSAPrivateKey, not an Ed25519 private key"),
                         (tmp_path / "junk.pem", "is not a PEM file"),
                         (tmp_path / "nowhere.pem", "does not exist")):
        with pytest.raises(ConfigError, match=message):
            E.export(run_dir, formats=["onnx"], out=tmp_path / "x", sign_key=key)
    with pytest.raises(ConfigError, match="is a private key; verification takes the public key"):
        E.verify(out, public_key=private)
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "x"),
                 "--sign-key", str(tmp_path / "junk.pem")]) == 2
    assert "is not a PEM file" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_keys_sign_and_verify(exported, tmp_path):
    from tlzoo.deploy import signing

    key, pub = tmp_path / "key.pem", tmp_path / "pub.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True, capture_output=True)
    out = _copy(exported.out, tmp_path / "export")
    signing.sign_manifest(out, signing.load_private_key(key))
    assert E.verify(out, parity=False, public_key=pub)["signature"]["valid"] is True


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
        assert s["passed"] and s["bounds"] == bounds, (fmt, s)
        assert bounds["min_agreement"] > 0  # the library's own bound, measured on real runs
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
