"""Integration tier: every test collected under tests/integration/ carries the `integration` marker, so
`pytest -m "not integration"` runs the unit tier alone and `pytest -m integration` this one. Below: the runs
that several tests share, trained once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


# ---------------------------------------------------------------- runs shared by several tests
# Each adapt run costs seconds of tf.function tracing whatever its size, so a run that several tests only read is
# trained once per session. Tests read these run directories and never write into them: a test that needs to
# change one works on a copy (shutil.copytree into its tmp_path).


@pytest.fixture(scope="session")
def shared_scans_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same generated scans as the `scans_npz` fixture, written once for the session's shared runs."""
    from tlzoo.data.synthetic import write_opacity_npz

    return write_opacity_npz(tmp_path_factory.mktemp("shared_scans") / "scans.npz", n_train=96, n_val=48, n_test=64,
                             size=32, contrast=60)


@pytest.fixture(scope="session")
def default_run(shared_scans_npz: Path, tmp_path_factory: pytest.TempPathFactory):
    """support.fast_config's run (mobilenet_025 from random init, head stage + full stage) with a seed and the
    licence fields set: the complete run directory, the config round trip and the licence record read it."""
    from support import fast_config
    from tlzoo.train.recipe import adapt

    out = tmp_path_factory.mktemp("default_run") / "run"
    return adapt(fast_config(data=str(shared_scans_npz), out=str(out), seed=3, intended_use="commercial",
                             data_licence="CC-BY-4.0"))


@pytest.fixture(scope="session")
def grouped_scans_npz(shared_scans_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared scans with a `{split}_groups` array: site_a / site_b alternating."""
    import numpy as np

    arrays = dict(np.load(shared_scans_npz))
    for s in ("train", "val", "test"):
        n = len(arrays[f"{s}_labels"])
        arrays[f"{s}_groups"] = np.array(["site_a", "site_b"])[np.arange(n) % 2]
    path = tmp_path_factory.mktemp("grouped_scans") / "grouped.npz"
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="session")
def subsampled_grouped_run(grouped_scans_npz: Path, tmp_path_factory: pytest.TempPathFactory):
    """10 labels per class of the grouped scans, subgroup report with a maximum gap of 0: the label-subsampling
    record and the subgroup report read it. Records, not accuracy: small_cnn traces fastest."""
    from support import fast_config
    from tlzoo.train.recipe import adapt

    out = tmp_path_factory.mktemp("subsampled_grouped_run") / "run"
    return adapt(fast_config(data=str(grouped_scans_npz), out=str(out), backbone="small_cnn", labels_per_class=10,
                             max_group_gap=0.0))
