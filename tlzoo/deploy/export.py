"""Deployment exports of a run directory: SavedModel, ONNX, LiteRT / TFLite and OpenVINO IR (``tlzoo.deploy.formats``),
each checked for parity with the Keras model (``tlzoo.deploy.parity``), with a model card and a
manifest of sha256 hashes.

Every format honours one contract (``tlzoo.deploy.contract``): for image plugins, uint8 images of
any size, gray or RGB, converted and resized inside the graph by the training rule; named outputs
(``probabilities`` and ``label`` for classifiers; ``score``, ``raw_score``, ``label`` and
``anomaly_map`` for anomaly detectors).

The export directory is written to a temporary sibling and renamed into place only after every
format passed its parity check; ``manifest.json`` (written last) lists every file with its sha256.
``verify`` re-checks the hashes and re-runs parity, labels included, on the stored sample inputs.

Serving layouts (``tlzoo.deploy.layouts``): ``tf-serving`` puts the SavedModel in a version folder,
``triton`` writes a Triton model repository around the ONNX model. ``sign_key``: an Ed25519
signature over ``manifest.json`` (``tlzoo.deploy.signing``), checked by ``verify(public_key=...)``.
Each format's latency at batch 1 and 32 is measured after parity (``tlzoo.deploy.latency``).

    tlzoo export runs/pneumonia --format savedmodel onnx tflite --out exports/pneumonia
    tlzoo verify exports/pneumonia
"""
from __future__ import annotations

import datetime
import json
import logging
import platform
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tlzoo._version import __version__
from tlzoo.data import is_lazy
from tlzoo.deploy.contract import ANOMALY, CLASSIFIER, SERIES_INPUT, Contract, model_inputs, split_outputs
from tlzoo.deploy.formats import ExportFormat, parse_formats, require, write_format
from tlzoo.deploy.formats.onnx import DEFAULT_OPSET, check_opset
from tlzoo.deploy.formats.tflite import REPRESENTATIVE_SAMPLES, tflite_interpreter_class
from tlzoo.deploy.latency import BATCH_SIZES, available_cpus, measure_latency
from tlzoo.deploy.layouts import Layout, artefact_path, check_layout, check_triton_config, write_layout_files
from tlzoo.deploy.manifest import SIGNATURE_FILE, check_manifest, write_manifest
from tlzoo.deploy.parity import borderline, parity_message, run_parity
from tlzoo.deploy.runners import KerasRunner, Runner, load_runner
from tlzoo.errors import ConfigError, DataError, IntegrityError, ParityError
from tlzoo.runs import BEST_WEIGHTS, CONFIG_FILE, METRICS_FILE, MODEL_FILE
from tlzoo.runs.directory import atomic_dir, read_yaml, write_json
from tlzoo.train.config import recorded
from tlzoo.train.recipe import load_model
from tlzoo.zoo.weights import sha256_of

log = logging.getLogger(__name__)

HISTORY_FILE = "history.json"
REQUIRED_RUN_FILES = (CONFIG_FILE, METRICS_FILE, MODEL_FILE)

EXPORT_FILE = "export.json"  # what verify needs: formats, files, input/output contract, bounds
CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"
SAMPLE_INPUTS = "samples/inputs.npy"
SAMPLE_OUTPUTS = "samples/keras_outputs.npz"  # every output of the Keras model on the sample inputs
EXPORT_SCHEMA = "tlzoo.export/1"

# ---------------------------------------------------------------- the run directory


@dataclass
class _Run:
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    plugin: Any
    model: Any


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(str(version).split(".")[:2])


def check_run_dir(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's config and metrics, after checking it is complete and from this tlzoo version."""
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {str(run_dir)!r} does not exist")
    missing = [f for f in REQUIRED_RUN_FILES if not (run_dir / f).is_file()]
    if missing:
        raise ConfigError(f"{str(run_dir)!r} is not a complete tlzoo run directory: {', '.join(missing)} missing "
                          f"(an interrupted or foreign run?); run `tlzoo adapt` again")
    config = read_yaml(run_dir / CONFIG_FILE)
    if not isinstance(config, dict) or not isinstance(config.get("adapt"), dict):
        raise ConfigError(f"{str(run_dir / CONFIG_FILE)!r} has no 'adapt' section: not a tlzoo run configuration")
    made_by = (config.get("environment") or {}).get("tlzoo")
    ours = __version__
    if not made_by:
        raise ConfigError(f"{str(run_dir / CONFIG_FILE)!r} records no environment.tlzoo version; "
                          f"only runs written by tlzoo {'.'.join(_major_minor(ours))}.x can be exported")
    if _major_minor(made_by) != _major_minor(ours):
        raise ConfigError(f"{str(run_dir)!r} was written by tlzoo {made_by}, this is tlzoo {ours}: "
                          f"major.minor differ ({'.'.join(_major_minor(made_by))} vs {'.'.join(_major_minor(ours))}); "
                          f"export it with tlzoo {'.'.join(_major_minor(made_by))}.x or re-run `tlzoo adapt`")
    try:
        metrics = json.loads((run_dir / METRICS_FILE).read_text())
    except ValueError as exc:
        raise ConfigError(f"{str(run_dir / METRICS_FILE)!r} is not valid JSON: {exc}") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("test"), dict):
        raise ConfigError(f"{str(run_dir / METRICS_FILE)!r} has no test metrics: the run did not finish")
    for key in ("data", "backbone", "schedule"):
        if key not in config:
            raise ConfigError(f"{str(run_dir / CONFIG_FILE)!r} lacks the {key!r} section: "
                              f"not a complete run configuration")
    return config, metrics


def _open_run(run_dir: Path) -> _Run:
    config, metrics = check_run_dir(run_dir)
    from tlzoo.train.recipe import run_plugin

    plugin = run_plugin(recorded(config), config.get("plugin") or {})  # registers the plugin's layers
    model = load_model(run_dir / MODEL_FILE)
    history_path = run_dir / HISTORY_FILE
    history = json.loads(history_path.read_text()) if history_path.is_file() else []
    return _Run(run_dir, config, metrics, history, plugin, model)


def run_lineage(run_dir: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of the run's model and best-epoch weights (when kept): ties the export to the
    exact files it was made from."""
    return {name: {"sha256": sha256_of(run_dir / name), "bytes": (run_dir / name).stat().st_size}
            for name in (MODEL_FILE, BEST_WEIGHTS) if (run_dir / name).is_file()}


def _read_data(run: _Run, data: str | None) -> tuple[Any, bool | None]:
    """The run's splits (label subsampling redone), and whether their fingerprint is the run's."""
    from tlzoo.train.recipe import prepare_data

    cfg = recorded(run.config)
    cfg.data = data or cfg.data
    try:
        splits, _ = prepare_data(cfg, run.plugin)
    except DataError as exc:
        raise DataError(f"{exc}; the export checks parity on the run's held-out test split: "
                        f"pass --data SOURCE (data=...) where it now lives") from None
    fingerprint = (run.config.get("data") or {}).get("fingerprint")
    return splits, (splits.fingerprint() == fingerprint) if fingerprint else None


def _contract(run: _Run, test_x: Any = None, splits: Any = None) -> Contract:
    """The run's contract; with ``test_x`` (the data now read), checked against it. Without data the
    input is taken as the run recorded it (uint8 for images). Anomaly runs: the raw scores' range on
    the held-out normal images, from the run's metrics, else scored on ``splits.val``."""
    shape = (run.config.get("data") or {}).get("train", {}).get("shape")
    if test_x is None:
        if not shape:
            raise ConfigError(f"{str(run.path)!r} does not record its input shape (data.train.shape in "
                              f"{CONFIG_FILE}); re-run `tlzoo adapt` with this version")
        test_x = np.zeros((0, *shape), np.uint8 if run.plugin.modality == "image" else np.float32)
    shape = shape or list(test_x.shape[1:])
    if list(shape) != list(test_x.shape[1:]):
        raise DataError(f"the run was trained on samples of shape {list(shape)}, the data now read has "
                        f"{list(test_x.shape[1:])}; pass the run's data with --data")
    lazy = is_lazy(test_x)  # image files: decoded to uint8 by the stream's rule
    integral = lazy or np.issubdtype(test_x.dtype, np.integer) or bool(np.all(test_x == np.round(test_x)))
    in_range = lazy or test_x.size == 0 or (float(test_x.min()) >= 0 and float(test_x.max()) <= 255)
    dtype = "uint8" if run.plugin.modality == "image" and integral and in_range else "float32"
    if run.metrics.get("tasks"):  # multi-task: one head per task
        tasks = {t["name"]: {"task": t["kind"],
                             "threshold": float(run.metrics["test"][t["name"]].get("threshold", 0.5)),
                             "num_outputs": int(run.model.output[t["name"]].shape[-1]), "class_names": t["class_names"]}
                 for t in run.metrics["tasks"]}
        first = next(iter(tasks.values()))
        return Contract(dtype=dtype, shape=[None, *map(int, shape)], task="multitask", threshold=first["threshold"],
                        num_outputs=first["num_outputs"], class_names=list(tasks), tasks=tasks)
    if run.plugin.modality == "timeseries":  # the model takes series of any length: so does every export
        return Contract(dtype=dtype, shape=[None, None, int(shape[-1])], task=run.plugin.task,
                        threshold=float(run.metrics["test"].get("threshold", 0.5)),
                        num_outputs=int(split_outputs(run.model.output)[0].shape[-1]),
                        class_names=[str(n) for n in run.metrics.get("class_names") or []],
                        input_name=SERIES_INPUT)
    names = list(run.metrics.get("class_names") or run.config.get("data", {}).get("classes") or [])
    probs_out, extras = split_outputs(run.model.output)
    num_outputs = int(probs_out.shape[-1])
    extra_outputs = {k: {"dtype": "float32", "shape": [None, *v.shape[1:]]} for k, v in extras.items()}
    anomaly = run.config.get("recipe") == "anomaly/patchcore"
    return Contract(dtype=dtype, shape=[None, *map(int, shape)], task=run.plugin.task,
                    threshold=float(run.metrics["test"].get("threshold", 0.5)), num_outputs=num_outputs,
                    class_names=[str(n) for n in names], extra_outputs=extra_outputs,
                    kind=ANOMALY if anomaly else CLASSIFIER, score_range=_score_range(run, splits) if anomaly else {})


def _score_range(run: _Run, splits: Any) -> dict[str, float]:
    """min / max of the raw anomaly scores on the held-out normal images (the threshold's split)."""
    val = run.metrics.get("val") or {}
    if "score_min" in val and "score_max" in val:
        return {"min": float(val["score_min"]), "max": float(val["score_max"])}
    if splits is None or not len(splits.val):
        raise ConfigError(f"{str(run.path)!r} does not record the range of its held-out normal scores "
                          f"(val.score_min / score_max in {METRICS_FILE}); export it with its data, or re-run it")
    scores = []
    for i in range(0, len(splits.val), 32):
        x = np.asarray(splits.val.x[i:i + 32]).astype(np.float32)
        scores.append(np.asarray(split_outputs(run.model(model_inputs(run.model, x), training=False))[0]).reshape(-1))
    s = np.concatenate(scores)
    return {"min": float(s.min()), "max": float(s.max())}


# ---------------------------------------------------------------- export


@dataclass
class ExportResult:
    out: Path
    formats: list[str]
    parity: dict[str, Any]
    test_metrics: dict[str, Any]
    card: dict[str, Any]
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)


def export(
    run: Any,
    formats: Sequence["str | ExportFormat"] | str | None = None,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    opset: int = DEFAULT_OPSET,
    data: str | None = None,
    heldout: int = 64,
    samples: int = 16,
    test_metrics: bool = True,
    layout: "str | Layout" = Layout.PLAIN,
    model_version: int = 1,
    sign_key: str | Path | None = None,
    verbose: int = 1,
) -> ExportResult:
    """Export a run directory (or a ``RunResult``) to deployment formats, verified for parity.

    ``tlzoo.export("runs/pneumonia", formats=["savedmodel", "onnx", "tflite"], out="exports/pneumonia")``

    Parity: Keras and every format run on ``heldout`` test images, a batch of one and the largest
    batch the run used; an export whose maximum absolute difference exceeds the format's bound
    (1e-4 for float32 formats) fails and writes nothing. ``test_metrics``: also recompute the test
    metrics from every format on the whole test split. ``samples`` test images and the Keras outputs
    on them are stored for ``verify``.

    ``layout``: ``"plain"``, ``"tf-serving"`` (the SavedModel at ``saved_model/<model_version>/``) or
    ``"triton"`` (``triton/<model>/config.pbtxt`` and ``triton/<model>/<model_version>/model.onnx``).
    ``sign_key``: an Ed25519 private key (PEM); ``manifest.sig`` then signs ``manifest.json``.
    """
    t_start = time.perf_counter()
    fmts = parse_formats(formats)
    run_dir = Path(getattr(run, "run_dir", run))
    out = Path(out) if out else run_dir.with_name(run_dir.name + "-export")
    if out.exists() and not overwrite:
        raise ConfigError(f"output directory {str(out)!r} exists; pass --overwrite (overwrite=True) "
                          f"or choose another --out")
    if out.resolve() == run_dir.resolve() or run_dir.resolve().is_relative_to(out.resolve()):
        raise ConfigError(f"output directory {str(out)!r} would replace the run directory {str(run_dir)!r}; "
                          f"choose another --out")
    if heldout < 1 or samples < 1:
        raise ConfigError(f"heldout and samples must be >= 1, got {heldout} and {samples}")
    layout = Layout.parse(layout)
    check_layout(layout, fmts, model_version)
    private_key = None
    if sign_key is not None:  # read before any work: a bad key file fails here, not after the conversions
        from tlzoo.deploy.signing import load_private_key

        private_key = load_private_key(sign_key)
    if ExportFormat.ONNX in fmts:
        check_opset(opset)
        require("tf2onnx"), require("onnx"), require("onnxruntime")
    if ExportFormat.OPENVINO in fmts:
        require("openvino")

    run_ = _open_run(run_dir)
    lineage = run_lineage(run_dir)
    splits, fingerprint_ok = _read_data(run_, data)
    test = splits.test
    contract = _contract(run_, test.x, splits)
    np_dtype = np.dtype(contract.dtype)
    settings = recorded(run_.config)
    seed, batch_size = int(settings.seed), int(settings.batch_size)
    say = print if verbose else (lambda *a, **k: None)
    keras_runner = KerasRunner(run_.model, contract)
    keras_test = _outputs(keras_runner, test.x, np_dtype, batch_size)  # the whole test split, once
    order = np.random.default_rng(seed).permutation(len(test))
    near = borderline(keras_test, contract, min(max(1, heldout // 2), len(test)))
    cases = {
        f"heldout_{min(heldout, len(test))}": test.x[order[:heldout]].astype(np_dtype),
        f"borderline_{len(near)}": test.x[near].astype(np_dtype),
        "batch_1": test.x[order[:1]].astype(np_dtype),
        f"largest_batch_{batch_size}": test.x[np.resize(order, batch_size)].astype(np_dtype),
    }
    # verify's inputs: random test images and those nearest a label change, so a moved threshold shows
    near_samples = borderline(keras_test, contract, min(samples, len(test)))  # from both sides
    sample_idx = np.concatenate([order[:samples], near_samples])
    sample_x = test.x[sample_idx].astype(np_dtype)
    reference = {name: keras_runner(x) for name, x in cases.items()}
    if fingerprint_ok is False:
        say(f"note: the data read from {splits.source} does not match the run's fingerprint; parity is checked on "
            f"it anyway, and the model card records the mismatch", flush=True)

    with atomic_dir(out, overwrite) as tmp:
        artefacts: dict[str, dict[str, Any]] = {}
        scratch: dict[str, Path] = {}
        options: dict[str, Any] = {"opset": opset}
        if ExportFormat.TFLITE_INT8_FULL in fmts:  # calibrates the activations' ranges: training samples
            pick = np.random.default_rng(seed).permutation(len(splits.train))[:REPRESENTATIVE_SAMPLES]
            options["representative"] = splits.train.x[np.sort(pick)].astype(np_dtype)
        for fmt in fmts:
            t0 = time.perf_counter()
            rel = artefact_path(layout, fmt, run_.model.name, model_version)
            added = write_format(fmt, run_.model, contract, tmp, options, scratch, tmp / rel)
            artefacts[fmt.value] = {"path": rel, "precision": fmt.precision, "bounds": fmt.bounds,
                                    "bytes": _size(tmp / rel), "seconds": round(time.perf_counter() - t0, 2),
                                    **({"opset": opset} if fmt is ExportFormat.ONNX else {}), **added}
            say(f"exported {fmt.value:12} -> {rel} ({artefacts[fmt.value]['bytes'] / 1e6:.1f} MB, "
                f"{artefacts[fmt.value]['seconds']:.1f} s)", flush=True)
        shutil.rmtree(tmp / ".work", ignore_errors=True)
        # Triton's max_batch_size: the largest batch the parity check ran
        layout_record = write_layout_files(layout, tmp, {f: a["path"] for f, a in artefacts.items()},
                                           run_.model.name, max_batch_size=batch_size)

        threads = available_cpus()  # given to ONNX Runtime and LiteRT, so the latency figures name it
        runners = {fmt.value: load_runner(fmt, tmp / artefacts[fmt.value]["path"], contract, threads) for fmt in fmts}
        parity = run_parity(runners, cases, reference, {f.value: f.bounds for f in fmts}, contract)
        failures = [parity_message(name, s, "Keras") for name, s in parity.items() if not s["passed"]]
        if failures:
            raise ParityError("parity check failed, nothing written: " + "; ".join(failures))

        latency = measure_latency(runners, test.x[np.resize(order, max(BATCH_SIZES))].astype(np_dtype))
        for name, figures in latency.items():
            artefacts[name]["latency_ms"] = {**figures, "threads": threads}
        say("latency (median ms, " + f"{threads} thread(s)): " + ", ".join(
            f"{n} {f['batch_1']:.2f} / {f['batch_32']:.2f}" for n, f in latency.items()) + " at batch 1 / 32",
            flush=True)

        metrics_by_format: dict[str, Any] = {}
        if test_metrics:
            for name, runner in {"keras": keras_runner, **runners}.items():
                outputs = keras_test if runner is keras_runner else _outputs(runner, test.x, np_dtype, batch_size)
                metrics_by_format[name] = _evaluate(run_.plugin, test.y, outputs, contract)
                if runner is not keras_runner:  # every test label against Keras' (parity covers a subset)
                    metrics_by_format[name]["label_agreement_with_keras"] = _label_agreement(
                        keras_test, outputs, contract)

        (tmp / "samples").mkdir()
        np.save(tmp / SAMPLE_INPUTS, sample_x, allow_pickle=False)
        np.savez(tmp / SAMPLE_OUTPUTS, **keras_runner(sample_x))

        exported_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        info = {
            "schema": EXPORT_SCHEMA,
            "tlzoo_version": __version__,
            "exported_at": exported_at,
            "run_dir": str(run_dir.resolve()),
            "model_name": run_.model.name,
            "lineage": lineage,
            "contract": contract.to_dict(),
            "formats": artefacts,
            "layout": layout_record,
            "latency": {"threads": threads, "batch_sizes": list(BATCH_SIZES),
                        "threads_note": "ONNX Runtime and LiteRT run with this many threads, the CPUs available; "
                                        "the SavedModel with TensorFlow's own pool, one thread per CPU by default",
                        "inputs": "test split images (the parity permutation)",
                        "statistic": "median wall time of a call after one warm-up call, on the exporting machine"},
            "parity": parity,
            "parity_inputs": {"source": splits.source, "split": "test",
                              "selection": f"permutation(seed={seed}), and the test samples nearest a label change",
                              "cases": {k: int(len(v)) for k, v in cases.items()}},
            "samples": {"inputs": SAMPLE_INPUTS, "keras_outputs": SAMPLE_OUTPUTS, "n": int(len(sample_x)),
                        "borderline": int(len(near_samples))},
            "test_metrics": {"run": run_.metrics["test"], **metrics_by_format},
            "data_fingerprint_matches_run": fingerprint_ok,
            "versions": library_versions(),
        }
        if private_key is not None:  # inside the signed manifest, so the signer's claim is signed too
            from tlzoo.deploy.signing import fingerprint

            info["signing"] = {"algorithm": "ed25519", "file": SIGNATURE_FILE,
                               "public_key_sha256": fingerprint(private_key.public_key())}
        write_json(tmp / EXPORT_FILE, info)

        from tlzoo.deploy.card import build_card, write_card

        card = build_card(run_dir=run_dir, config=run_.config, metrics=run_.metrics, history=run_.history,
                          plugin=run_.plugin, export_info=info)
        write_card(tmp, card)
        manifest = write_manifest(tmp)  # last: a directory without it is not a complete export
        if private_key is not None:
            from tlzoo.deploy.signing import sign_manifest

            sign_manifest(tmp, private_key)
    say(f"export written to {out} ({len(manifest['files'])} files, {time.perf_counter() - t_start:.0f} s)", flush=True)
    return ExportResult(out, [f.value for f in fmts], parity, info["test_metrics"], card, manifest)


def _outputs(runner: Runner, x: Any, dtype: np.dtype, batch_size: int) -> dict[str, np.ndarray]:
    """A runner's outputs on every sample of ``x``, batch by batch (anomaly maps left out)."""
    batches = [runner(x[i:i + batch_size].astype(dtype)) for i in range(0, len(x), batch_size)]
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0] if k != "anomaly_map"}


def _label_agreement(reference: dict[str, np.ndarray], got: dict[str, np.ndarray], contract: Contract) -> float:
    same = np.ones(len(next(iter(reference.values()))), bool)
    for _, label, *_ in contract.heads():
        same &= (reference[label] == got[label]).reshape(len(same), -1).all(-1)
    return float(same.mean())


def _evaluate(plugin: Any, y: np.ndarray, outputs: dict[str, np.ndarray], contract: Contract) -> dict[str, Any]:
    """The plugin's test metrics, computed from one format's outputs."""
    if contract.tasks:
        thresholds = {t: float(c["threshold"]) for t, c in contract.tasks.items()}
        return plugin.evaluate(y, {t: outputs[t] for t in contract.tasks}, threshold=thresholds)
    if contract.kind == ANOMALY:
        return plugin.evaluate(y, outputs["raw_score"][:, None], threshold=contract.threshold)
    probs = outputs["probabilities"]
    if contract.task == "multiclass":  # a quantised softmax sums to 1 only roughly; ROC-AUC (sklearn) insists
        probs = probs / np.clip(probs.sum(-1, keepdims=True), 1e-12, None)
    return plugin.evaluate(y, probs, threshold=contract.threshold)


# ---------------------------------------------------------------- verify


def _read_export_info(root: Path) -> dict[str, Any]:
    try:
        info = json.loads((root / EXPORT_FILE).read_text())
        info["formats"], info["contract"]  # noqa: B018
    except FileNotFoundError:
        raise IntegrityError(f"{str(root)!r} has no {EXPORT_FILE}: not a tlzoo export") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{str(root / EXPORT_FILE)!r} is not a valid export description: {exc}") from None
    return info


def _check_files(root: Path, public_key: str | Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The signature (with ``public_key``), then every file's hash: (manifest, signature report)."""
    signature: dict[str, Any] = {}
    if public_key is not None:
        from tlzoo.deploy.signing import check_signature

        if not Path(root).is_dir():
            raise ConfigError(f"export directory {str(root)!r} does not exist")
        signature = check_signature(root, public_key)
    elif (root / SIGNATURE_FILE).is_file():
        signature = {"valid": None, "note": "signed, signature not checked: pass the public key to check it"}
    return check_manifest(root), signature


def verify(export_dir: str | Path, *, parity: bool = True, num_threads: int | None = None,
           public_key: str | Path | None = None) -> dict[str, Any]:
    """Re-check an export: with ``public_key`` (PEM, Ed25519), the signature over ``manifest.json``;
    every file's sha256 against ``manifest.json``; then every format's outputs on the stored sample
    inputs (as one batch and a batch of one) against the stored Keras outputs, within the format's
    bound, and a Triton layout's ``config.pbtxt`` against the ONNX graph. Raises ``IntegrityError`` /
    ``ParityError``; returns the figures."""
    root = Path(export_dir)
    manifest, signature = _check_files(root, public_key)
    info = _read_export_info(root)
    report: dict[str, Any] = {"export_dir": str(root), "files_checked": len(manifest["files"]), "hashes": "ok"}
    if signature:
        report["signature"] = signature
    if not parity:
        return report
    triton = info.get("layout") or {}
    if triton.get("name") == Layout.TRITON.value:
        check_triton_config(root / triton["config"], root / info["formats"][ExportFormat.ONNX.value]["path"])
        report["triton_config"] = "matches the ONNX graph"
    contract = Contract.from_dict(info["contract"])
    x = np.load(root / SAMPLE_INPUTS, allow_pickle=False)
    with np.load(root / SAMPLE_OUTPUTS, allow_pickle=False) as stored:
        ref = {k: stored[k] for k in stored.files}
    cases = {f"samples_{len(x)}": x, "batch_1": x[:1]}
    reference = {f"samples_{len(x)}": ref, "batch_1": {k: v[:1] for k, v in ref.items()}}
    runners, bounds = {}, {}
    for name, entry in info["formats"].items():
        fmt = ExportFormat.parse(name)
        runners[fmt.value] = load_runner(fmt, root / entry["path"], contract, num_threads)
        bounds[fmt.value] = fmt.bounds  # this library's bounds, not the (editable) recorded ones
    results = run_parity(runners, cases, reference, bounds, contract)
    failures = [parity_message(n, s, "the stored Keras outputs") for n, s in results.items() if not s["passed"]]
    if failures:
        raise ParityError(f"{str(root)!r} fails verification: " + "; ".join(failures))
    report["parity"] = results
    return report


def load_export(export_dir: str | Path, fmt: "ExportFormat | str" = ExportFormat.SAVEDMODEL,
                num_threads: int | None = None, public_key: str | Path | None = None) -> Runner:
    """A runner for one format of an export, after its files were checked against ``manifest.json``
    (an export whose hashes do not match is refused) and, with ``public_key``, its signature."""
    root = Path(export_dir)
    _check_files(root, public_key)
    info = _read_export_info(root)
    fmt = ExportFormat.parse(fmt)
    if fmt.value not in info["formats"]:
        raise ConfigError(f"{str(root)!r} has no {fmt.value} export; it has {', '.join(info['formats'])}")
    return load_runner(fmt, root / info["formats"][fmt.value]["path"], Contract.from_dict(info["contract"]),
                       num_threads)


# ---------------------------------------------------------------- helpers


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version(), "tlzoo": __version__}
    for dist in ("tensorflow", "keras", "numpy", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "openvino"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    versions["tflite_interpreter"] = tflite_interpreter_class()[1] if versions["ai-edge-litert"] else "tf.lite"
    return versions
