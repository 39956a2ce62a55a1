"""Multi-task heads on real data: Magnetic Tile Defects, one MobileNetV2 (ImageNet) backbone and two
heads trained together:

- ``defect``: defect vs defect-free (binary, every image);
- ``type``: the defect type (5 classes, only the defective images have this label).

Then the run is exported to SavedModel and ONNX with one named output per task, and parity is
checked.

    python benchmarks/multitask_magnetic_tile.py [--input-size 128] [--epochs 8]

Writes benchmarks/results/multitask/{multitask.json, multitask.png}.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from shared_data import find_data  # noqa: E402

DEFECT_TYPES = ["MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven"]
TASKS = [
    {"name": "defect", "kind": "binary", "classes": {"MT_Free": "defect_free", "*": "defective"}},
    {"name": "type", "kind": "multiclass", "classes": DEFECT_TYPES},
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--head-epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "multitask"))
    args = ap.parse_args()

    import tlzoo
    from tlzoo.deploy.export import export

    data = str(find_data("magnetic_tile.npz"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tlzoo-multitask-"))
    common = dict(plugin="defect-detection", data=data, backbone="mobilenet_v2", weights="imagenet",
                  input_size=args.input_size, seed=args.seed, batch_size=32,
                  schedule={"kind": "fine_tune", "epochs": args.epochs, "freeze_epochs": args.head_epochs,
                            "base_lr": 2e-3})
    t0 = time.perf_counter()
    run = tlzoo.adapt(**common, tasks=TASKS, out=str(work / "run"))
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    exported = export(run.run_dir, formats=["savedmodel", "onnx"], out=work / "export")
    export_s = time.perf_counter() - t0
    contract = json.loads((exported.out / "export.json").read_text())["contract"]
    result = {
        "data": "magnetic_tile.npz (1344 images, 128 px; split 70/10/20 stratified by the 6 source classes)",
        "backbone": "mobilenet_v2 (ImageNet)", "input_size": args.input_size, "seed": args.seed,
        "schedule": common["schedule"], "tasks": run.metrics["tasks"],
        "test": run.metrics["test"], "val": run.metrics["val"],
        "calibration": run.metrics["calibration"], "train_seconds": round(train_s, 1),
        "history": run.history,
        "export": {"outputs": sorted(contract["outputs"]), "seconds": round(export_s, 1),
                   "parity": {f: {k: s[k] for k in ("max_abs_diff", "mean_abs_diff", "agreement", "passed")}
                              for f, s in exported.parity.items()},
                   "test_metrics_by_format": {f: {t: {k: v for k, v in m.items()
                                                      if k in ("roc_auc", "accuracy", "macro_f1")}
                                                  for t, m in tm.items()}
                                              for f, tm in exported.test_metrics.items() if f != "run"}},
    }
    (out / "multitask.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    shutil.copy(run.run_dir / "learning_curves.png", out / "learning_curves.png")
    for name in ("confusion_matrix_defect.png", "confusion_matrix_type.png", "roc_curve_defect.png"):
        shutil.copy(run.run_dir / name, out / name)
    shutil.copy(exported.out / "model_card.md", out / "model_card.md")
    t = run.metrics["test"]
    print(f"defect: ROC-AUC {t['defect']['roc_auc']:.4f}, accuracy {t['defect']['accuracy']:.4f}; "
          f"type: accuracy {t['type']['accuracy']:.4f}, macro-F1 {t['type'].get('macro_f1', float('nan')):.4f} "
          f"({t['type']['n_labelled']} labelled test images)")
    print("parity:", {f: p["max_abs_diff"] for f, p in result["export"]["parity"].items()})
    print(f"written to {out}")


if __name__ == "__main__":
    main()
