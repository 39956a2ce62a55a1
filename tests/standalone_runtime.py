"""Runs every format of an export with its own runtime only, as a serving machine without tlzoo or
Keras would: ``python standalone_runtime.py EXPORT_DIR IMAGE...`` prints, as JSON, each format's
outputs for each image file (decoded with Pillow, passed as uint8 [1, H, W, C] at its own size).
keras, tf_keras and tlzoo are made unimportable first, and the script fails if any was imported."""
import json
import sys

BLOCKED = ("keras", "tf_keras", "tlzoo")


class Hide:
    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        return None if name.split(".")[0] in BLOCKED else self.inner.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


sys.meta_path[:] = [Hide(f) for f in sys.meta_path]

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def pixels(path):
    a = np.asarray(Image.open(path))
    return (a[..., None] if a.ndim == 2 else a)[None]  # gray files keep one channel; RGBA keeps four


def savedmodel(root):
    import tensorflow as tf

    fn = tf.saved_model.load(root + "/saved_model").signatures["serving_default"]
    return lambda x: {k: v.numpy() for k, v in fn(image=tf.constant(x)).items()}


def onnx(root):
    import onnxruntime as ort

    s = ort.InferenceSession(root + "/model.onnx", providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return lambda x: dict(zip(names, s.run(names, {s.get_inputs()[0].name: x})))


def tflite(root, path):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=f"{root}/{path}").get_signature_runner("serving_default")
    return lambda x: runner(image=x)


def openvino(root, path):
    import openvino as ov

    compiled = ov.Core().compile_model(f"{root}/{path}/model.xml", "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda x: {o.get_any_name(): v for o, v in compiled(x).items()}


def main(root, files):
    formats = json.load(open(root + "/export.json"))["formats"]
    runners = {}
    for name, entry in formats.items():
        if name == "savedmodel":
            runners[name] = savedmodel(root)
        elif name == "onnx":
            runners[name] = onnx(root)
        elif name.startswith("tflite"):
            runners[name] = tflite(root, entry["path"])
        elif name == "openvino":
            runners[name] = openvino(root, entry["path"])
    out = {name: {f: {k: np.asarray(v).tolist() for k, v in run(pixels(f)).items() if k != "anomaly_map"}
                  for f in files} for name, run in runners.items()}
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
