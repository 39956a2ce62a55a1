"""``tlzoo predict``: score new files with a run directory or an export directory.

Files are found (folders recursively, label tables by their path column, single files), their
headers scanned, then decoded, converted and resized in the stream by the rule the run was trained
with, and scored batch by batch: memory does not grow with the number of files. The CSV has one row
per file: its path, the predicted label, the probability of each class (anomaly runs: the score),
and for a file that cannot be read, its error instead of a crash.
"""
from __future__ import annotations

import csv
import io
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from tlzoo.data.folders import list_files
from tlzoo.data.images import ImageFiles, scan
from tlzoo.data.index import DataOptions
from tlzoo.data.stream import image_batches
from tlzoo.data.tables import (
    PATH_COLUMNS,
    TABLE_SUFFIXES,
    pick_column,
    read_rows,
    resolve_file,
)
from tlzoo.deploy.contract import ANOMALY
from tlzoo.errors import ConfigError, DataError
from tlzoo.runs.directory import write_text_atomic


@dataclass
class PredictResult:
    out: Path | None
    rows: list[dict[str, Any]]
    n_files: int
    n_errors: int
    seconds: float
    source: str  # "run" or the export format

    @property
    def images_per_s(self) -> float:
        return (self.n_files - self.n_errors) / max(self.seconds, 1e-9)


def collect_files(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                  options: DataOptions | None = None) -> list[str]:
    """The files named by ``data``: folders (recursive), label tables (their path column), or files."""
    items = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    options = options or DataOptions()
    files: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found, _, _ = list_files(path)
            files += found
        elif path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
            header, rows = read_rows(path)
            col = pick_column(header, options.path_column, PATH_COLUMNS, "path", path)
            for row in rows:  # a missing file becomes a row with its error, like an unreadable one
                found_file = resolve_file(path.parent, row[col])
                files.append(str(found_file) if found_file else str(path.parent / row[col]))
        elif path.exists() or path.suffix.lower() not in TABLE_SUFFIXES:
            files.append(str(path))
        else:
            raise DataError(f"{str(path)!r} does not exist")
    if not files:
        raise DataError(f"no image files found in {[str(i) for i in items]}")
    return files


def _runner(model_dir: Path, fmt: str | None) -> tuple[Any, Any, str]:
    """(runner, contract, what ran) for a run directory or an export directory."""
    from tlzoo.deploy import export as ex

    if (model_dir / ex.EXPORT_FILE).is_file():
        info = ex._read_export_info(model_dir)
        fmt = fmt or next(iter(info["formats"]))
        return ex.load_export(model_dir, fmt), ex.Contract.from_dict(info["contract"]), fmt
    if fmt:
        raise ConfigError(f"--format applies to export directories; {str(model_dir)!r} is a run directory")
    run = ex._open_run(model_dir)
    contract = ex._contract(run)
    return ex.KerasRunner(run.model, contract), contract, "run"


def predict(model_dir: str | os.PathLike[str], data: Any, out: str | os.PathLike[str] | None = None, *,
            fmt: str | None = None, batch_size: int = 64, options: DataOptions | dict[str, Any] | None = None,
            heatmaps: str | os.PathLike[str] | None = None, verbose: int = 1) -> PredictResult:
    """Score every file of ``data`` with a run (Keras) or an export (``fmt``: one of its formats,
    default the first). Writes ``out`` (CSV) atomically when given. Anomaly runs: ``heatmaps``, a
    folder for one PNG per file, the image beside its anomaly map."""
    options = options if isinstance(options, DataOptions) else DataOptions.from_dict(options)
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ConfigError(f"{str(model_dir)!r} is neither a run directory nor an export directory")
    files = collect_files(data, options)
    runner, contract, what = _runner(model_dir, fmt)
    if len(contract.shape) != 4:
        raise ConfigError(f"predict scores images; this model takes inputs of shape {contract.shape}")
    _, h, w, channels = contract.shape
    t0 = time.perf_counter()
    infos = scan(files, verbose=bool(verbose), label="files")
    good = [i for i, info in enumerate(infos) if not info.error]
    images = ImageFiles(np.asarray(files)[good] if good else np.zeros(0, str), [infos[i].route for i in good],
                        int(channels), (int(h), int(w)), cache_dir=None)
    outputs: dict[str, list[np.ndarray]] = {}
    anomaly = contract.kind == ANOMALY
    if heatmaps is not None and not anomaly:
        raise ConfigError("heat maps come with anomaly runs; for a classifier use `tlzoo explain` (Grad-CAM)")
    done, last, scored = 0, time.perf_counter(), []
    for pos, batch in _batches(images, batch_size, infos, good):
        result = runner(batch.astype(contract.dtype))
        if heatmaps is not None:
            _write_heatmaps(Path(heatmaps), batch, result, [files[good[k]] for k in pos], contract.threshold)
        for k, v in result.items():
            if k not in contract.extra_outputs:  # maps are written as PNGs, not held
                outputs.setdefault(k, []).append(np.asarray(v))
        scored += [good[k] for k in pos]
        done = pos[-1] + 1
        if verbose and (time.perf_counter() - last > 2 or done == len(images)):
            rate = done / max(time.perf_counter() - t0, 1e-9)
            print(f"\rpredict: {done:,}/{len(images):,} images ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)
            last = time.perf_counter()
    if verbose and len(images):
        print(file=sys.stderr)
    seconds = time.perf_counter() - t0
    merged = {k: np.concatenate(v) for k, v in outputs.items()}
    rows = _rows(files, infos, scored, merged, contract, anomaly)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, _csv(rows))
    n_err = len(files) - len(scored)
    if verbose:
        print(f"predict ({what}): {len(scored):,} files scored, {n_err} unreadable, {seconds:.1f} s"
              + (f" -> {out}" if out else ""), flush=True)
    return PredictResult(out, rows, len(files), n_err, seconds, what)


def _batches(images: ImageFiles, batch_size: int, infos: list[Any], good: list[int]
             ) -> Iterator[tuple[list[int], np.ndarray]]:
    """(positions, images) batches in order. A file the header scan passed but its decoder refuses is
    found, its error recorded in ``infos``, and the stream goes on after it."""
    pos, n = 0, len(images)
    while pos < n:
        try:
            for batch in image_batches(images.subset(slice(pos, n)), batch_size):
                yield list(range(pos, pos + len(batch))), batch
                pos += len(batch)
        except Exception:  # noqa: BLE001 - any decode failure: isolate it file by file
            for k in range(pos, min(pos + batch_size, n)):
                try:
                    yield [k], images.load([k])
                except Exception as exc:  # noqa: BLE001
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    infos[good[k]].error = f"cannot decode: {first[:300]}"
            pos = min(pos + batch_size, n)


def _write_heatmaps(folder: Path, images: np.ndarray, result: dict[str, np.ndarray], paths: list[str],
                    threshold: float) -> None:
    from tlzoo.anomaly.patchcore import MAP_OUTPUT
    from tlzoo.evaluation.plots import overlay_grid

    folder.mkdir(parents=True, exist_ok=True)
    for img, amap, score, path in zip(images, result[MAP_OUTPUT], result["raw_score"], paths):
        name = Path(path).stem
        overlay_grid([img], [amap], [f"{Path(path).name}: score {score:.3g} (threshold {threshold:.3g})"],
                     folder / f"{name}.png", vmin=0.0, vmax=2 * threshold, label="anomaly map")


def _rows(files: list[str], infos: list[Any], good: list[int], out: dict[str, np.ndarray], contract: Any,
          anomaly: bool = False) -> list[dict[str, Any]]:
    names = list(contract.class_names) or [str(i) for i in range(contract.num_outputs)]
    position = {i: k for k, i in enumerate(good)}
    probs, labels = out.get("raw_score" if anomaly else "probabilities"), out.get("label")
    rows = []
    for i, path in enumerate(files):
        row: dict[str, Any] = {"path": path, "label": "", "label_index": ""}
        k = position.get(i)
        if k is None or probs is None or labels is None:
            row["error"] = infos[i].error or "no output"
            rows.append(row)
            continue
        p, lab = probs[k], labels[k]
        if contract.task == "multilabel":
            row["label"] = "|".join(n for n, v in zip(names, lab) if v)
            row["label_index"] = "|".join(str(j) for j, v in enumerate(lab) if v)
        else:
            row["label"], row["label_index"] = (names[int(lab)] if int(lab) < len(names) else str(int(lab))), int(lab)
        if anomaly:  # the raw anomaly score (label: score >= threshold) and the normalised one (0.5 at it)
            row["score"], row["normalised_score"] = float(p), float(out["score"][k])
        elif contract.task == "binary" and p.shape[-1] == 1:
            row[f"p_{names[-1]}"] = float(p[0])
        else:
            row.update({f"p_{n}": float(v) for n, v in zip(names, p)})
        row["error"] = ""
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    keys = [k for k in keys if k != "error"] + ["error"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
