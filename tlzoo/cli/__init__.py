"""The ``tlzoo`` command: a thin layer over the Python API."""

from tlzoo.cli.main import main

__all__ = ["main"]
