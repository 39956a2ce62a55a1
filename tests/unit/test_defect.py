"""Defect-detection plugin: PatchCore pieces, anomaly recipe + export, classify mode, bad input.

Small generated textures; a randomly initialised small_cnn backbone keeps it fast. Real-data figures
come from benchmarks/defect_detection.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from defect_support import textures, write_tiles_npz
from tlzoo.errors import ConfigError, DataError


@pytest.fixture
def tiles_npz(tmp_path: Path) -> Path:
    return write_tiles_npz(tmp_path / "tiles.npz")


def small_pc(**kw):
    from tlzoo.anomaly import PatchCore, PatchCoreConfig

    base = dict(backbone="small_cnn", weights=None, input_size=32, levels=("block2", "block3"), coreset_ratio=0.25)
    return PatchCore(PatchCoreConfig(**{**base, **kw}))


# ---------------------------------------------------------------- pieces


def test_greedy_coreset_covers_every_cluster_better_than_random():
    from tlzoo.anomaly import greedy_coreset

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 20, (8, 16))
    sizes = [500, 300, 100, 50, 20, 10, 5, 3]  # unbalanced: random sampling misses the small ones
    x = np.concatenate([c + rng.normal(0, 0.5, (n, 16)) for c, n in zip(centres, sizes)]).astype(np.float32)
    labels = np.repeat(np.arange(8), sizes)
    idx = greedy_coreset(x, 8, projection_dim=8, seed=0)
    assert sorted(labels[idx].tolist()) == list(range(8))  # one pick per cluster

    def radius(sel):
        d = ((x[:, None, :] - x[sel][None]) ** 2).sum(-1)
        return np.sqrt(d.min(1)).max()

    assert radius(greedy_coreset(x, 40, seed=1)) < 0.5 * radius(rng.choice(len(x), 40, replace=False))
    with pytest.raises(ConfigError, match="coreset size must be in 1..988"):
        greedy_coreset(x, 0)


def test_false_alarm_threshold_respects_the_budget_and_needs_enough_normals():
    from tlzoo.anomaly import false_alarm_threshold

    scores = np.random.default_rng(0).normal(size=200)
    for budget in (0.01, 0.05, 0.2):
        t = false_alarm_threshold(scores, budget)
        assert (scores >= t).mean() <= budget
        assert (scores >= t).sum() == int(budget * 200)  # the lowest such threshold: uses the whole budget
    with pytest.raises(DataError, match=r"99 held-out normal image\(s\) cannot set a threshold for a 0.01 "
                                        r"false-alarm rate \(at least 100 needed\)"):
        false_alarm_threshold(scores[:99], 0.01)
    with pytest.raises(ConfigError, match="max_false_alarm must be in"):
        false_alarm_threshold(scores, 1.5)


def test_mixed_sizes_are_resized_once_with_a_note(caplog):
    from tlzoo.anomaly.patchcore import images_to_batch

    ims = [np.full((32, 32), 7, np.uint8)] * 3 + [np.full((40, 48), 9, np.uint8)]
    batch, note = images_to_batch(ims, "parts")
    assert batch.shape == (4, 32, 32, 1) and batch.dtype == np.uint8 and batch[3].max() == 9
    assert note == "parts: images come in 2 sizes; 1 resized to the most common 32x32 (bilinear)"
    good, _ = textures(8, seed=1)
    with caplog.at_level("WARNING"):
        small_pc().fit(list(good[:7, :, :, 0]) + [np.full((40, 40), 128, np.uint8)], verbose=False)
    assert [r.message for r in caplog.records if "resized" in r.message] == [
        "normal images: images come in 2 sizes; 1 resized to the most common 32x32 (bilinear)"]


def test_patchcore_finds_and_locates_defects():
    from sklearn.metrics import roc_auc_score

    good, _ = textures(60, seed=1)
    test_good, _ = textures(30, seed=3)
    test_bad, centres = textures(30, defect=True, seed=4)
    pc = small_pc().fit(good, verbose=False)
    # small_cnn at 32 px: an 8x8 patch grid of block2 (64) + block3 (128) features
    assert pc.fit_info["bank_size"] == 0.25 * 60 * 8 * 8 and pc.fit_info["dim"] == 64 + 128
    assert [lv["group"] for lv in pc.fit_info["levels"]] == ["block2", "block3"]
    scores, maps = pc.score(np.concatenate([test_good, test_bad]))
    assert maps.shape == (60, 32, 32)
    assert roc_auc_score(np.r_[np.zeros(30), np.ones(30)], scores) > 0.95
    at_spot = maps[30:][np.arange(30), centres[:, 0], centres[:, 1]]
    assert (at_spot > np.percentile(maps[:30], 99)).mean() >= 0.8  # the map is hot where the spot is
    np.testing.assert_allclose(scores, maps.reshape(60, -1).max(1), rtol=0, atol=0.5)  # map ~ upsampled patch scores


def test_views_make_scores_invariant_to_the_views_and_turn_maps_back():
    """With every flip in the bank and averaged at scoring, a flipped image scores as the image itself and
    its map is the image's map flipped; likewise for quarter turns. Each view's patch grid is turned back
    before the maps are averaged (else a mirrored view's hot spot would land on the wrong side)."""
    from tlzoo.anomaly.patchcore import VIEWS, DihedralView

    x = np.arange(2 * 6 * 6 * 1, dtype=np.float32).reshape(2, 6, 6, 1)
    for turns, mirror in VIEWS["d4"]:  # each view undone by its inverse, on images and on patch grids
        seen = DihedralView(turns, mirror)(x)
        np.testing.assert_array_equal(DihedralView(turns, mirror, inverse=True)(seen), x)
        np.testing.assert_array_equal(DihedralView(turns, mirror, inverse=True)(seen[..., 0]), x[..., 0])
    np.testing.assert_array_equal(DihedralView(2, True)(x), x[:, ::-1])  # "flips": up-down as its third view

    good, _ = textures(24, seed=1)
    bad, centres = textures(6, defect=True, seed=4)
    plain = small_pc().fit(good, verbose=False)
    for views, moved in (("flips", bad[:, :, ::-1]), ("rot90", np.rot90(bad, 1, axes=(1, 2)))):
        pc = small_pc(views=views).fit(good, verbose=False)
        assert pc.fit_info["views"] == views and pc.fit_info["patches"] == 4 * 24 * 8 * 8
        assert pc.fit_info["bank_size"] == 0.25 * 4 * 24 * 8 * 8
        scores, maps = pc.score(bad)
        moved_scores, moved_maps = pc.score(np.ascontiguousarray(moved))
        np.testing.assert_allclose(moved_scores, scores, rtol=1e-4)
        expected = maps[:, :, ::-1] if views == "flips" else np.rot90(maps, 1, axes=(1, 2))
        np.testing.assert_allclose(moved_maps, expected, rtol=1e-4, atol=1e-4)
        at_spot = maps[np.arange(6), centres[:, 0], centres[:, 1]]
        assert (at_spot > np.median(maps.reshape(6, -1), axis=1)).all()  # still hot where the defect is
    assert not np.allclose(plain.score(bad[:, :, ::-1])[0], plain.score(bad)[0], rtol=1e-4)  # without views: not
    with pytest.raises(ConfigError, match=r"views must be one of \['none', 'flips', 'rot90', 'd4'\], got 'spin'"):
        small_pc(views="spin")


def test_levels_default_to_strides_8_and_16_of_the_registry_groups():
    from tlzoo.anomaly import feature_levels
    from tlzoo.zoo import build_backbone

    backbone, spec, _ = build_backbone("mobilenet_v2", None, (64, 64, 3))
    assert feature_levels(backbone, spec, 64) == [("block_5", "block_5_add"), ("block_12", "block_12_add")]
    with pytest.raises(ConfigError, match="not layer groups of 'mobilenet_v2'"):
        feature_levels(backbone, spec, 64, names=["block_99"])


def test_fit_refuses_defective_images_and_oversized_banks():
    good, _ = textures(8, seed=1)
    pc = small_pc()
    with pytest.raises(DataError, match=r"2 of 8 images given to fit the normal memory bank are labelled as "
                                        r"defective \(labels \[3\], normal is 0; first at index 6\)"):
        pc.fit(good, labels=[0, 0, 0, 0, 0, 0, 3, 3], normal_label=0, verbose=False)
    tight = small_pc(coreset_ratio=1.0, max_bank_mb=0.2)
    with pytest.raises(ConfigError, match=r"512 patch features x 192 dims = 0.4 MB .* over max_bank_mb=0.2; "
                                          r"cap it with coreset_size<=260"):
        tight.fit(good, verbose=False)


def test_cli_anomaly_mode_and_too_few_normals_write_nothing(tiles_npz, tmp_path, capsys):
    from tlzoo.cli.main import main

    out = tmp_path / "few"
    rc = main(["adapt", "--plugin", "defect-detection", "--data", str(tiles_npz), "--backbone", "small_cnn",
               "--input-size", "32", "--out", str(out), "--option", "mode=anomaly", "--option", "max_false_alarm=0.01",
               "--option", "levels=block2,block3"])
    assert rc != 0
    assert "20 held-out normal image(s) cannot set a threshold for a 0.01 false-alarm rate (at least 100 needed)" in \
        capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".few*"))


def test_folders_mvtec_layout_and_defective_train_images(tmp_path):
    from PIL import Image

    from tlzoo_defect.anomaly_data import anomaly_splits, normal_label, read_labelled

    good, _ = textures(6, seed=1)
    bad, _ = textures(3, defect=True, seed=2)
    for split, cls, ims in (("train", "good", good[:4]), ("test", "good", good[4:]), ("test", "crack", bad)):
        (tmp_path / "mv" / split / cls).mkdir(parents=True)
        for i, im in enumerate(ims):
            Image.fromarray(im[..., 0]).save(tmp_path / "mv" / split / cls / f"{i}.png")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "mv" / "test" / "crack" / "big.png")
    data = read_labelled(str(tmp_path / "mv"))
    assert data.class_names == ["good", "crack"] and data.x.shape == (10, 32, 32, 1)
    assert any("1 resized to the most common 32x32" in n for n in data.notes)
    splits, types = anomaly_splits(data, normal_label(data), threshold_fraction=0.25)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 1, 6)
    assert splits.test.y.tolist() == [0, 0, 1, 1, 1, 1]

    (tmp_path / "mv" / "train" / "crack").mkdir()
    Image.fromarray(bad[0, ..., 0]).save(tmp_path / "mv" / "train" / "crack" / "x.png")
    with pytest.raises(DataError, match=r"1 image\(s\) in train/ are not in the normal class 'good'"):
        anomaly_splits(read_labelled(str(tmp_path / "mv")), 0)
    with pytest.raises(ConfigError, match="cannot tell which class .* is defect-free"):
        normal_label(read_labelled.__globals__["Labelled"](good, np.zeros(6, np.int64), ["a", "b"], "src", []))


# ---------------------------------------------------------------- classify mode


def test_classify_mode_options_augmentations_and_schedule():
    from tlzoo.plugin import get_plugin

    plugin = get_plugin("defect-detection")
    assert plugin.task == "multiclass" and plugin.custom_recipe() is None
    with pytest.raises(ConfigError, match="mode must be one of"):
        get_plugin("defect-detection", mode="segment")
    with pytest.raises(ConfigError, match="has no option"):
        get_plugin("defect-detection", max_false_alarms=0.01)
    assert get_plugin("defect-detection", mode="anomaly").task == "binary"
    x = np.random.default_rng(0).integers(0, 255, (16, 24, 24, 1)).astype(np.float32)
    y = x
    for layer in plugin.augmentations():
        y = layer(y, training=True)
    assert tuple(y.shape) == (16, 24, 24, 1)
    from tlzoo_defect.augment import RandomQuarterTurn

    turned = np.asarray(RandomQuarterTurn(seed=1)(x, training=True))
    for a, b in zip(x, turned):  # each image is one of its four rotations
        assert any(np.array_equal(np.rot90(a, k), b) for k in range(4))
    assert len({tuple(np.asarray(b).ravel()[:5]) for b in turned}) > 1
    schedule = plugin.freeze_schedule(18)
    assert [s.name for s in schedule.stages] == ["head", "all"] and schedule.stages[1].trainable == "all"


def test_a_published_split_file_names_the_training_images(tmp_path):
    """DifferNet's protocol for magnetic tiles: the training images are a list of file names; every other
    image is test. Names that are not images of the source, or defective ones, are refused."""
    from tlzoo_defect.anomaly_data import Labelled, anomaly_splits

    x = np.zeros((10, 8, 8, 1), np.uint8)
    y = np.array([0] * 7 + [1] * 3)
    names = np.array([f"tile_{i}.jpg" for i in range(10)])
    data = Labelled(x, y, ["MT_Free", "crack"], "tiles.npz", [], filenames=names)
    listed = tmp_path / "train.txt"
    listed.write_text("tile_0.jpg\nsub/tile_2.jpg\ntile_3.jpg\ntile_5.jpg\n\n")
    splits, types = anomaly_splits(data, 0, threshold_fraction=0.25, split_file=str(listed))
    assert len(splits.train) + len(splits.val) == 4 and len(splits.val) == 1
    assert list(splits.test.y) == [0, 0, 0, 1, 1, 1] and list(types) == [0, 0, 0, 1, 1, 1]  # tiles 1, 4, 6 + defects
    assert any("the 4 defect-free images listed in train.txt" in n for n in splits.notes)
    listed.write_text("tile_0.jpg\ntile_99.jpg\n")
    with pytest.raises(DataError, match=r"1 of its 2 names are not images of tiles.npz, e.g. \['tile_99.jpg'\]"):
        anomaly_splits(data, 0, split_file=str(listed))
    listed.write_text("tile_0.jpg\ntile_8.jpg\n")
    with pytest.raises(DataError, match=r"lists 1 defective image\(s\) for training, e.g. \['tile_8.jpg'\]"):
        anomaly_splits(data, 0, split_file=str(listed))
    with pytest.raises(DataError, match="records no file names"):
        anomaly_splits(Labelled(x, y, ["MT_Free", "crack"], "tiles.npz", []), 0, split_file=str(listed))
    with pytest.raises(DataError, match="does not exist"):
        anomaly_splits(data, 0, split_file=str(tmp_path / "none.txt"))
