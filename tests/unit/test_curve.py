"""The label-efficiency report: runs per (condition, budget, seed), resume, the summary's answer,
and the compute budget that shrinks schedules."""

import pytest

from tlzoo.analysis.curve import label_curve, summarise
from tlzoo.errors import ConfigError
from tlzoo.train.schedule import FreezeSchedule


def _run(cond, frac, seed, value, n):
    return {"condition": cond, "fraction": frac, "seed": seed, "n_train": n, "test": {"roc_auc": value},
            "wall_time_s": 1.0}


def test_summary_finds_the_smallest_matching_budget() -> None:
    runs = [_run("transfer", 0.1, s, v, 50) for s, v in enumerate((0.80, 0.82, 0.81))]
    runs += [_run("transfer", 0.25, s, v, 125) for s, v in enumerate((0.90, 0.92, 0.91))]
    runs += [_run("transfer", 1.0, s, v, 500) for s, v in enumerate((0.95, 0.96, 0.97))]
    runs += [_run("scratch", 1.0, s, v, 500) for s, v in enumerate((0.90, 0.905, 0.91))]
    s = summarise(runs, "roc_auc")
    row = s["table"]["transfer"][1]
    assert row["n_labels"] == 125 and row["mean"] == pytest.approx(0.91) and (row["min"], row["max"]) == (0.90, 0.92)
    m = s["answer"]["smallest_matching"]
    assert m["fraction"] == 0.25 and m["label_reduction"] == pytest.approx(4.0)
    assert s["answer"]["reference"]["mean"] == pytest.approx(0.905)
    worse = [r | {"test": {"roc_auc": 0.5}} if r["condition"] == "transfer" else r for r in runs]
    assert summarise(worse, "roc_auc")["answer"]["smallest_matching"] is None


def test_budget_shrinks_each_stage_and_keeps_at_least_one_epoch() -> None:
    schedule = FreezeSchedule.fine_tune(epochs=25, freeze_epochs=3)
    assert schedule.within_budget(469, None) is schedule
    assert schedule.within_budget(469, 10**6) is schedule  # already within
    small = schedule.within_budget(4690, 4690 * 7)
    assert [s.epochs for s in small.stages] == [1, 6] and small.total_epochs <= 7
    assert all(s.warmup_epochs < s.epochs for s in small.stages)
    with pytest.raises(ConfigError, match="max_samples_seen must be >= 1"):
        schedule.within_budget(10, 0)


def test_bad_requests_fail_before_any_run(tmp_path) -> None:
    for kw, msg in (({"fractions": [0.0, 0.5]}, "label fractions must be in"),
                    ({"fractions": [1.5]}, "label fractions must be in"), ({"seeds": []}, "at least one seed"),
                    ({"baseline": "imagenet21k"}, "baseline must be 'scratch' or None")):
        with pytest.raises(ConfigError, match=msg):
            label_curve(plugin="medical-imaging", data="x.npz", out=str(tmp_path / "c"), **kw)
    assert not (tmp_path / "c" / "runs").exists()
