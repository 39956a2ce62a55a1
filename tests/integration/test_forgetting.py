"""Forgetting control: linear CKA, the drift monitor in real runs, the drift bound, its errors."""
import json

import keras
import numpy as np
import pytest
import yaml

from support import fast_config
from tlzoo.extensions.forgetting import (
    DriftMonitor,
    markdown_lines,
    source_top,
)
from tlzoo.train.recipe import adapt
from tlzoo.train.schedule import get_lr_scale, make_optimizer


def _stages(*stages):
    return {"stages": [dict(zip(("name", "epochs", "trainable", "learning_rate"), s), schedule="constant")
                       for s in stages]}


# --- the monitor in runs ------------------------------------------------------------------------------

def test_forgetting_tracked_in_a_pretrained_run(scans_npz, tmp_path, weights_dir):
    out = tmp_path / "r"
    result = adapt(fast_config(data=str(scans_npz), out=str(out), weights="imagenet", forgetting=True,
                               forgetting_reference=32,
                               schedule=_stages(("head", 2, 0, 1e-3), ("all", 2, "all", 1e-2))))
    assert {"forgetting.json", "forgetting.png"} <= {p.name for p in out.iterdir()}
    assert (out / "forgetting.png").stat().st_size > 20_000
    record = json.loads((out / "forgetting.json").read_text())
    groups = record["groups"]
    assert groups[0] == "stem" and groups[-1] == "block_13" and len(groups) == 14  # MobileNet v1 groups
    epochs = record["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2, 3, 4]
    assert [e["stage"] for e in epochs] == [None, "head", "head", "all", "all"]
    for e in epochs[:3]:  # the pretrained state, and the head-only stage: the backbone did not move
        assert all(v == pytest.approx(1.0, abs=1e-6) for v in e["cka"].values()), e["cka"]
        assert e["source_agreement"] == 1.0 and e["source_top5_overlap"] == 1.0
        assert e["source_kl"] == pytest.approx(0.0, abs=1e-6)
    final = epochs[-1]
    assert final["cka_min"] < 0.9 and final["drift_max"] == pytest.approx(1 - final["cka_min"])
    assert final["cka"][final["most_drifted"]] == final["cka_min"]
    assert final["source_agreement"] < 1.0
    assert record["source"]["available"] and "conv_preds" in record["source"]["top"]
    assert record["reference"]["n"] == 32 and len(set(record["reference"]["indices"])) == 32

    # per epoch in the history, the summary in metrics.json, the options in config.yaml
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 4 and history[-1]["cka_min"] == pytest.approx(final["cka_min"])
    assert history[-1][f"drift_{final['most_drifted']}"] == pytest.approx(final["drift_max"])
    assert history[0]["drift_block_13"] == pytest.approx(0.0, abs=1e-6) and history[-1]["lr_scale"] == 1.0
    assert "source_agreement" in (out / "history.csv").read_text().splitlines()[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["forgetting"]["final"]["epoch"] == 4
    assert metrics["forgetting"]["kept"]["epoch"] == metrics["best_epoch"]
    assert result.metrics["forgetting"]["bound"]["max_drift"] is None
    config = yaml.safe_load((out / "config.yaml").read_text())["adapt"]
    assert config["forgetting"] == {"reference": 32, "max_drift": None, "on_drift": "stop"}  # present = on
    card = "\n".join(markdown_lines(metrics["forgetting"]))
    assert "source-task agreement" in card and "no drift bound set" in card and "block_13" in card


def test_max_drift_stops_training_and_keeps_the_best_weights(scans_npz, tmp_path, weights_dir):
    result = adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "r"), weights="imagenet", forgetting=True,
                               forgetting_reference=16, max_drift=0.02,
                               schedule=_stages(("head", 1, 0, 1e-3), ("all", 3, "all", 1e-2),
                                                ("all2", 2, "all", 1e-3))))
    assert [r["stage"] for r in result.history] == ["head", "all"]  # stopped after its first epoch; all2 skipped
    bound = result.metrics["forgetting"]["bound"]
    assert bound["stopped"] and bound["first_passed_epoch"] == 2 and bound["on_drift"] == "stop"
    assert result.metrics["forgetting"]["events"][0]["action"] == "stop"
    assert result.history[-1]["drift_max"] > 0.02
    assert result.metrics["best_epoch"] in (1, 2)
    # the model card built from the run states it
    from tlzoo.deploy.card import build_card, render_markdown
    from tlzoo.deploy.contract import Contract
    from tlzoo.plugin import get_plugin

    contract = Contract(dtype="uint8", shape=[None, 32, 32, 1], task="binary", threshold=0.5, num_outputs=1,
                        class_names=["clear", "opacity"])
    info = {"contract": contract.to_dict(), "parity": {}, "formats": {}, "model_name": "m", "exported_at": "now",
            "test_metrics": {"run": result.metrics["test"]}, "tlzoo_version": "x"}
    card = build_card(run_dir=tmp_path / "r", config=result.config, metrics=result.metrics, history=result.history,
                      plugin=get_plugin("medical-imaging"), export_info=info)
    assert card["forgetting"]["bound"]["stopped"]
    text = render_markdown(card)
    assert "## Forgetting of the pretrained backbone" in text and "training stopped at epoch 2" in text
    assert "source-task agreement" in text


def test_lower_lr_halves_the_learning_rate_across_stages(scans_npz, weights_dir):
    """The Python API, without a source top (source agreement unavailable)."""
    from tlzoo.data import make_dataset, read_npz
    from tlzoo.model.assemble import build_model, find_backbone
    from tlzoo.plugin import get_plugin
    from tlzoo.train.schedule import Stage, apply_stage
    from tlzoo.zoo import build_backbone, layer_groups

    keras.utils.set_random_seed(0)
    plugin = get_plugin("medical-imaging")
    data = read_npz(scans_npz)
    # (a random-init MobileNet with frozen BN barely moves: its activations shrink to ~1e-19 by the top)
    backbone, spec, _ = build_backbone("mobilenet_025", "imagenet", (32, 32, 3))
    model = build_model(plugin, spec, backbone, data.train.x.shape[1:], 32, 2)
    assert find_backbone(model) is backbone
    groups = layer_groups(backbone, spec)
    monitor = DriftMonitor(model, backbone, groups, data.train.x[:16], source=source_top(spec, None),  # no top
                           max_drift=1e-4, on_drift="lower_lr", max_lr_lowerings=3)
    monitor.capture()
    ds = make_dataset(data.train, batch_size=32, training=True, seed=0)
    scales, steps = [], []
    for name, epochs in (("all", 2), ("all_again", 2)):
        apply_stage(backbone, groups, Stage(name, epochs, "all", 1e-2))
        model.compile(optimizer=make_optimizer("sgd", 1e-2), loss=plugin.loss(2))
        monitor.stage = name
        for _ in range(epochs):
            before = [np.array(v) for v in backbone.trainable_weights]
            model.fit(ds, epochs=1, callbacks=[monitor], verbose=0)
            steps.append(sum(float(np.abs(np.array(v) - b).sum()) for v, b in zip(backbone.trainable_weights, before)))
            scales.append(get_lr_scale(model.optimizer))
    # lowered after every epoch that passed the bound, at most 3 times; a new stage's optimizer starts lowered
    assert scales == [0.5, 0.25, 0.125, 0.125]
    assert [r["lr_scale"] for r in monitor.records[1:]] == [1.0, 0.5, 0.25, 0.125]  # in force during each epoch
    assert [e["action"] for e in monitor.events] == ["lower_lr"] * 3 + ["bound passed, no lowering left"]
    assert steps[2] < steps[0]  # SGD updates shrink with the rate (x0.25 in epoch 3)
    summary = monitor.summary()
    assert summary["bound"]["lr_lowerings"] == 3 and summary["bound"]["lr_scale_final"] == 0.125
    assert not summary["source"]["available"] and "random initialisation" in summary["source"]["reason"]
    assert "source_agreement" not in monitor.records[-1]
    assert "learning rate lowered 3x (to x0.125)" in "\n".join(markdown_lines(summary))
    # a group whose output no longer varies over the reference images has forgotten everything: CKA 0, not NaN
    conv = backbone.get_layer("conv_pw_13")
    conv.kernel.assign(np.zeros(conv.kernel.shape, "float32"))
    logs = {}
    monitor.on_epoch_end(4, logs)
    assert monitor.records[-1]["collapsed"] == ["block_13"] and monitor.records[-1]["cka"]["block_13"] == 0.0
    assert logs["drift_block_13"] == 1.0 and logs["drift_max"] == 1.0
