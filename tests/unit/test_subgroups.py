"""Subgroup metrics: the report on planted gaps, the group attribute's journey through splitting and
label subsampling, derived brightness bands, and a tiny adapt run through to the model card."""

import numpy as np
import pytest
from sklearn import metrics as skm

from tlzoo.data import DataSplits, Split, read_npz, subsample_labels
from tlzoo.errors import ConfigError, DataError
from tlzoo.evaluation.metrics import binary_metrics
from tlzoo.extensions.subgroup_attributes import assign_groups
from tlzoo.extensions.subgroups import card_section, markdown_lines, subgroup_report


def planted(n_per_group: int, seed: int = 0):
    """Groups A and B alike, except that B's positives score much lower: a true-positive-rate gap."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(["A", "B"], n_per_group)
    y = rng.integers(0, 2, 2 * n_per_group)
    p = np.where(y == 1, rng.normal(0.8, 0.1, len(y)), rng.normal(0.2, 0.1, len(y)))
    p = np.where((groups == "B") & (y == 1), p - 0.35, p)
    return y, np.clip(p, 0, 1), groups


# ---------------------------------------------------------------- the report


def test_planted_tpr_gap_is_found_named_and_flagged():
    y, p, groups = planted(300)
    report = subgroup_report(y, p, groups, task="binary", threshold=0.5, max_gap=0.2)
    gap = report["gaps"]["sensitivity"]
    assert report["tpr_gap"] == gap["gap"] > 0.4
    assert gap["max"]["group"] == "A" and gap["min"]["group"] == "B"
    assert gap["ci"][0] > 0.2  # clearly beyond the maximum, not noise
    assert report["fpr_gap"] < 0.1  # negatives were scored alike
    assert report["flagged"] and "sensitivity" in report["exceeded"] and "fpr" not in report["exceeded"]
    assert report["largest_gap"]["metric"] == "sensitivity"
    lenient = subgroup_report(y, p, groups, task="binary", threshold=0.5, max_gap=0.9)
    assert not lenient["flagged"] and lenient["exceeded"] == []
    # each group's point estimates are the ordinary metrics of that group
    for g in ("A", "B"):
        m, ref = report["groups"][g]["metrics"], binary_metrics(y[groups == g], p[groups == g], 0.5)
        for key in ("roc_auc", "accuracy", "sensitivity", "specificity", "precision"):
            assert m[key]["value"] == pytest.approx(ref[key])
        assert m["fpr"]["value"] == pytest.approx(1 - ref["specificity"])
        assert report["groups"][g]["positives"] == int(y[groups == g].sum())


def test_intervals_hold_the_estimate_and_shrink_with_more_samples():
    widths = []
    for n in (60, 1500):
        y, p, groups = planted(n, seed=1)
        report = subgroup_report(y, p, groups, task="binary", threshold=0.5, n_boot=400, seed=3)
        for entry in report["groups"].values():
            for cell in entry["metrics"].values():
                assert cell["ci"][0] - 1e-12 <= cell["value"] <= cell["ci"][1] + 1e-12
        ci = report["groups"]["B"]["metrics"]["accuracy"]["ci"]
        widths.append(ci[1] - ci[0])
    assert widths[1] < widths[0] / 3
    again = subgroup_report(y, p, groups, task="binary", threshold=0.5, n_boot=400, seed=3)
    assert again["groups"]["B"]["metrics"]["accuracy"]["ci"] == ci  # seeded: reproducible


def test_tiny_and_one_class_groups_get_null_with_a_reason():
    y, p, groups = planted(100)
    groups = groups.astype(object)
    groups[:4] = "tiny"
    negatives_only = np.flatnonzero(y == 0)[-20:]
    groups[negatives_only] = "no_pos"
    report = subgroup_report(y, p, groups.astype(str), task="binary", threshold=0.5)
    tiny = report["groups"]["tiny"]
    assert tiny["n"] == 4 and all(c["value"] is None and "4 samples" in c["reason"] for c in tiny["metrics"].values())
    no_pos = report["groups"]["no_pos"]["metrics"]
    assert no_pos["sensitivity"]["value"] is None and no_pos["roc_auc"]["value"] is None
    assert no_pos["accuracy"]["value"] is not None and no_pos["fpr"]["value"] is not None
    assert report["gaps"]["sensitivity"]["groups_compared"] == 2  # A and B only
    lines = "\n".join(markdown_lines(card_section(report)))
    assert "n/a (only 4 samples, fewer than 10)" in lines and "n/a (needs both classes; no positives)" in lines
    single = subgroup_report(y[:50], p[:50], np.full(50, "all"), task="binary", threshold=0.5, max_gap=0.1)
    assert single["gaps"]["accuracy"]["gap"] is None and not single["flagged"]


def test_multiclass_report_matches_sklearn_per_group():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    probs = rng.random((400, 4))
    probs[np.arange(400), y] += np.where(np.arange(400) < 200, 0.6, 0.1)  # group 0 is easier
    groups = (np.arange(400) >= 200).astype(int)
    report = subgroup_report(y, probs, groups, task="multiclass", max_gap=0.1)
    for g, sel in (("0", slice(0, 200)), ("1", slice(200, 400))):
        m = report["groups"][g]["metrics"]
        pred = probs[sel].argmax(1)
        assert m["accuracy"]["value"] == pytest.approx((pred == y[sel]).mean())
        assert m["macro_f1"]["value"] == pytest.approx(skm.f1_score(y[sel], pred, average="macro"))
    assert report["gaps"]["accuracy"]["max"]["group"] == "0" and report["flagged"]
    assert "tpr_gap" not in report


# ---------------------------------------------------------------- data plumbing


def indexed_npz(path, n=120, **extra):
    """Images whose pixels hold the sample index; a `groups` array holding it too."""
    idx = np.arange(n)
    x = np.broadcast_to(idx[:, None, None, None], (n, 4, 4, 1)).astype(np.float32)
    np.savez(path, images=x, labels=idx % 2, groups=idx, filenames=np.array([f"f/{i}_x.png" for i in idx]), **extra)
    return path


def test_groups_travel_with_samples_through_split_and_subsampling(tmp_path):
    data = read_npz(indexed_npz(tmp_path / "d.npz"), seed=3)
    assert data.group_by == "groups"
    for s in (data.train, data.val, data.test):
        np.testing.assert_array_equal(s.groups, s.x[:, 0, 0, 0])
        assert [f"f/{i}_x.png" for i in s.groups] == s.attributes["filenames"].tolist()
    few = subsample_labels(data.train, per_class=7, seed=1)
    assert len(few) == 14
    np.testing.assert_array_equal(few.groups, few.x[:, 0, 0, 0])
    # MedMNIST layout, val split off train: train_groups travel the same way
    full = read_npz(tmp_path / "d.npz")
    np.savez(tmp_path / "m.npz", train_images=full.train.x, train_labels=full.train.y, train_groups=full.train.groups,
             test_images=full.test.x, test_labels=full.test.y, test_groups=full.test.groups)
    med = read_npz(tmp_path / "m.npz")
    for s in (med.train, med.val, med.test):
        np.testing.assert_array_equal(s.groups, s.x[:, 0, 0, 0])
    assert "groups" in med.summary()["val"] and med.summary()["group_by"] == "groups"


def test_fingerprint_counts_groups_only_when_present(tmp_path):
    n = 60
    x, y = np.zeros((n, 4, 4, 1), np.uint8), np.arange(n) % 2
    np.savez(tmp_path / "a.npz", images=x, labels=y)
    np.savez(tmp_path / "b.npz", images=x, labels=y, site=np.arange(n))  # another key: no effect
    np.savez(tmp_path / "c.npz", images=x, labels=y, groups=np.arange(n) % 3)
    a, b, c = (read_npz(tmp_path / f"{k}.npz").fingerprint() for k in "abc")
    assert a == b != c


def test_group_by_a_stored_key_and_its_errors(tmp_path):
    path = indexed_npz(tmp_path / "d.npz", n=400, site=np.where(np.arange(400) < 200, "north", "south"))
    data = assign_groups(read_npz(path), "site", task="binary")
    assert data.group_by == "site" and set(np.unique(data.test.groups)) == {"north", "south"}
    np.testing.assert_array_equal(data.test.groups == "north", data.test.x[:, 0, 0, 0] < 200)
    with pytest.raises(DataError, match=r"'hospital'.*\['groups', 'filenames', 'site'\]"):
        assign_groups(read_npz(path), "hospital", task="binary")
    with pytest.raises(DataError, match="80 distinct values"):  # the index itself: not a grouping
        assign_groups(read_npz(path), "groups", task="binary")
    implicit = assign_groups(read_npz(path), None, task="binary")  # not asked for: dropped with a note
    assert implicit.test.groups is None and any("80 distinct values" in n for n in implicit.notes)
    with pytest.raises(DataError, match="repeats the class label"):
        d = read_npz(path)
        for s in (d.train, d.val, d.test):
            s.attributes["cls"] = s.y.astype(str)
        assign_groups(d, "cls", task="binary")
    with pytest.raises(ConfigError, match="max_group_gap=0.1 needs a group attribute"):
        np.savez(tmp_path / "plain.npz", images=np.zeros((40, 4, 4, 1)), labels=np.arange(40) % 2)
        assign_groups(read_npz(tmp_path / "plain.npz"), None, task="binary", max_gap=0.1)
    with pytest.raises(ConfigError, match="multilabel"):
        assign_groups(read_npz(path), "site", task="multilabel")


def test_filename_prefix_group():
    names = np.array([f"MT_Free/exp{i % 3 + 1}_num_{i}.jpg" for i in range(90)])
    full = Split(np.zeros((90, 2, 2, 1)), np.arange(90) % 2, attributes={"filenames": names})
    data = DataSplits(full.take(np.arange(60)), full.take(np.arange(60, 75)), full.take(np.arange(75, 90)), ["a", "b"],
                      "mem")
    assign_groups(data, "filename_prefix", task="binary")
    assert data.test.groups.tolist() == [f"exp{i % 3 + 1}" for i in range(75, 90)]


def test_brightness_bands_use_train_edges():
    def images(means):
        return np.asarray(means, np.float32)[:, None, None, None] * np.ones((1, 4, 4, 1), np.float32)

    def y(n):
        return np.arange(n) % 2
    train = Split(images(np.linspace(0, 90, 90)), y(90))  # edges at 30 and 60
    val = Split(images([10, 50, 80, 20]), y(4))
    test = Split(images([100, 200, 250, 70]), y(4))  # all above the train edges: all "bright"
    data = assign_groups(DataSplits(train, val, test, ["a", "b"], "mem"), "brightness", task="binary")
    assert data.test.groups.tolist() == ["bright"] * 4
    assert data.val.groups.tolist() == ["dark", "mid", "bright", "dark"]
    assert np.unique(data.train.groups, return_counts=True)[1].tolist() == [30, 30, 30]
    assert any("brightness" in n and "30" in n and "60" in n for n in data.notes)
