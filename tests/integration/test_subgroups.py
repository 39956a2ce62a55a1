"""Subgroup metrics: the report on planted gaps, the group attribute's journey through splitting and
label subsampling, derived brightness bands, and a tiny adapt run through to the model card."""
import json

import numpy as np
from support import fast_config



# ---------------------------------------------------------------- end to end


def test_adapt_reports_subgroups_and_the_card_warns(scans_npz, tmp_path):
    from tlzoo.deploy.card import build_card, render_markdown
    from tlzoo.deploy.export import Contract
    from tlzoo.plugin import get_plugin
    from tlzoo.train.recipe import adapt

    arrays = dict(np.load(scans_npz))
    for s in ("train", "val", "test"):
        n = len(arrays[f"{s}_labels"])
        arrays[f"{s}_groups"] = np.array(["site_a", "site_b"])[np.arange(n) % 2]
    np.savez(tmp_path / "grouped.npz", **arrays)
    out = tmp_path / "run"
    result = adapt(fast_config(data=str(tmp_path / "grouped.npz"), out=str(out), max_group_gap=0.0,
                               labels_per_class=20))
    report = json.loads((out / "metrics.json").read_text())["subgroups"]
    assert report["attribute"] == "groups" and list(report["groups"]) == ["site_a", "site_b"]
    assert sum(g["n"] for g in report["groups"].values()) == 64
    assert (out / "subgroups.png").stat().st_size > 5000
    assert result.config["data"]["test"]["groups"] == {"site_a": 32, "site_b": 32}
    assert result.config["adapt"]["subgroups"]["max_gap"] == 0.0

    contract = Contract(dtype="uint8", shape=[None, 32, 32, 1], task="binary", threshold=0.5, num_outputs=1,
                        class_names=["clear", "opacity"])
    info = {"contract": contract.to_dict(), "parity": {}, "formats": {}, "model_name": "m", "exported_at": "now",
            "test_metrics": {"run": result.metrics["test"]}, "tlzoo_version": "x"}
    card = build_card(run_dir=out, config=result.config, metrics=result.metrics, history=result.history,
                      plugin=get_plugin("medical-imaging"), export_info=info)
    text = render_markdown(card)
    assert "## Subgroups" in text and "| group | n | accuracy | sensitivity | fpr | roc_auc |" in text
    assert "| site_a | 32 (" in text
    if report["flagged"]:  # a gap of exactly 0 on every metric is possible, if unlikely
        assert "**WARNING: subgroup gap by 'groups' exceeds the declared maximum 0" in text
        assert any(x.startswith("WARNING") for x in card["limitations"])
