"""Group attributes for subgroup metrics (``--group-by``).

A group attribute is one value per sample (site, device, sex, age band, production line ...). It is
either stored with the data (an .npz ``groups`` array, or any other per-sample key such as ``site``)
or derived from a real property of the samples when the data carries none:

- ``brightness``: the image's mean intensity, banded into terciles (dark / mid / bright) with edges
  computed on the train split and applied to every split. Does the model work as well on under- and
  over-exposed parts as on the typical ones?
- ``filename_prefix``: the file-name stem up to its first ``_``. Meaningful only where the files are
  named after how they were captured (magnetic_tile's ``exp1_num_...`` .. ``exp6_...``: the mean
  intensity rises with the number, so it is most likely the exposure setting); on NEU it is the class.

The attribute is set on the splits before label subsampling, so it travels with the samples.
"""
from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np

from tlzoo.data import SPLITS, DataSplits, image_batches
from tlzoo.errors import ConfigError, DataError

BRIGHTNESS_BANDS = ("dark", "mid", "bright")
DERIVED = ("brightness", "filename_prefix")
MAX_GROUPS = 50  # more distinct values than this is a continuous attribute: band it first
GROUP_TASKS = ("binary", "multiclass")


def assign_groups(data: DataSplits, group_by: str | None, *, task: str, max_gap: float | None = None) -> DataSplits:
    """Set every split's ``groups`` to the attribute ``group_by`` names (None: keep the data's own
    ``groups``, if it has any), and check the attribute can be reported on."""
    if max_gap is not None and not 0 <= max_gap <= 1:
        raise ConfigError(f"max_group_gap is a difference between metrics in [0, 1]; got {max_gap}")
    if group_by is not None:
        if task not in GROUP_TASKS:
            raise ConfigError(f"subgroup metrics support {' and '.join(GROUP_TASKS)} tasks; this one is {task}")
        values = _brightness(data) if group_by == "brightness" else {s: _stored(data, s, group_by) for s in SPLITS}
        for s in SPLITS:
            data.split(s).groups = values[s]
        data.group_by = group_by
        _check(data)
    elif data.group_by is not None and task in GROUP_TASKS:
        try:
            _check(data)
        except DataError as exc:  # the data's own groups, not asked for: go without the report, don't stop
            for s in SPLITS:
                data.split(s).groups = None
            data.group_by = None
            data.notes.append(f"no subgroup report: {exc}")
    if max_gap is not None and (data.group_by is None or task not in GROUP_TASKS):
        raise ConfigError(f"max_group_gap={max_gap} needs a group attribute: give group_by (--group-by) a key "
                          f"of the data or one of {list(DERIVED)}")
    return data


def _stored(data: DataSplits, split: str, key: str) -> np.ndarray:
    s = data.split(split)
    if key == "groups" and s.groups is not None:
        return s.groups
    if key == "filename_prefix" and "filenames" in s.attributes:
        return np.array([PurePosixPath(str(f)).stem.split("_")[0] for f in s.attributes["filenames"]])
    if key in s.attributes:
        return s.attributes[key]
    have = (["groups"] if s.groups is not None else []) + sorted(s.attributes)
    need = "'filenames' array" if key == "filename_prefix" else \
        f"per-sample array {key!r} (.npz key {key!r}, or {f'{split}_{key}'!r} beside {split}_images)"
    raise DataError(f"--group-by {key!r}: the {split} split of {data.source} has no {need}; its per-sample "
                    f"arrays are {have or 'none'}; derived attributes: {list(DERIVED)}")


def _brightness(data: DataSplits) -> dict[str, np.ndarray]:
    """Mean-intensity terciles; the edges come from the train split only, like any other statistic."""
    if data.train.x.ndim != 4:
        raise ConfigError(f"group_by 'brightness' is derived from images; {data.source} holds arrays of shape "
                          f"{data.train.x.shape[1:]}")
    means = {s: np.concatenate([b.reshape(len(b), -1).mean(1) for b in image_batches(data.split(s).x)]
                               or [np.zeros(0)]) for s in SPLITS}
    edges = np.quantile(means["train"], [1 / 3, 2 / 3])
    data.notes.append(f"group attribute 'brightness': image mean intensity < {edges[0]:.4g} dark, "
                      f"< {edges[1]:.4g} mid, else bright (terciles of the train split)")
    bands = np.array(BRIGHTNESS_BANDS)
    return {s: bands[np.searchsorted(edges, m, side="right")] for s, m in means.items()}


def _check(data: DataSplits) -> None:
    values = np.unique(data.test.groups) if data.test.groups is not None else np.array([])
    if len(values) > MAX_GROUPS:
        raise DataError(f"group attribute {data.group_by!r} has {len(values)} distinct values in the test split "
                        f"(e.g. {values[:5].tolist()}); band it into at most {MAX_GROUPS} groups first")
    train = data.train
    if train.groups is None or train.y.ndim != 1:
        return
    classes_per_group = [np.unique(train.y[train.groups == g]).size for g in np.unique(train.groups)]
    if len(classes_per_group) > 1 and max(classes_per_group) == 1:
        raise DataError(f"group attribute {data.group_by!r} only repeats the class label (every group holds a "
                        "single class); per-class figures are in the confusion matrix already")


def group_order(values: np.ndarray) -> list:
    """Distinct group values in reading order: brightness bands dark -> bright, else sorted."""
    unique = np.unique(values).tolist()
    rank = {b: i for i, b in enumerate(BRIGHTNESS_BANDS)}
    return sorted(unique, key=lambda v: (rank.get(v, len(rank)), v)) if set(unique) <= set(rank) else unique
