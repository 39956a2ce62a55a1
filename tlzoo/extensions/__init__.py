"""Optional features of a run, each one module behind one protocol of hooks (``tlzoo.extensions.base``).

Built-in extensions are registered here by name, one line each, in the order the recipe calls them;
``register_extension`` adds one of your own (active when its ``is_active(cfg)`` says so).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tlzoo.extensions.base import Extension
    from tlzoo.train.config import AdaptConfig

# name -> "module:Class", imported when a run needs them (so `import tlzoo.extensions` stays light)
BUILTIN: dict[str, str] = {
    "licences": "tlzoo.extensions.licences:LicenceGate",
    "subgroups": "tlzoo.extensions.subgroups:Subgroups",
    "forgetting": "tlzoo.extensions.forgetting:Forgetting",
    "domain_adaptation": "tlzoo.extensions.domain_adaptation:DomainAdaptation",
    "calibration": "tlzoo.extensions.calibration:Calibration",
    "resume": "tlzoo.extensions.resume:Resume",
    "tensorboard": "tlzoo.extensions.tensorboard:TensorBoard",
}
_USER: dict[str, type[Extension]] = {}


def register_extension(cls: type[Extension]) -> type[Extension]:
    """Add an extension class (usable as a decorator); it runs after the built-in ones."""
    from tlzoo.errors import ConfigError

    if not getattr(cls, "name", ""):
        raise ConfigError(f"extension {cls.__qualname__} has no name")
    if cls.name in BUILTIN:
        raise ConfigError(f"extension name {cls.name!r} is taken by a built-in extension")
    _USER[cls.name] = cls
    return cls


def extension_classes() -> list[type[Extension]]:
    """Every registered extension class, in calling order."""
    classes = []
    for ref in BUILTIN.values():
        module, _, name = ref.partition(":")
        classes.append(getattr(importlib.import_module(module), name))
    return classes + list(_USER.values())


def active_extensions(cfg: AdaptConfig) -> list[Extension]:
    """The extensions a configuration switches on, after every extension has checked its own options."""
    classes = extension_classes()
    for cls in classes:
        cls.check_options(cfg)
    return [cls(cfg) for cls in classes if cls.is_active(cfg)]
