"""Keep TensorFlow's start-up chatter off the terminal.

``TF_CPP_MIN_LOG_LEVEL`` (set by ``tlzoo/__init__``) silences TensorFlow's C++ log once its logging
is initialised, but the shared libraries log while they load, before that: absl writes those lines
("All log messages before absl::InitializeLog() ...", "oneDNN custom operations are on", "Could not
find cuda drivers") straight to file descriptor 2, and no environment variable stops them in
TensorFlow 2.21. So while ``tensorflow`` is first imported, descriptor 2 goes to a temporary file;
afterwards every line of it that is not known noise (a Python warning, a real error) is written to
the real stderr. Nothing is redirected at any other time: tracebacks and tlzoo's own warnings show.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from typing import Any, Iterator, Sequence

# What TensorFlow, CUDA probes and absl print at start-up on a machine without a GPU (and the usual
# GPU-machine registration chatter); matched against the message of a C++ log line.
NOISE_MESSAGES: tuple[str, ...] = (
    r"oneDNN custom operations are on",
    r"Could not find cuda drivers on your machine",
    r"failed call to cuInit",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
    r"TF-TRT Warning: Could not find TensorRT",
    r"successful NUMA node read from SysFS",
)
# absl / glog line prefix: severity, date, time, thread id, file:line]
_LOG_PREFIX = r"[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] "
NOISE = re.compile(
    r"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\."
    rf"|{_LOG_PREFIX}.*(?:{'|'.join(NOISE_MESSAGES)}))"
)

_WATCHED = ("tensorflow",)  # Keras, tf2onnx, tensorflow_hub ... all start by importing it


def drop_noise(text: str) -> str:
    """``text`` without the lines that match ``NOISE``."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.match(line))


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Inside: file descriptor 2 goes to a temporary file. On the way out (exceptions included) the
    captured text, less ``NOISE``, is written to the real stderr."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to protect
        yield
        return
    _flush_stderr()
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = drop_noise(capture.read().decode("utf-8", errors="replace"))
            if kept:
                os.write(2, kept.encode("utf-8"))


def _flush_stderr() -> None:
    with contextlib.suppress(Exception):
        sys.stderr.flush()


class _FilteredLoader(importlib.abc.Loader):
    """Runs the real loader with ``filtered_stderr`` around it."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        # the module keeps the real loader (importlib.resources and friends ask it)
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        with filtered_stderr():
            self.loader.exec_module(module)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds the watched modules with the other finders and wraps their loaders."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = set(names)
        self._finding = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in self.names or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _FilteredLoader(spec.loader)
        return spec


def quiet_tensorflow_startup() -> None:
    """Filter TensorFlow's start-up lines from stderr when (and if) it is first imported; a no-op
    once it is. Idempotent."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # after start-up: C++ INFO, WARNING and ERROR lines
    if any(name in sys.modules for name in _WATCHED):
        return
    if not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport(_WATCHED))


def verbose_tensorflow_startup() -> None:
    """The opposite, for ``--verbose``: TensorFlow's C++ log at every level, start-up lines included."""
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _QuietImport)]
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
