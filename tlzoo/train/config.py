"""The configuration of a run, declared once: each field's section, type, range, choices, flag and help.

In YAML (and in the run's ``config.yaml``) a configuration is written in sections::

    plugin: {name: medical-imaging, options: {threshold: youden}}
    data: {source: chest.npz, label_fraction: 0.1}
    model: {backbone: mobilenet_v2, input_size: 96}
    training: {schedule: {kind: fine_tune, epochs: 8}, batch_size: 32}
    output: {dir: runs/chest}
    calibration: {method: temperature}      # one section per extension: present = on
    subgroups: {group_by: brightness}

In Python, ``AdaptConfig`` keeps one flat attribute per field (``cfg.batch_size``), so
``tlzoo.adapt(plugin=..., data=..., batch_size=16)`` and flat YAML files written by earlier versions keep
working. The CLI's flags are generated from the same declarations (``tlzoo.cli.config_flags``), so a flag
cannot be dropped on its way into the config, and every value is checked (type, then range) before any data
is read, whichever way it came in.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tlzoo.errors import ConfigError
from tlzoo.runs.directory import read_yaml

CORE_SECTIONS = ("plugin", "data", "model", "training", "output")
# The schedule's flags: a named schedule (`--schedule KIND`), then parameters that, without a kind,
# adjust the plugin's default schedule (tlzoo.train.schedule.FreezeSchedule.adjusted).
SCHEDULE_FLAGS: dict[str, tuple[str, str]] = {
    "schedule": ("str", "freeze schedule: feature_extraction | top:N | full | gradual | fine_tune "
                        "(default: the plugin's)"),
    "epochs": ("int", "fine-tuning epochs (without --schedule: of the plugin's schedule)"),
    "head_epochs": ("int", "epochs of the head-only stage first"),
    "lr": ("float", "learning rate of the fine-tuning stages"),
    "lr_decay": ("float", "layer-wise learning-rate decay per layer group, going down"),
    "patience": ("int", "early-stopping patience (epochs) of the last stage"),
}
SCHEDULE_ADJUSTMENTS = tuple(k for k in SCHEDULE_FLAGS if k != "schedule")


def setting(default: Any, section: str, key: str, kind: str, help: str, *, choices: tuple[Any, ...] | None = None,
            low: float | None = None, high: float | None = None, low_open: bool = False, flag: str | None = "",
            factory: Callable[[], Any] | None = None) -> Any:
    """One field's declaration. ``kind``: int | float | str | bool | dict | list | schedule | data | path.
    ``flag``: "" derives ``--field-name``; None: no CLI flag (set in YAML or Python only)."""
    meta = {"section": section, "key": key, "kind": kind, "help": help, "choices": choices, "low": low, "high": high,
            "low_open": low_open, "flag": flag}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class AdaptConfig:
    """Everything that defines a run; written back, resolved and in sections, as the run's ``config.yaml``."""

    plugin: str = setting(None, "plugin", "name", "str", "domain plugin (see `tlzoo plugins`)")
    data: Any = setting(None, "data", "source", "data",
                        ".npz, folder of class folders (optionally under train/val/test), label table (.csv/.tsv), "
                        "or tfds:NAME; in Python also arrays, a DataFrame or a tf.data.Dataset")
    out: str | None = setting(None, "output", "dir", "path",
                              "run directory to write (default runs/PLUGIN-BACKBONE-TIME)")
    data_options: dict[str, Any] = setting(None, "data", "options", "dict",
                                           "how files are read (tlzoo.data.DataOptions)", flag=None, factory=dict)
    backbone: str | None = setting(None, "model", "backbone", "str",
                                   "backbone (default: the plugin's; see `tlzoo backbones`)")
    weights: str | None = setting("imagenet", "model", "weights", "str",
                                  "'imagenet' (default), a weights file, or 'none' (random init)")
    pooling: str | None = setting(None, "model", "pooling", "str",
                                  "how a vision transformer's tokens become features: cls, mean, cls+mean, or map "
                                  "(SigLIP's head); default: the backbone's",
                                  choices=("cls", "mean", "cls+mean", "map"))
    weights_sha256: str | None = setting(None, "model", "weights_sha256", "str",
                                         "pin: the weights file's expected sha256")
    input_size: int | None = setting(None, "model", "input_size", "int",
                                     "input size (default: the plugin's, else the backbone's)", low=1)
    schedule: dict[str, Any] | None = setting(None, "training", "schedule", "schedule",
                                              "freeze schedule: {kind: ..., params} or {stages: [...]}; without "
                                              "a kind, adjustments to the plugin's default schedule", flag=None)
    batch_size: int = setting(32, "training", "batch_size", "int", "batch size", low=1)
    batchnorm_reestimate: bool = setting(True, "training", "batchnorm_reestimate", "bool",
                                         "after training, re-estimate the statistics of the BatchNormalization "
                                         "layers that trained over the training data (exact however few steps "
                                         "the run had)")
    label_fraction: float | None = setting(None, "data", "label_fraction", "float",
                                           "keep this stratified fraction of training labels",
                                           low=0, high=1, low_open=True)
    labels_per_class: int | None = setting(None, "data", "labels_per_class", "int",
                                           "keep this many training labels per class", low=1)
    seed: int = setting(0, "training", "seed", "int", "random seed (splits, subsampling, shuffling, init)", low=0)
    plugin_options: dict[str, Any] = setting(None, "plugin", "options", "dict", "the plugin's options", flag=None,
                                             factory=dict)
    overwrite: bool = setting(False, "output", "overwrite", "bool", "replace an existing run directory")
    verbose: int = setting(1, "output", "verbose", "int", "0: quiet, 1: progress", low=0, high=2, flag=None)
    strategy: str = setting("auto", "training", "strategy", "str",
                            "tf.distribute strategy (auto: multiworker when TF_CONFIG names several workers, "
                            "mirrored on several GPUs, else one)",
                            choices=("auto", "one", "mirrored", "multiworker"))
    max_samples_seen: int | None = setting(None, "training", "max_samples_seen", "int",
                                           "compute budget: the schedule's epochs shrink to fit it", low=1)
    tasks: list[dict[str, Any]] | None = setting(None, "model", "tasks", "list",
                                                 "multi-task heads (tlzoo.model.multitask.TaskSpec entries)", flag=None)
    # ---- extensions: one section each (tlzoo.extensions); the section is written when the extension is on
    intended_use: str | None = setting(None, "licences", "intended_use", "str",
                                       "refuse pretrained weights or data whose licence does not allow this use",
                                       choices=("research", "commercial"))
    data_licence: str | None = setting(None, "licences", "data_licence", "str",
                                       "the training data's licence (SPDX id, e.g. CC-BY-4.0), "
                                       "for the gate and the model card")
    calibration: str = setting("temperature", "calibration", "method", "str",
                               "fit a temperature on the validation split and put it in the model",
                               choices=("temperature", "none"))
    group_by: str | None = setting(None, "subgroups", "group_by", "str",
                                   "subgroup metrics by a per-sample attribute (a table column, an .npz key such as "
                                   "site, a DICOM field), or derived: brightness, filename_prefix (default: the data's "
                                   "`groups`, if any)")
    max_group_gap: float | None = setting(None, "subgroups", "max_gap", "float",
                                          "largest acceptable gap of a test metric between groups; "
                                          "the model card warns beyond it")
    forgetting: bool = setting(False, "forgetting", "enabled", "bool",
                               "per epoch, backbone drift from its pretrained self (linear CKA per layer group on "
                               "reference images) and source-task agreement: forgetting.json / forgetting.png",
                               flag="--track-forgetting")
    forgetting_reference: int = setting(64, "forgetting", "reference", "int", "reference training images")
    max_drift: float | None = setting(None, "forgetting", "max_drift", "float",
                                      "bound on the largest per-group drift (1 - CKA), e.g. 0.3; see --on-drift")
    on_drift: str = setting("stop", "forgetting", "on_drift", "str",
                            "past --max-drift: stop training (keep the best weights) or halve the learning rate",
                            choices=("stop", "lower_lr"))
    domain_adaptation: str | None = setting(None, "domain_adaptation", "method", "str",
                                            "align source and unlabelled target features: Deep CORAL or DANN "
                                            "(needs --target-data)", choices=("coral", "dann"))
    target_data: str | None = setting(None, "domain_adaptation", "target_data", "path",
                                      "unlabelled target images: .npz with `images`, or a folder")
    da_weight: float = setting(1.0, "domain_adaptation", "weight", "float", "weight of the CORAL / domain loss")
    l2sp: float | None = setting(None, "l2sp", "alpha", "float",
                                 "L2-SP: penalty alpha/2 ||w - w_pretrained||^2 on the backbone (e.g. 0.01)")
    l2sp_beta: float = setting(0.0, "l2sp", "beta", "float", "L2-SP: beta/2 ||w||^2 on the head")
    hybrid_source: str | None = setting(None, "hybrid", "source", "path",
                                        "labelled source-domain data (same classes) mixed into every training batch")
    hybrid_ratio: float | None = setting(None, "hybrid", "ratio", "float",
                                         "share of source samples per batch, 0..1 (default 0.5)")
    hybrid_ratio_end: float | None = setting(None, "hybrid", "ratio_end", "float",
                                             "anneal the share linearly to this over the stages")
    resume: bool = setting(False, "resume", "enabled", "bool",
                           "continue an interrupted run from its last checkpoint")
    checkpoint_interval: float = setting(30.0, "resume", "interval_s", "float",
                                         "seconds of training between checkpoints (taken at the end of an epoch, "
                                         "and at the end of every stage); 0: after every epoch", low=0)
    tensorboard: bool = setting(False, "tensorboard", "enabled", "bool",
                                "write TensorBoard logs (per-epoch scalars, learning rate per layer group) "
                                "to RUN/tensorboard")

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_dict(cls, data: dict[str, Any], *, validate: bool = True) -> "AdaptConfig":
        """From sections or from the flat keys of earlier versions (and of ``tlzoo.adapt(**kwargs)``)."""
        cfg = cls(**_flat_fields(data))
        if validate:
            cfg.validate()
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "AdaptConfig":
        """A YAML file (a run's config.yaml too: its inputs are under ``adapt``); ``overrides`` are flat
        field values (None = not given)."""
        raw = read_yaml(Path(path)) or {}
        try:
            flat = _flat_fields(raw.get("adapt", raw) if isinstance(raw, dict) else raw)
            given = {k: v for k, v in overrides.items() if v is not None}
            if "schedule" in given and isinstance(flat.get("schedule"), dict) and not _has_kind(given["schedule"]):
                given["schedule"] = {**flat["schedule"], **given["schedule"]}  # flags adjust the file's schedule
            return cls.from_dict({**flat, **given})
        except ConfigError as exc:
            raise ConfigError(f"{str(path)!r}: {exc}") from None

    # ------------------------------------------------------------------ writing
    def to_sections(self, record_data: Any = None) -> dict[str, Any]:
        """The sectioned form: the five core sections always, an extension's section when it is on."""
        out: dict[str, dict[str, Any]] = {s: {} for s in CORE_SECTIONS}
        for name, f in FIELDS.items():
            section, key = f.metadata["section"], f.metadata["key"]
            if section not in CORE_SECTIONS and not EXTENSION_ON[section](self):
                continue
            value = getattr(self, name)
            if name == "data" and record_data is not None:
                value = record_data
            if section not in CORE_SECTIONS and f.metadata["kind"] == "bool" and key == "enabled":
                out.setdefault(section, {})
                continue  # present = on
            out.setdefault(section, {})[key] = value
        return out

    def to_record(self, **resolved: Any) -> dict[str, Any]:
        """The sections as a run's config.yaml records them: plain values, in-memory data named by its type
        (evaluate / export / predict then need it passed again); ``resolved`` flat fields (the output
        directory, the backbone and input size a run settled on) replace the given ones."""
        import json

        data = self.data if isinstance(self.data, (str, Path)) else \
            f"<in-memory {type(self.data).__module__}.{type(self.data).__name__}>"
        cfg = dataclasses.replace(self, **resolved) if resolved else self
        return json.loads(json.dumps(cfg.to_sections(record_data=str(data)), default=str))

    # ------------------------------------------------------------------ checking
    def validate(self) -> "AdaptConfig":
        """Every field's type, then its range and choices: ``ConfigError`` naming the field, the value and
        what is expected. Runs before any data is read (the extensions' own rules run after it)."""
        if not self.plugin:
            raise ConfigError("plugin is required: a domain plugin's name (see `tlzoo plugins`)")
        if self.data is None:
            raise ConfigError("data is required: " + FIELDS["data"].metadata["help"])
        for name, f in FIELDS.items():
            _check_value(name, f.metadata, getattr(self, name))
        self.data_options = self.data_options or {}
        self.plugin_options = self.plugin_options or {}
        if isinstance(self.schedule, str):  # --schedule KIND, or a YAML `schedule: fine_tune`
            self.schedule = {"kind": self.schedule}
        _check_schedule(self.schedule)
        return self

    def active_sections(self) -> list[str]:
        """The extension sections that are on."""
        return [s for s, on in EXTENSION_ON.items() if on(self)]


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(AdaptConfig)}
SECTION_KEYS: dict[str, dict[str, str]] = {}  # section -> key -> field name
for _name, _f in FIELDS.items():
    SECTION_KEYS.setdefault(_f.metadata["section"], {})[_f.metadata["key"]] = _name

# When an extension's section is written (present = on).
EXTENSION_ON: dict[str, Callable[[AdaptConfig], bool]] = {
    "licences": lambda c: c.intended_use is not None or c.data_licence is not None,
    "calibration": lambda c: c.calibration != "none",
    "subgroups": lambda c: c.group_by is not None or c.max_group_gap is not None,
    "forgetting": lambda c: bool(c.forgetting),
    "domain_adaptation": lambda c: c.domain_adaptation is not None or c.target_data is not None,
    "l2sp": lambda c: c.l2sp is not None,
    "hybrid": lambda c: c.hybrid_source is not None,
    "resume": lambda c: bool(c.resume),
    "tensorboard": lambda c: bool(c.tensorboard),
}
# A section that is present but empty turns these on.
_SWITCHES = {s: k for s, keys in SECTION_KEYS.items() for k, n in keys.items()
             if s not in CORE_SECTIONS and FIELDS[n].metadata["kind"] == "bool" and k == "enabled"}


def is_sectioned(data: dict[str, Any]) -> bool:
    """Sections (``data: {source: ...}``, ``model: {...}`` ...) rather than the flat keys of earlier versions."""
    if any(k in data for k in ("model", "training", "output")):
        return True
    if isinstance(data.get("plugin"), dict) or (isinstance(data.get("data"), dict) and "source" in data["data"]):
        return True
    return any(isinstance(data.get(s), dict) or (s in data and data[s] is None and s in _SWITCHES)
               for s in EXTENSION_ON)


def _flat_fields(data: Any) -> dict[str, Any]:
    """A configuration mapping (sections, or flat keys) as field values; unknown keys named with where they
    belong."""
    if not isinstance(data, dict):
        raise ConfigError(f"a configuration is a mapping of sections, got {type(data).__name__}")
    flat = _flatten(data) if is_sectioned(data) else dict(data)
    unknown = sorted(set(flat) - FIELDS.keys())
    if unknown:
        raise ConfigError("; ".join(_unknown_key(k) for k in unknown))
    return flat


def _flatten(sections: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, body in sections.items():
        keys = SECTION_KEYS.get(section)
        if keys is None:
            raise ConfigError(_unknown_key(section, sectioned=True))
        if body is None:
            body = {}
        if not isinstance(body, dict):
            if section == "plugin" and isinstance(body, str):  # `plugin: medical-imaging` beside other sections
                body = {"name": body}
            elif section in FIELDS:
                flat[section] = body  # the flat spelling inside a sectioned file: `calibration: none`
                continue
            else:
                raise ConfigError(f"section {section!r} must be a mapping of {sorted(keys)}, got {body!r}")
        if section in _SWITCHES:
            flat[SECTION_KEYS[section][_SWITCHES[section]]] = True  # present = on
        for key, value in body.items():
            if key not in keys:
                raise ConfigError(f"unknown key {key!r} in section {section!r}; known: {sorted(keys)}"
                                  + _schedule_hint(key))
            flat[keys[key]] = value
    return flat


def _unknown_key(key: str, sectioned: bool = False) -> str:
    """An unknown key, with where it belongs when it is known elsewhere."""
    for section, keys in SECTION_KEYS.items():
        if key in keys and keys[key] != key:
            return f"unknown key {key!r}: it belongs under `{section}:` (as `{section}: {{{key}: ...}}`)"
    hint = _schedule_hint(key)
    if hint:
        return f"unknown key {key!r}" + hint
    known = sorted(SECTION_KEYS) if sectioned else sorted(FIELDS)
    return f"unknown config key {key!r}; known: {known}"


def _schedule_hint(key: str) -> str:
    if key in SCHEDULE_ADJUSTMENTS:
        return f": it belongs under `training: schedule:` (as `training: {{schedule: {{{key}: ...}}}}`)"
    return ""


def _has_kind(schedule: Any) -> bool:
    return isinstance(schedule, dict) and ("kind" in schedule or "stages" in schedule)


NULLABLE = ("weights",)  # None is meaningful: random initialisation
_KIND_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
                                           "dict": (dict,), "list": (list,), "path": (str, Path)}
_KIND_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
               "dict": "a mapping", "list": "a list", "path": "a path"}


def _check_value(name: str, meta: dict[str, Any], value: Any) -> None:
    kind = meta["kind"]
    if kind == "data":
        return _check_data(value)
    if value is None:
        if FIELDS[name].default is not None and name not in NULLABLE and kind not in ("dict", "schedule"):
            raise ConfigError(f"{name} must be {_KIND_WORDS[kind]}, got None")
        return
    if kind == "schedule":
        return
    is_bool = isinstance(value, bool)
    integral = hasattr(value, "__index__") and not is_bool  # numpy integers too
    ok = {"bool": is_bool, "int": integral,
          "float": integral or (isinstance(value, float) and not is_bool)}.get(kind)
    if ok is None:
        ok = isinstance(value, _KIND_TYPES[kind])
    if not ok:
        raise ConfigError(f"{name} must be {_KIND_WORDS[kind]}, got {value!r} ({type(value).__name__})"
                          + (f"; one of {list(meta['choices'])}" if meta["choices"] else ""))
    if meta["choices"] and value not in meta["choices"]:
        raise ConfigError(f"{name} must be one of {list(meta['choices'])}, got {value!r}")
    if kind in ("int", "float"):
        low, high, v = meta["low"], meta["high"], float(value)
        if not math.isfinite(v):
            raise ConfigError(f"{name} must be finite, got {value!r}")
        too_low = low is not None and (v <= low if meta["low_open"] else v < low)
        if too_low or (high is not None and v > high):
            lo = "" if low is None else f"{'>' if meta['low_open'] else '>='} {low:g}"
            hi = "" if high is None else f"<= {high:g}"
            raise ConfigError(f"{name} must be {' and '.join(s for s in (lo, hi) if s)}, got {value!r}")


def _check_data(value: Any) -> None:
    """The data argument's shape, before anything is read: a path-like, or one of the in-memory forms."""
    if isinstance(value, (str, Path, tuple, list, dict)):
        return
    kind = type(value).__module__.split(".")[0] + "." + type(value).__name__
    if kind == "numpy.ndarray":
        raise ConfigError("data is a single array: give (images, labels), a dict of arrays (images, labels, and "
                          "optionally val_/test_ ones) or a path")
    if hasattr(value, "columns") or kind.startswith(("tensorflow.", "pandas.")) or hasattr(value, "element_spec"):
        return
    raise ConfigError(f"data must be a path, tfds:NAME, (images, labels) arrays, a dict of columns, a DataFrame or "
                      f"a tf.data.Dataset; got {type(value).__name__}")


def _check_schedule(schedule: Any) -> None:
    """A schedule's parameters, before any data is read (the plugin's default needs the backbone's groups)."""
    if schedule is None:
        return
    if not isinstance(schedule, dict):
        raise ConfigError(f"schedule must be a schedule name (e.g. fine_tune), a mapping {{kind: ..., params}}, "
                          f"or {{stages: [...]}}; got {schedule!r} ({type(schedule).__name__})")
    if not _has_kind(schedule):
        unknown = sorted(set(schedule) - set(SCHEDULE_ADJUSTMENTS))
        if unknown:
            raise ConfigError(f"schedule {schedule!r} has no `kind` (or `stages`), so it adjusts the plugin's "
                              f"default schedule, which takes only {list(SCHEDULE_ADJUSTMENTS)}; got {unknown}")
        from tlzoo.train.schedule import FreezeSchedule, Stage

        FreezeSchedule([Stage("head", 1, 0), Stage("all", 2, "all")]).adjusted(**schedule)  # checks the values
        return
    from tlzoo.train.schedule import FreezeSchedule

    FreezeSchedule.from_dict({**schedule, "groups": 1} if schedule.get("kind") == "top" and "groups" not in schedule
                             else schedule)


def recorded(config: dict[str, Any]) -> AdaptConfig:
    """The settings of a run from its ``config.yaml`` (sections, or the flat keys of earlier versions)."""
    adapt = config.get("adapt") if isinstance(config, dict) else None
    if not isinstance(adapt, dict):
        raise ConfigError("the run's config.yaml has no `adapt` settings")
    return AdaptConfig.from_dict(adapt, validate=False)


def recorded_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The same, as a flat mapping of field names (``settings["seed"]``)."""
    cfg = recorded(config)
    return {name: getattr(cfg, name) for name in FIELDS}
