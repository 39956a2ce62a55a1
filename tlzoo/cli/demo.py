"""``tlzoo demo``: adapt a pretrained backbone to a generated scan data set, end to end."""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="adapt a pretrained backbone on a generated data set (no download)")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--backbone", default="mobilenet_v2")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    run_demo(out=args.out, backbone=args.backbone)
    return 0


def run_demo(out: str = "runs/demo", backbone: str = "mobilenet_v2") -> dict:
    from tlzoo.data.synthetic import write_opacity_npz
    from tlzoo.train.recipe import AdaptConfig, adapt

    t0 = time.perf_counter()
    data_dir = Path(tempfile.mkdtemp(prefix="tlzoo-demo-"))
    data = write_opacity_npz(data_dir / "opacity_scans.npz", n_train=300, n_val=100, n_test=200, size=64)
    print(f"generated data set: {data} (300 train / 100 val / 200 test grayscale 64x64 scans)", flush=True)
    cfg = AdaptConfig(
        plugin="medical-imaging", data=str(data), out=out, backbone=backbone, weights="imagenet",
        input_size=96, batch_size=32, overwrite=True,
        schedule={"kind": "fine_tune", "freeze_epochs": 2, "epochs": 6, "base_lr": 1e-3},
    )
    result = adapt(cfg)
    test = result.metrics["test"]
    print(
        f"\ndemo done in {time.perf_counter() - t0:.0f} s: {backbone} (ImageNet weights from "
        f"{result.config['weights'].get('source')}) adapted to opacity detection\n"
        f"  test ROC-AUC {test['roc_auc']:.3f}  accuracy {test['accuracy']:.3f}  "
        f"sensitivity {test['sensitivity']:.3f}  specificity {test['specificity']:.3f}\n"
        f"  run directory: {result.run_dir} (config.yaml, metrics.json, model.keras, learning_curves.png, ...)",
        flush=True,
    )
    return result.metrics
