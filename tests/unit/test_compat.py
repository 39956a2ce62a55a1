"""tlzoo.compat: every private Keras / TensorFlow name it relies on still exists and behaves on the installed
versions, and no other module reaches into private API."""
from __future__ import annotations

import importlib.util
import inspect
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from tlzoo import compat

ROOT = Path(__file__).resolve().parents[2]
PRIVATE_IMPORT = re.compile(r"\bkeras\.src\b|\btensorflow\.python\b|\btf\.__internal__\b")


def test_every_function_is_listed_with_a_reason() -> None:
    public = {name for name, obj in vars(compat).items()
              if inspect.isfunction(obj) and obj.__module__ == compat.__name__ and not name.startswith("_")}
    listed = {use.function for use in compat.PRIVATE_USES}
    assert listed == public - {"resolve"}
    assert all(use.why and use.checked in (compat.KERAS_CHECKED, compat.TENSORFLOW_CHECKED)
               for use in compat.PRIVATE_USES)


def test_importing_compat_does_not_import_keras() -> None:
    code = "import sys, tlzoo.compat; print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("use", [u for u in compat.PRIVATE_USES if ":" in u.target], ids=lambda u: u.function)
def test_module_targets_resolve(use: compat.PrivateUse) -> None:
    if use.function == "patch_tf2onnx" and importlib.util.find_spec("tf2onnx") is None:
        pytest.skip("tf2onnx is not installed (the export extra)")
    assert compat.resolve(use.target) is not None


def test_keras_applications_fetch_through_file_utils() -> None:
    from keras.src.applications import mobilenet_v2

    assert mobilenet_v2.file_utils is compat.keras_file_utils()
    assert callable(compat.keras_file_utils().get_file)


def test_h5_weights_round_trip(tmp_path: Path) -> None:
    import h5py
    import keras

    def make() -> keras.Model:
        inputs = keras.Input((3,))
        return keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))

    model, other = make(), make()
    with h5py.File(tmp_path / "w.h5", "w") as f:
        compat.save_weights_to_hdf5_group(f, model)
    other.load_weights(tmp_path / "w.h5")
    np.testing.assert_array_equal(other.get_layer("dense").kernel.numpy(), model.get_layer("dense").kernel.numpy())


def test_patch_tf2onnx() -> None:
    pytest.importorskip("tf2onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the patch itself probes np.object
        assert compat.patch_tf2onnx() is True


def test_custom_train_step_pieces() -> None:
    import keras

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
    loss = compat.compute_loss(model, x=x, y=y, y_pred=model(x), training=True)
    assert float(loss) == pytest.approx(float(np.mean(model(x).numpy() ** 2)), rel=1e-5)
    tracker = compat.loss_tracker(model)
    tracker.update_state(compat.unscale_loss_for_distribution(loss), sample_weight=4)
    assert tracker.name == "loss" and float(tracker.result()) == pytest.approx(float(loss))


def test_optimizer_variable_index() -> None:
    import keras

    a, b = keras.Variable(np.zeros(2), name="a"), keras.Variable(np.zeros(3), name="b")
    optimizer = keras.optimizers.Adam()
    optimizer.build([a, b])
    assert [compat.optimizer_variable_index(optimizer, v) for v in (b, a)] == [1, 0]


def test_layer_graph_helpers() -> None:
    import keras

    inner_in = keras.Input((3,))
    inner = keras.Model(inner_in, keras.layers.Dense(2, name="inner_dense")(inner_in), name="inner")
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(3, name="pre")(inputs)
    outer = keras.Model([inputs], inner(hidden), name="outer")
    assert "inner_dense" in [layer.name for layer in compat.flatten_layers(outer)]
    node = compat.last_call_node(inner)
    assert node.input_tensors[0] is hidden and node.output_tensors[0] is outer.outputs[0]
    assert isinstance(compat.functional_input_structure(outer), list)
    assert not isinstance(compat.functional_input_structure(inner), list)

    layer = keras.layers.Layer()
    variable = keras.Variable(np.zeros(2), name="extra")
    compat.track_variable(layer, variable)
    assert variable in layer.weights


def test_adopted_variable_shares_storage() -> None:
    import tensorflow as tf

    tf_var = tf.Variable(np.ones(3, np.float32), name="restored")
    kv = compat.adopt_variable(tf_var, trainable=False, name="restored")
    tf_var.assign([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(kv.numpy(), [1.0, 2.0, 3.0])
    assert not kv.trainable and kv.value is tf_var


def test_function_has_argument_on_a_restored_function(tmp_path: Path) -> None:
    import tensorflow as tf

    class WithTraining(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.bool)])
        def __call__(self, x, training=False):
            return x

    tf.saved_model.save(WithTraining(), str(tmp_path / "m"))
    restored = tf.saved_model.load(str(tmp_path / "m"))
    assert compat.function_has_argument(restored.__call__, "training")
    assert not compat.function_has_argument(restored.__call__, "mask")


def test_no_private_keras_or_tensorflow_outside_compat() -> None:
    offenders = []
    for folder in ("tlzoo", "plugins"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "tlzoo" / "compat.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if PRIVATE_IMPORT.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "private Keras / TensorFlow API outside tlzoo/compat.py:\n" + "\n".join(offenders)
