"""``tlzoo predict``: score image files with a run or an export (``tlzoo.predict``)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tlzoo.errors import ConfigError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("predict", help="score new image files with a run or an export directory: "
                                              "a CSV row per file")
    p.add_argument("model_dir", help="a run directory, or an export directory (then --format chooses the runtime)")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="folders (searched recursively), label tables (their path column) or image files")
    p.add_argument("--out", default="predictions.csv", help="CSV to write (default predictions.csv)")
    p.add_argument("--format", help="export directory: savedmodel, onnx, tflite ... (default: the first exported)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--path-column", help="label table: the file column")
    p.add_argument("--heatmaps", metavar="DIR", help="anomaly runs: one PNG per file, the image beside its anomaly map")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if not Path(args.model_dir).is_dir():  # what predict() says, before TensorFlow loads
        raise ConfigError(f"{str(Path(args.model_dir))!r} is neither a run directory nor an export directory")
    from tlzoo.deploy.predict import predict

    options = {"path_column": args.path_column} if args.path_column else {}
    result = predict(args.model_dir, args.data, args.out, fmt=args.format, batch_size=args.batch_size, options=options,
                     heatmaps=args.heatmaps)
    print(f"{result.n_files - result.n_errors:,} of {result.n_files:,} files scored "
          f"({result.images_per_s:,.0f} images/s); "
          f"{result.n_errors} unreadable (their rows hold the error); predictions: {result.out}")
    return 0
