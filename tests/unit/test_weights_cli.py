"""``tlzoo weights list|verify|import|fetch``: what this machine has, pins, and the mirror."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support import cli_json
from tlzoo.cli.main import main
from tlzoo.errors import WeightsError
from tlzoo.zoo import build_backbone
from tlzoo.zoo.hub import cache_key
from tlzoo.zoo.keras_weight_files import KERAS_WEIGHT_FILES
from tlzoo.zoo.weights import sha256_of

V1_FILE = "mobilenet_2_5_224_tf_no_top.h5"


def test_file_table_is_what_keras_asks_for():
    """Re-derive two entries by intercepting Keras' own download call."""
    from tlzoo.compat import keras_file_utils
    from tlzoo.zoo import get_backbone_spec

    file_utils = keras_file_utils()

    class Asked(Exception):
        pass

    def intercept(fname=None, origin=None, *a, **k):
        raise Asked(fname, origin, k.get("file_hash"))

    original, file_utils.get_file = file_utils.get_file, intercept
    try:
        for name in ("mobilenet_025", "mobilenet_v2"):
            spec = get_backbone_spec(name)
            with pytest.raises(Asked) as info:
                spec.builder(weights="imagenet", input_shape=(224, 224, 3), include_top=False, **spec.builder_kwargs)
            assert tuple(info.value.args) == KERAS_WEIGHT_FILES[name]
    finally:
        file_utils.get_file = original


def test_import_pins_and_verify_catches_a_changed_file(mirror, made_v1, capsys):
    assert main(["weights", "import", str(made_v1), "--backbone", "mobilenet_025"]) == 0
    placed = mirror / V1_FILE
    digest = sha256_of(made_v1)
    assert sha256_of(placed) == digest
    assert f"{digest}  {V1_FILE}" in (mirror / "SHA256SUMS").read_text().splitlines()
    capsys.readouterr()
    code, results = cli_json(capsys, ["weights", "verify", "--json"])
    assert code == 0 and [(r["backbone"], r["status"]) for r in results] == [("mobilenet_025", "ok")]
    # the backbone now builds from the mirror, and the weights are the imported ones
    model, _, record = build_backbone("mobilenet_025", "imagenet", (96, 96, 3))
    assert record.source == "mirror" and record.sha256 == digest
    data = bytearray(placed.read_bytes())  # damage the mirrored copy: one byte
    data[len(data) // 2] ^= 0xFF
    placed.write_bytes(bytes(data))
    code, results = cli_json(capsys, ["weights", "verify", "--json"])
    assert code == 1 and results[0]["status"] == "mismatch"
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        build_backbone("mobilenet_025", "imagenet", (96, 96, 3))


def _tiny_savedmodel(path: Path) -> Path:
    import tensorflow as tf

    obj = tf.Module()
    obj.w = tf.Variable(np.arange(12, dtype="float32").reshape(3, 4), name="head/w")
    obj.__call__ = tf.function(lambda x: tf.reduce_mean(x, axis=[1, 2]) @ obj.w,
                               input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    tf.saved_model.save(obj, str(path))
    return path


def test_hub_savedmodel_import_into_the_mirror_and_tfhub_cache(mirror, tmp_path, monkeypatch, capsys):
    sm = _tiny_savedmodel(tmp_path / "sm")
    handle = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"
    with pytest.raises(WeightsError, match="not available offline"):
        build_backbone("hub_mobilenet_v2_100", "imagenet", (32, 32, 3))
    # TFHUB_CACHE_DIR is honoured (tensorflow_hub's layout: <cache>/<sha1 of handle>)
    cache = tmp_path / "tfhub"
    _tiny_savedmodel(cache / cache_key(handle))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    _, _, record = build_backbone("hub_mobilenet_v2_100", "imagenet", (32, 32, 3))
    assert record.source == "tfhub-cache"
    assert main(["weights", "import", str(sm), "--backbone", "hub_mobilenet_v2_100"]) == 0
    assert (mirror / "hub" / cache_key(handle) / "saved_model.pb").is_file()
    model, _, record = build_backbone("hub_mobilenet_v2_100", "imagenet", (32, 32, 3))
    assert record.source == "mirror"  # the mirror comes before the TF-Hub cache
    assert f"{record.sha256}  hub/{cache_key(handle)}" in (mirror / "SHA256SUMS").read_text()
    np.testing.assert_allclose(np.asarray(model(np.ones((1, 32, 32, 3), "float32"))), [[12, 15, 18, 21]])
    capsys.readouterr()
    code, results = cli_json(capsys, ["weights", "verify", "hub_*", "--json"])
    assert code == 0 and [(r["backbone"], r["status"], r["source"]) for r in results] == [
        ("hub_mobilenet_v2_100", "ok", "mirror")]


def test_fetch_downloads_verifies_and_pins(mirror, made_v1, monkeypatch, capsys):
    assert main(["weights", "fetch", "mobilenet_025"]) == 2
    assert "downloads are disabled" in capsys.readouterr().err
    # A file:// origin stands in for Keras' URL: the real download code path, no network.
    monkeypatch.setitem(KERAS_WEIGHT_FILES, "mobilenet_025", (V1_FILE, made_v1.resolve().as_uri(), None))
    monkeypatch.setenv("TLZOO_OFFLINE", "0")
    assert main(["weights", "fetch", "mobilenet_025"]) == 0
    assert sha256_of(mirror / V1_FILE) == sha256_of(made_v1)
    assert (mirror / "SHA256SUMS").read_text().split() == [sha256_of(made_v1), V1_FILE]
