"""tf.distribute: TF_CONFIG parsing, the custom multi-worker stage loop against Model.fit, and
two real worker processes on 127.0.0.1 (sync, convergence, fault tolerance, unreachable peers)."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tlzoo.errors import ConfigError
from tlzoo.train.distribution import Distribution, parse_tf_config

adapt_module = importlib.import_module("tlzoo.train.recipe")


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', '"cluster" and "task"'),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "is not 'host:port'"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "out of range"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "not a job of the cluster"),
    ('{"cluster": {"ps": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}}', "not supported"),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}', "address twice"),
])
def test_malformed_tf_config_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_tf_config(text)


def test_tf_config_roles() -> None:
    c = parse_tf_config('{"cluster": {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"]}, '
                        '"task": {"type": "worker", "index": 1}}')
    assert c.workers == ("h0:1", "h1:1", "h2:1") and c.rank == 2 and not c.is_chief and c.address == "h2:1"
    assert parse_tf_config('{"cluster": {"worker": ["h0:1", "h1:1"]}, "task": {"type": "worker", "index": 0}}').is_chief
    assert parse_tf_config("") is None


def test_global_batch_must_divide_over_replicas() -> None:
    class TwoReplicas:
        num_replicas_in_sync = 2

    dist = Distribution("mirrored", TwoReplicas())
    dist.check_batch(32)
    with pytest.raises(ConfigError, match="batch size 33 is not divisible by the 2 replicas"):
        dist.check_batch(33)


def test_unknown_strategy_is_refused(scans_npz: Path, tmp_path: Path) -> None:
    from support import fast_config

    with pytest.raises(ConfigError, match="strategy must be one of"):
        adapt_module.adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "r"), strategy="horovod"))
    with pytest.raises(ConfigError, match="needs TF_CONFIG"):
        adapt_module.adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "r"), strategy="multiworker"))
    assert not (tmp_path / "r").exists()
