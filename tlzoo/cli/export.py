"""``tlzoo export`` and ``tlzoo verify``: deployment formats with parity, and their re-check;
``tlzoo keys generate``: an Ed25519 key pair to sign exports with."""
from __future__ import annotations

import argparse
import json
from typing import Any

from tlzoo.cli.common import check_exists


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export", help="export a run to SavedModel / ONNX / TFLite, verified for parity, "
                                             "with a model card")
    p.add_argument("run_dir")
    p.add_argument("--format", nargs="+", default=["savedmodel", "onnx", "tflite"], metavar="FORMAT",
                   help="savedmodel onnx openvino tflite tflite_fp16 tflite_int8 tflite_int8_full "
                        "(default: savedmodel onnx tflite)")
    p.add_argument("--out", help="export directory (default: RUN_DIR-export)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export directory")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--data", help="where the run's data lives now, if it moved")
    p.add_argument("--heldout", type=int, default=64, help="held-out test images in the parity check (default 64)")
    p.add_argument("--samples", type=int, default=16, help="test images stored for `tlzoo verify` (default 16)")
    p.add_argument("--no-test-metrics", action="store_true", help="skip recomputing test metrics from each format")
    p.add_argument("--layout", default="plain", choices=["plain", "tf-serving", "triton"],
                   help="plain (default); tf-serving: saved_model/VERSION/; triton: a Triton model repository "
                        "triton/MODEL/{config.pbtxt,VERSION/model.onnx} (needs onnx)")
    p.add_argument("--model-version", type=int, default=1, help="the serving layout's version folder (default 1)")
    p.add_argument("--sign-key", metavar="PEM", help="Ed25519 private key: sign manifest.json (manifest.sig)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)

    p = subparsers.add_parser("verify", help="re-check an export's hashes and parity")
    p.add_argument("export_dir")
    p.add_argument("--hashes-only", action="store_true", help="check sha256 hashes only, not parity")
    p.add_argument("--public-key", metavar="PEM", help="Ed25519 public key: require a valid signature by it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_verify)

    p = subparsers.add_parser("keys", help="make an Ed25519 key pair to sign exports with")
    keys = p.add_subparsers(dest="keys_command", required=True)
    g = keys.add_parser("generate", help="write tlzoo_ed25519.pem (private, mode 600) and tlzoo_ed25519.pub.pem")
    g.add_argument("--out", required=True, help="folder for the two PEM files (existing key files are refused)")
    g.set_defaults(func=run_keys)
    return p


def run(args: argparse.Namespace) -> int:
    check_exists(args.run_dir, "run directory")

    from tlzoo.deploy.export import export

    result = export(args.run_dir, formats=args.format, out=args.out, overwrite=args.overwrite, opset=args.opset,
                    data=args.data, heldout=args.heldout, samples=args.samples,
                    test_metrics=not args.no_test_metrics, layout=args.layout, model_version=args.model_version,
                    sign_key=args.sign_key, verbose=1)
    if args.json:
        print(json.dumps({"out": str(result.out), "parity": result.parity, "test_metrics": result.test_metrics},
                         indent=2, default=str))
        return 0
    print_parity(result.parity, "parity with the Keras model")
    run_metrics = result.test_metrics.get("run", {})
    for key in ("roc_auc", "accuracy"):
        if key in run_metrics:
            figures = ", ".join(f"{name} {m[key]:.4f}" for name, m in result.test_metrics.items() if key in m)
            print(f"test {key}: {figures}")
            break
    print(f"export directory: {result.out}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    check_exists(args.export_dir, "export directory")

    from tlzoo.deploy.export import verify

    report = verify(args.export_dir, parity=not args.hashes_only, public_key=args.public_key)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    signature = report.get("signature") or {}
    if signature.get("valid"):
        print(f"manifest.json signed by key {signature['public_key_sha256'][:16]}...: signature valid")
    elif signature:
        print(f"manifest.json {signature['note']} (--public-key PEM)")
    print(f"{report['files_checked']} files match manifest.json")
    if "parity" in report:
        print_parity(report["parity"], "parity with the stored Keras outputs")
    print(f"{args.export_dir}: verified")
    return 0


def run_keys(args: argparse.Namespace) -> int:
    from tlzoo.deploy.signing import fingerprint, generate_keys, load_public_key

    private, public = generate_keys(args.out)
    print(f"private key: {private} (keep it secret; sign with `tlzoo export ... --sign-key {private}`)")
    print(f"public key:  {public} (give it to whoever verifies: `tlzoo verify EXPORT --public-key {public}`)")
    print(f"fingerprint: sha256 {fingerprint(load_public_key(public))}")
    return 0


def print_parity(parity: dict[str, Any], title: str) -> None:
    from tlzoo.deploy.parity import describe_bounds

    print(title + ":")
    for name, s in parity.items():
        bound = describe_bounds(s["bounds"])
        print(f"  {name:12} max abs diff {s['max_abs_diff']:.3g}  mean {s['mean_abs_diff']:.3g}  "
              f"label agreement {s['agreement']:.1%}  over {s['n']} inputs  "
              f"({bound}: {'ok' if s['passed'] else 'FAILED'})")
