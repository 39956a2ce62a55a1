"""UCR / UEA series files (tlzoo.data.series_files) and the timeseries-classification plugin's reading of them:
the three formats agree, headers are checked, and bad data gets one error naming the file, line or series."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tlzoo.data.series_files import read_series_file
from tlzoo.errors import DataError

SERIES = [(np.array([[0.0, 1.0, 2.0, 1.0]]).T, "a"), (np.array([[3.0, 2.0, 1.0]]).T, "b"),
          (np.array([[1.0, 1.5, 2.5, 3.5, 0.5]]).T, "a")]


def write_ts(path: Path, series=SERIES, *, header: str | None = None) -> Path:
    lines = header or ("@problemName toy\n@timeStamps false\n@univariate true\n@equalLength false\n"
                       "@classLabel true a b\n@data")
    rows = [":".join(",".join(f"{v:g}" for v in s[:, c]) for c in range(s.shape[1])) + f":{y}" for s, y in series]
    path.write_text("# a comment\n" + lines + "\n" + "\n".join(rows) + "\n")
    return path


def test_ts_arff_and_ucr_text_read_the_same_series(tmp_path):
    equal = [(np.array([[0.5, -1.0, 2.0]]).T, "1"), (np.array([[1.0, 1.0, -3.0]]).T, "2")]
    ts = write_ts(tmp_path / "x_TRAIN.ts", equal, header="@univariate true\n@equalLength true\n@seriesLength 3\n"
                                                          "@classLabel true 1 2\n@data")
    arff = tmp_path / "x_TRAIN.arff"
    arff.write_text("@relation x\n@attribute t0 numeric\n@attribute t1 numeric\n@attribute t2 numeric\n"
                    "@attribute target {1,2}\n@data\n0.5,-1,2,1\n1,1,-3,2\n")
    tsv = tmp_path / "x_TRAIN.tsv"
    tsv.write_text("1.0000000e+00\t0.5\t-1\t2\n2\t1\t1\t-3\n")
    read = [read_series_file(p) for p in (ts, arff, tsv)]
    for r in read:
        assert r.labels == ["1", "2"] and r.channels == 1
        np.testing.assert_allclose(np.stack(r.series), np.stack([s for s, _ in equal]))


def test_ts_variable_length_multivariate_and_missing_values(tmp_path):
    two = [(np.array([[0, 1, 2], [5, 6, 7]], float).T, "a"), (np.array([[1, 2], [3, 4]], float).T, "b")]
    path = write_ts(tmp_path / "m_TRAIN.ts", two, header="@univariate false\n@dimensions 2\n@equalLength false\n"
                                                         "@classLabel true a b\n@data")
    found = read_series_file(path)
    assert found.channels == 2 and list(found.lengths) == [3, 2]
    np.testing.assert_array_equal(found.series[0][:, 1], [5, 6, 7])
    path.write_text(path.read_text().replace("5,6,7", "5,?,7"))
    assert np.isnan(read_series_file(path).series[0][1, 1])
    ucr = tmp_path / "v_TRAIN.txt"
    ucr.write_text("1 0.1 0.2 0.3 NaN NaN\n2 0.5 0.4 0.3 0.2 0.1\n")
    assert list(read_series_file(ucr).lengths) == [3, 5]  # NaN padding at the end dropped
    ucr.write_text("1 0.1 0.2\n2 NaN NaN\n")
    with pytest.raises(DataError, match="v_TRAIN.txt:2: a series with no value"):
        read_series_file(ucr)


@pytest.mark.parametrize("header, row, message", [
    ("@univariate false\n@dimensions 2\n@classLabel true a b\n@data", "1,2,3:a",
     r"1 dimension\(s\), the header says 2"),
    ("@univariate true\n@equalLength true\n@seriesLength 4\n@classLabel true a b\n@data", "1,2,3:a",
     "a series of length 3; the header says every series has length 4"),
    ("@univariate true\n@classLabel true a b\n@data", "1,2,3:c", r"class 'c' is not among the header's @classLabel"),
    ("@univariate true\n@classLabel true a b\n@data", "1,x,3:a", "not a number in the series"),
    ("@univariate true\n@classLabel true a b", "1,2,3:a", "expected a @header line or @data"),
])
def test_a_ts_file_that_contradicts_its_header_names_the_line(tmp_path, header, row, message):
    path = tmp_path / "bad_TRAIN.ts"
    path.write_text(header + "\n" + row + "\n")
    with pytest.raises(DataError, match=message) as err:
        read_series_file(path)
    assert str(path) in str(err.value)


def test_other_files_are_refused_by_name(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_series_file(tmp_path / "none_TRAIN.ts")
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(DataError, match=r"series files are .ts, .arff, .tsv, .txt, not .csv"):
        read_series_file(tmp_path / "x.csv")


# ---------------------------------------------------------------- the plugin's reading


def _plugin(**options):
    from tlzoo_tsc import TimeSeriesClassificationPlugin

    return TimeSeriesClassificationPlugin(**options)


def _toy_pair(tmp_path: Path, n: int = 12, test_series=None) -> Path:
    rng = np.random.default_rng(0)
    train = [(rng.normal(size=(int(rng.integers(20, 30)), 1)) + i % 3, "abc"[i % 3]) for i in range(n)]
    write_ts(tmp_path / "toy_TRAIN.ts", train, header="@univariate true\n@equalLength false\n"
                                                      "@classLabel true a b c\n@data")
    write_ts(tmp_path / "toy_TEST.ts", test_series or train[:6], header="@univariate true\n@equalLength false\n"
                                                                         "@classLabel true a b c\n@data")
    return tmp_path / "toy_TRAIN.ts"


def test_the_plugin_reads_the_official_split_pads_and_normalises(tmp_path):
    data = _plugin().read_data(str(_toy_pair(tmp_path)), seed=0)
    assert data.class_names == ["a", "b", "c"] and data.train.x.shape[1:] == data.test.x.shape[1:]
    assert len(data.train) + len(data.val) == 12 and set(data.val.y) == {0, 1, 2}  # one val series per class
    first = data.test.x[0]
    real = first[: int(np.flatnonzero(np.abs(first[:, 0]) > 0).max()) + 1]
    assert abs(real.mean()) < 1e-5 and abs(real.std() - 1) < 1e-4  # z-normalised, then zero-padded
    assert any("official split: toy_TRAIN.ts (12), toy_TEST.ts (6)" in n for n in data.notes)
    (tmp_path / "toy_TRAIN.txt").write_text("a 1 2 3\n")  # the UEA layout: the same set in other formats too
    folder = _plugin().read_data(str(tmp_path), seed=0)  # the folder: its .ts pair first
    np.testing.assert_array_equal(folder.test.x, data.test.x)


def test_the_plugins_bad_input(tmp_path):
    rng = np.random.default_rng(1)
    path = _toy_pair(tmp_path, test_series=[(rng.normal(size=(25, 1)), "c")])
    with pytest.raises(DataError, match="series lengths differ"):
        _plugin(length="equal").read_data(str(path))
    lines = path.read_text().splitlines()
    lines[-1] = lines[-1].replace(",", ",?,", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train series 11 has 1 missing or infinite value\(s\)"):
        _plugin().read_data(str(path))
    assert np.isfinite(_plugin(missing="zero").read_data(str(path)).train.x).all()
    np.savez(tmp_path / "only.npz", X=rng.normal(size=(20, 16)), y=np.repeat([0, 1], 10),
             X_test=rng.normal(size=(4, 16)), y_test=np.array([0, 1, 2, 2]))
    with pytest.raises(DataError, match=r"class\(es\) \['2'\] appear in the test series only"):
        _plugin().read_data(str(tmp_path / "only.npz"))
    np.savez(tmp_path / "chan.npz", X=rng.normal(size=(20, 16, 2)), y=np.repeat([0, 1], 10),
             X_test=rng.normal(size=(4, 16, 3)), y_test=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"same channels: training series have \[2\], test series \[3\]"):
        _plugin().read_data(str(tmp_path / "chan.npz"))
    with pytest.raises(DataError, match="has no test sibling"):
        (tmp_path / "lone_TRAIN.ts").write_text((tmp_path / "toy_TEST.ts").read_text())
        _plugin().read_data(str(tmp_path / "lone_TRAIN.ts"))
