"""The ``tlzoo`` command: a thin layer over the Python API (see ``tlzoo.cli.main``)."""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # ``main`` is imported on first use, not here: ``python -m tlzoo.cli.main`` would otherwise find
    # the module already imported (runpy warns) and run a second copy of it.
    if name == "main":
        from tlzoo.cli.main import main

        globals()["main"] = main  # the function, not the submodule the import just bound to the name
        return main
    raise AttributeError(f"module 'tlzoo.cli' has no attribute {name!r}")


__all__ = ["main"]
