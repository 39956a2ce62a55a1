"""The run-directory writer (tlzoo.runs): atomic, and following the umask like any directory a user makes."""
from __future__ import annotations

import os
import stat

import pytest

from tlzoo.runs import atomic_dir, environment, now


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o077, 0o700), (0o002, 0o775)])
def test_run_directories_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        with atomic_dir(tmp_path / "run") as tmp:
            (tmp / "metrics.json").write_text("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == mode


def test_a_failed_run_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "run") as tmp:
            (tmp / "half.txt").write_text("x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_run_records_for_a_plugins_own_recipe():
    env = environment()
    assert set(env) == {"python", "keras", "tensorflow", "tlzoo"} and all(env.values())
    assert now().endswith("+00:00")
