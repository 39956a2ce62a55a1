"""Readers for data as people keep it: class folders of any size / mode / format, split folders with
case differences, label tables, DICOM; the header scan; the stream's decoding rule and cache."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from layouts import (
    dicom_folders,
    image_table,
    mixed_class_folders,
    save_image,
    scan_pixels,
    split_folders,
)
from tlzoo.data import DataOptions, make_dataset, read_source
from tlzoo.data.images import PIL_DECODE, TF_DECODE, decode_file, probe
from tlzoo.errors import DataError


def test_mixed_sizes_modes_and_formats_read_and_stream(tmp_path):
    root = mixed_class_folders(tmp_path / "scans", n_per_class=12)
    (root / "normal" / ".DS_Store").write_bytes(b"\0")
    (root / "normal" / "Thumbs.db").write_bytes(b"\0")
    (root / "pneumonia" / "readme.txt").write_text("notes")
    d = read_source(str(root), options={"verbose": False})
    assert d.class_names == ["normal", "pneumonia"]
    assert len(d.train) + len(d.val) + len(d.test) == 24
    assert d.report["skipped_hidden_files"] == 2 and d.report["skipped_other_files"] == 1
    assert d.report["channels"]["count"] == 3  # some files are colour: every image becomes RGB
    d.set_input_size(40)
    x = d.train.x.load()
    assert x.shape == (len(d.train), 40, 40, 3) and x.dtype == np.uint8
    # the disc of class 1 survives every mode: its images are brighter on average
    y = d.train.y
    assert x[y == 1].mean() > x[y == 0].mean() + 10


def test_gray_sources_stay_one_channel_and_16_bit_is_scaled_not_clipped(tmp_path):
    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(0, 65535, 64), (16, 1)).astype(np.uint16)  # the whole 16-bit range
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    got = decode_file(str(tmp_path / "ramp16.png"), PIL_DECODE, 1)[..., 0]
    assert (got == 255).mean() < 0.05  # clipping to 255 saturates ~99% of this ramp
    np.testing.assert_allclose(got.astype(float), ramp / 257.0, atol=1)
    for cls in ("a", "b"):
        for i in range(4):
            save_image(tmp_path / "g" / cls / f"{i}.png", scan_pixels(i % 2, 30, 20, rng), ("L", "I;16")[i % 2])
    d = read_source(str(tmp_path / "g"), options={"verbose": False})
    assert d.report["channels"]["count"] == 1 and d.train.x.shape[-1] == 1


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 255  # left half white
    im = Image.fromarray(img)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    im.save(tmp_path / "cam.jpg", exif=exif, quality=95)
    info = probe(tmp_path / "cam.jpg")
    assert info.route == PIL_DECODE  # TensorFlow's decoder ignores EXIF
    out = decode_file(str(tmp_path / "cam.jpg"), info.route, 3)
    assert out.shape == (40, 20, 3)  # rotated: taller than wide
    assert out[:20].mean() > 200 and out[20:].mean() < 50  # the white half is now on top
    assert probe(tmp_path / "cam.jpg").error is None


def test_plain_jpeg_and_png_take_tensorflows_decoder_and_agree_with_pillow(tmp_path):
    rng = np.random.default_rng(1)
    save_image(tmp_path / "a.png", scan_pixels(1, 50, 70, rng), "RGB")
    info = probe(tmp_path / "a.png")
    assert info.route == TF_DECODE
    import tensorflow as tf

    from tlzoo.data.images import decode_op

    via_tf = decode_op(tf.constant(str(tmp_path / "a.png")), tf.constant(TF_DECODE), 3, None).numpy()
    np.testing.assert_array_equal(via_tf, decode_file(str(tmp_path / "a.png"), PIL_DECODE, 3))


def test_split_folders_match_names_case_insensitively(tmp_path):
    names = {"train": ("NORMAL", "PNEUMONIA"), "Val": ("normal", "pneumonia"), "TEST": ("Normal", "Pneumonia")}
    root = split_folders(tmp_path / "xr", {"train": 6, "Val": 3, "TEST": 3}, names)
    d = read_source(str(root), options={"verbose": False})
    assert d.class_names == ["NORMAL", "PNEUMONIA"]
    assert [len(d.split(s)) for s in ("train", "val", "test")] == [12, 6, 6]
    assert sorted(np.unique(d.val.y)) == [0, 1]


def test_a_class_in_one_split_only_is_named(tmp_path):
    names = {"train": ("a", "b"), "val": ("a", "c"), "test": ("a", "b")}
    root = split_folders(tmp_path / "x", {"train": 2, "val": 2, "test": 2}, names)
    with pytest.raises(DataError, match="'c' is in val/ but not in train/"):
        read_source(str(root), options={"verbose": False})


def test_a_test_only_class_is_left_out_with_a_warning(tmp_path, capsys):
    root = split_folders(tmp_path / "x", {"train": 3, "val": 2}, {"train": ("a", "b"), "val": ("a", "b")})
    split_folders(root, {"test": 2}, {"test": ("a", "b")})
    split_folders(root, {"test": 2}, {"test": ("zz_new", "b")}, seed=5)
    d = read_source(str(root))
    assert d.class_names == ["a", "b"]
    assert any("zz_new" in w and "only under test/" in w for w in d.report["warnings"])
    assert "warning: class folder 'zz_new'" in capsys.readouterr().out


def test_every_bad_file_is_listed_and_can_be_skipped(tmp_path):
    root = mixed_class_folders(tmp_path / "s", n_per_class=6)
    good = (root / "normal" / "normal_000.jpg").read_bytes()
    (root / "normal" / "cut.jpg").write_bytes(good[: len(good) // 2])  # truncated
    (root / "pneumonia" / "noise.png").write_bytes(b"definitely not a png")
    save_image(root / "pneumonia" / "tiny.png", np.zeros((1, 5), np.uint8), "L")
    with pytest.raises(DataError) as err:
        read_source(str(root), options={"verbose": False})
    msg = str(err.value)
    assert "3 file(s) cannot be read" in msg
    for name, why in (("cut.jpg", "truncated"), ("noise.png", "not an image"), ("tiny.png", "1 px")):
        assert name in msg and why in msg
    assert "--skip-bad-files" in msg
    d = read_source(str(root), options={"verbose": False, "skip_bad_files": True})
    assert len(d.train) + len(d.val) + len(d.test) == 12
    assert sorted(b["path"].split("/")[-1] for b in d.report["skipped_bad_files"]) == ["cut.jpg", "noise.png",
                                                                                       "tiny.png"]


def test_flat_folder_and_empty_classes_are_refused_with_the_fix(tmp_path):
    save_image(tmp_path / "flat" / "a.png", np.zeros((8, 8), np.uint8), "L")
    with pytest.raises(DataError, match="label table"):
        read_source(str(tmp_path / "flat"))
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(DataError, match="hold no images"):
        read_source(str(tmp_path / "empty"))


def test_label_table_with_attributes(tmp_path):
    table = image_table(tmp_path / "derm", n=40)
    for source in (str(table), str(tmp_path / "derm")):  # the table, or its folder
        d = read_source(source, options={"verbose": False})
        assert d.class_names == ["benign", "malignant"]
        assert set(d.train.attributes) >= {"sex", "site", "filenames"}
        assert set(d.test.attributes["sex"]) == {"F", "M"}
        assert d.report["path_column"] == "filename" and d.report["label_columns"] == ["diagnosis"]
    d = read_source(str(image_table(tmp_path / "derm2", n=40, split=True)), options={"verbose": False})
    assert [len(d.split(s)) for s in ("train", "val", "test")] == [24, 8, 8]


def test_label_table_problems_are_listed_all_at_once(tmp_path):
    table = image_table(tmp_path / "t", n=10)
    rows = table.read_text().splitlines()
    bad = rows + ["missing_1.jpg,benign,F,north", "missing_2.jpg,benign,F,north"]
    table.write_text("\n".join(bad) + "\n")
    with pytest.raises(DataError, match=r"2 path\(s\) name no file:\n  line 12: 'missing_1.jpg'\n  line 13"):
        read_source(str(table))
    table.write_text("\n".join(rows[:3] + [rows[1]]) + "\n")
    with pytest.raises(DataError, match="duplicate path"):
        read_source(str(table))
    table.write_text("\n".join(rows[:2] + ["case_0001.jpg,,M,north"]) + "\n")
    with pytest.raises(DataError, match="(?s)empty label cell.*line 3"):
        read_source(str(table))
    (tmp_path / "outside.jpg").write_bytes((tmp_path / "t" / "images" / "case_0000.jpg").read_bytes())
    table.write_text("\n".join(rows[:3] + ["../outside.jpg,benign,F,north"]) + "\n")
    with pytest.raises(DataError, match="outside the table's folder"):
        read_source(str(table))
    with pytest.raises(DataError, match=r"no label column 'nope'; the columns are"):
        read_source(str(table), options={"label_column": "nope"})


def test_label_table_multilabel_two_ways(tmp_path):
    image_table(tmp_path / "m", n=12)
    lines = ["filename,tags,effusion,nodule"]
    for i in range(12):
        lines.append(f"case_{i:04d}.jpg,{['effusion', 'nodule', 'effusion|nodule'][i % 3]},"
                     f"{int(i % 3 != 1)},{int(i % 3 > 0)}")
    (tmp_path / "m" / "labels.csv").write_text("\n".join(lines) + "\n")
    d1 = read_source(str(tmp_path / "m" / "labels.csv"), options={"label_column": "tags", "verbose": False})
    d2 = read_source(str(tmp_path / "m" / "labels.csv"), options={"label_column": "effusion,nodule", "verbose": False})
    assert d1.class_names == d2.class_names == ["effusion", "nodule"]
    for d in (d1, d2):
        y = np.concatenate([d.split(s).y for s in ("train", "val", "test")])
        assert y.shape == (12, 2) and y.sum() == 16


def test_label_table_test_only_class_is_left_out(tmp_path):
    table = image_table(tmp_path / "t", n=20, split=True)
    rows = table.read_text().splitlines()
    rows = rows + [f"case_{i:04d}.jpg,rare,F,north,test" for i in (0, 5)]  # re-use files under new rows: duplicate
    table.write_text("\n".join(r.replace("case_0000.jpg,benign", "case_0000.jpg,rare").replace(
        "case_0005.jpg,malignant", "case_0005.jpg,rare") for r in rows[:-2]) + "\n")
    d = read_source(str(table), options={"verbose": False})
    assert d.class_names == ["benign", "malignant"]
    assert any("rare" in w for w in d.report["warnings"])


def test_dicom_folders_read_with_header_attributes(tmp_path):
    root = dicom_folders(tmp_path / "cr", n_per_class=8)
    d = read_source(str(root), options={"verbose": False})
    assert d.class_names == ["effusion", "normal"]
    assert d.report["channels"]["count"] == 1
    assert set(d.train.attributes["PatientSex"]) <= {"F", "M"} and "Manufacturer" in d.test.attributes
    x = d.set_input_size(24).train.x.load()
    # MONOCHROME1 files are inverted back: the disc (class 'effusion' = label 0 here) is bright in every file
    assert x[d.train.y == 0].mean() > x[d.train.y == 1].mean() + 10


def test_fingerprint_follows_file_bytes_and_labels(tmp_path):
    root = mixed_class_folders(tmp_path / "s", n_per_class=6)
    f1 = read_source(str(root), options={"verbose": False}).fingerprint()
    assert f1 == read_source(str(root), options={"verbose": False}).fingerprint()
    target = root / "normal" / "normal_001.png"
    save_image(target, scan_pixels(1, 33, 33, np.random.default_rng(9)), "L")
    assert read_source(str(root), options={"verbose": False}).fingerprint() != f1


def test_stream_resizes_before_augmenting_and_the_cache_returns_the_same_pixels(tmp_path):
    root = mixed_class_folders(tmp_path / "s", n_per_class=8)
    seen = []

    def augment(x):
        seen.append(tuple(x.shape[1:]))
        return x

    d = read_source(str(root), options={"verbose": False}).set_input_size(24)
    ds = make_dataset(d.train, batch_size=4, training=True, augment=augment)
    next(iter(ds))
    assert seen and seen[0] == (24, 24, 3)  # augmentation sees the model's size, not the stored one
    plain = np.concatenate([b for b, _ in make_dataset(d.train, batch_size=5, training=False)])
    cache = tmp_path / "cache"
    first = np.concatenate([b for b, _ in make_dataset(d.train, batch_size=5, training=False, cache_dir=cache)])
    files = list(cache.rglob("*.u8"))
    assert len(files) == len(d.train)
    second = np.concatenate([b for b, _ in make_dataset(d.train, batch_size=5, training=False, cache_dir=cache)])
    np.testing.assert_array_equal(plain, first)
    np.testing.assert_array_equal(first, second)
    files[0].write_bytes(np.zeros(24 * 24 * 3, np.uint8).tobytes())  # a cached entry is what is read back
    third = np.concatenate([b for b, _ in make_dataset(d.train, batch_size=5, training=False, cache_dir=cache)])
    assert (third != second).any()


def test_data_options_are_checked():
    with pytest.raises(Exception, match="unknown data option"):
        DataOptions.from_dict({"colour": "rgb"})
    with pytest.raises(Exception, match="channels must be one of"):
        DataOptions.from_dict({"channels": "cmyk"})


def test_fingerprint_recomputes_from_the_source_alone_as_documented(tmp_path):
    """The README's recipe, written out by a receiver with hashlib only."""
    import hashlib

    root = split_folders(tmp_path / "x", {"train": 4, "val": 2, "test": 2},
                         {s: ("a", "b") for s in ("train", "val", "test")})
    d = read_source(str(root), options={"verbose": False})
    digest = hashlib.sha256()
    for split in ("train", "val", "test"):
        s = d.split(split)
        digest.update(f"{split}files{len(s)}".encode())
        for rel in s.attributes["filenames"]:  # the index order; paths relative to the source folder
            digest.update(rel.encode() + b"\0" + hashlib.sha256((root / rel).read_bytes()).hexdigest().encode())
        y = np.ascontiguousarray(s.y, dtype=np.int64)
        digest.update(f"{split}{y.dtype}{y.shape}".encode() + y.tobytes())
    assert digest.hexdigest() == d.fingerprint()


def test_arrays_and_the_same_images_as_files_stream_identical_batches(tmp_path):
    """One rule: an .npz and its images written as PNGs (a table in the same order) give the training
    loop the same pixels, in the same shuffled order, at the model's input size."""
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    x = np.stack([scan_pixels(int(v), 28, 28, rng) for v in y])
    np.savez(tmp_path / "d.npz", train_images=x[:24], train_labels=y[:24], val_images=x[24:32],
             val_labels=y[24:32], test_images=x[32:], test_labels=y[32:])
    lines = ["path,label,split"]
    for i in range(40):
        Image.fromarray(x[i]).save(tmp_path / f"{i:03d}.png")
        lines.append(f"{i:03d}.png,{y[i]},{'train' if i < 24 else 'val' if i < 32 else 'test'}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    arrays = read_source(str(tmp_path / "d.npz"))
    files = read_source(str(tmp_path / "labels.csv"), options={"verbose": False}).set_input_size(40)
    a = [(b.numpy(), labels.numpy())
         for b, labels in make_dataset(arrays.train, batch_size=8, training=True, seed=3, image_size=40)]
    f = [(b.numpy(), labels.numpy())
         for b, labels in make_dataset(files.train, batch_size=8, training=True, seed=3, image_size=40)]
    assert len(a) == len(f) == 3
    for (xa, ya), (xf, yf) in zip(a, f):
        np.testing.assert_array_equal(ya, yf)
        np.testing.assert_array_equal(xa, xf)
        assert xa.shape[1:] == (40, 40, 1)


def test_a_train_folder_alone_is_split_here(tmp_path):
    root = split_folders(tmp_path / "x", {"train": 10}, {"train": ("a", "b")})
    d = read_source(str(root), options={"verbose": False})
    assert d.class_names == ["a", "b"] and [len(d.split(s)) for s in ("train", "val", "test")] == [14, 2, 4]
