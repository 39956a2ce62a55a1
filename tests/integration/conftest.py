"""Integration tier: every test collected under tests/integration/ carries the `integration` marker, so
`pytest -m "not integration"` runs the unit tier alone and `pytest -m integration` this one."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)
