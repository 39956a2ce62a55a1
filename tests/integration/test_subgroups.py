"""Subgroup metrics: the report on planted gaps, the group attribute's journey through splitting and
label subsampling, derived brightness bands, and a tiny adapt run through to the model card."""
import json

# ---------------------------------------------------------------- end to end


def test_adapt_reports_subgroups_and_the_card_warns(subsampled_grouped_run):
    from tlzoo.deploy.card import build_card, render_markdown
    from tlzoo.deploy.contract import Contract
    from tlzoo.plugin import get_plugin

    # the scans with train/val/test_groups site_a, site_b alternating; max_group_gap=0.0, 10 labels per class
    result = subsampled_grouped_run
    out = result.run_dir
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
