"""One exception family: every error tlzoo raises on purpose is a ``TlzooError``.

Messages name the bad value and, where there is one, the fix.
"""
from __future__ import annotations


class TlzooError(Exception):
    """Base class of every error tlzoo raises on purpose."""


class NotFoundError(TlzooError, KeyError):
    """An unknown name was asked of a registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(TlzooError, ValueError):
    """An option or combination of options is invalid."""


class DataError(TlzooError, ValueError):
    """Input data is missing, unreadable or not what the plugin expects."""


class WeightsError(TlzooError):
    """Pretrained weights could not be resolved or did not verify."""


class TrainingError(TlzooError):
    """Training diverged or could not proceed."""


class ExportError(TlzooError):
    """A model could not be exported (a converter failed, or the run directory cannot be exported)."""


class ParityError(ExportError):
    """An exported artefact's outputs differ from the Keras model's by more than the format's bound."""


class IntegrityError(ExportError):
    """An export directory's files do not match its manifest (modified, damaged or incomplete)."""
