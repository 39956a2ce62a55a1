"""``tlzoo explain``: Grad-CAM heat maps of a run's predictions (``tlzoo.explain``)."""
from __future__ import annotations

import argparse
from typing import Any

from tlzoo.cli.common import check_run_dir


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("explain", help="Grad-CAM heat maps of a run's predictions "
                                              "(anomaly runs: their anomaly maps)")
    p.add_argument("run_dir")
    p.add_argument("--images", help=".npz (images or SPLIT_images), or a folder of image files "
                                    "(default: the run's data)")
    p.add_argument("--split", default="test", help="split of the run's data (or of an .npz) to take images from")
    p.add_argument("-n", type=int, default=8, help="how many images (the first n; default 8)")
    p.add_argument("--out", help="output directory (default: RUN_DIR/explanations)")
    p.add_argument("--class-index", type=int, help="the class to explain (default: the predicted class)")
    p.add_argument("--layer", help="backbone layer of the feature map (default: the last spatial layer group's)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    check_run_dir(args.run_dir)

    from tlzoo.analysis.explain import explain

    result = explain(args.run_dir, args.images, split=args.split, n=args.n, out=args.out,
                     class_index=args.class_index, layer=args.layer)
    what = f"Grad-CAM at layer {result.layer!r}" if result.method == "grad-cam" else "anomaly maps"
    print(f"{len(result.files)} explanations ({what}) written to {result.out}: one PNG per image, grid.png, "
          f"explanations.json")
    return 0
