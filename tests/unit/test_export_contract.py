"""The export contract without a model: input checks, empty outputs, the borderline parity samples,
the parity bounds (labels included) and the contract's round trip."""
import numpy as np
import pytest

from tlzoo.deploy.contract import ANOMALY, Contract
from tlzoo.deploy.parity import borderline, compare, summarise
from tlzoo.deploy.runners import check_batch, empty_outputs
from tlzoo.errors import DataError


def image_contract(**kw) -> Contract:
    return Contract(**{"dtype": "uint8", "shape": [None, 28, 28, 1], "task": "binary", "threshold": 0.5,
                       "num_outputs": 1, "class_names": ["normal", "pneumonia"], **kw})


def test_images_of_any_size_and_mode_pass_and_bad_ones_are_named():
    c = image_contract()
    assert check_batch(np.zeros((2, 64, 48, 3), np.uint8), c).shape == (2, 64, 48, 3)
    assert check_batch(np.zeros((2, 28, 28), np.uint8), c).shape == (2, 28, 28, 1)  # MedMNIST's [N, H, W]
    assert check_batch(np.full((1, 5, 5, 4), 200, np.int32), c).dtype == np.uint8  # integers within 0-255
    with pytest.raises(DataError, match="uint8 pixels .* got dtype float64. Images scaled to 0-1"):
        check_batch(np.zeros((1, 28, 28, 1)), c)
    with pytest.raises(DataError, match=r"got an array of shape \[28, 28\]"):
        check_batch(np.zeros((28, 28), np.uint8), c)
    with pytest.raises(DataError, match=r"shape \[1, 28, 28, 6\]"):
        check_batch(np.zeros((1, 28, 28, 6), np.uint8), c)
    with pytest.raises(DataError, match="values from 0 to 300"):
        check_batch(np.array([[[[0]], [[300]]]], np.int16), c)
    with pytest.raises(DataError, match="height and width must be at least 1"):
        check_batch(np.zeros((1, 0, 5, 3), np.uint8), c)


def test_series_keep_their_shape_and_refuse_nan():
    c = Contract(dtype="float32", shape=[None, 30, 2], task="binary", threshold=0.5, num_outputs=1, class_names=[])
    assert check_batch(np.zeros((3, 30, 2), np.float64), c).dtype == np.float32
    with pytest.raises(DataError, match=r"shape \[None, 30, 2\] .* got \[3, 29, 2\]"):
        check_batch(np.zeros((3, 29, 2)), c)
    x = np.zeros((2, 30, 2))
    x[1, 7, 0] = np.nan
    with pytest.raises(DataError, match="1 NaN or infinite"):
        check_batch(x, c)


def test_an_empty_batch_has_every_output_with_its_dtype():
    out = empty_outputs(image_contract())
    assert {k: (v.shape, v.dtype) for k, v in out.items()} == {
        "probabilities": ((0, 1), np.float32), "label": ((0,), np.int64)}
    anomaly = image_contract(kind=ANOMALY, score_range={"min": 1.0, "max": 3.0},
                             extra_outputs={"anomaly_map": {"dtype": "float32", "shape": [None, 28, 28]}})
    assert {k: v.shape for k, v in empty_outputs(anomaly).items()} == {
        "score": (0,), "raw_score": (0,), "label": (0,), "anomaly_map": (0, 28, 28)}


def test_contract_round_trip_keeps_the_model_shape_and_anomaly_range():
    c = image_contract(kind=ANOMALY, threshold=23.4, score_range={"min": 10.0, "max": 30.0},
                       extra_outputs={"anomaly_map": {"dtype": "float32", "shape": [None, 28, 28]}})
    d = c.to_dict()
    assert d["input"]["shape"] == [None, None, None, None] and d["input"]["model_shape"] == [None, 28, 28, 1]
    assert d["outputs"]["score"]["rule"] == "clip((raw_score - 23.4) / (30 - 10) + 0.5, 0, 1)"
    back = Contract.from_dict(d)
    assert back == c


def test_borderline_takes_both_sides_of_the_threshold_or_the_smallest_margin():
    c = image_contract()
    p = np.array([[0.1], [0.49], [0.52], [0.9], [0.51], [0.2]], np.float32)
    assert sorted(borderline({"probabilities": p}, c, 2).tolist()) == [1, 4]  # 0.49 below, 0.51 above
    assert sorted(borderline({"probabilities": p}, c, 4).tolist()) == [1, 2, 4, 5]
    multi = Contract(dtype="uint8", shape=[None, 8, 8, 3], task="multiclass", threshold=0.5, num_outputs=3,
                     class_names=["a", "b", "c"])
    p3 = np.array([[0.8, 0.1, 0.1], [0.4, 0.35, 0.25], [0.34, 0.33, 0.33], [0.1, 0.1, 0.8]], np.float32)
    assert borderline({"probabilities": p3}, multi, 2).tolist() == [2, 1]


def test_parity_fails_on_labels_even_when_values_agree():
    ref = {"probabilities": np.array([[0.49], [0.51]], np.float32), "label": np.array([0, 1])}
    moved = {"probabilities": ref["probabilities"], "label": np.array([0, 0])}  # a threshold of 0.9
    s = summarise({"samples": compare(ref, moved)}, {"max_abs_diff": 1e-4, "min_agreement": 1.0})
    assert s["max_abs_diff"] == 0 and s["agreement"] == 0.5 and not s["passed"]
    assert s["failed"] == {"min_agreement": 0.5}
    assert summarise({"samples": compare(ref, ref)}, {"max_abs_diff": 1e-4, "min_agreement": 1.0})["passed"]


def test_multiclass_metrics_take_a_quantised_softmax():
    """A quantised softmax sums to 1 only roughly; the test metrics of that format are still computed."""
    from tlzoo.deploy.export import _evaluate
    from tlzoo.plugin import get_plugin

    plugin = get_plugin("defect-detection")
    c = Contract(dtype="uint8", shape=[None, 8, 8, 1], task="multiclass", threshold=0.5, num_outputs=3,
                 class_names=["a", "b", "c"])
    y = np.array([0, 1, 2, 0, 1, 2])
    probs = np.eye(3, dtype=np.float32)[y] * 0.98 + 0.006  # rows sum to 0.998, in steps as int8 gives
    m = _evaluate(plugin, y, {"probabilities": probs, "label": probs.argmax(-1)}, c)
    assert m["accuracy"] == 1.0
