"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022) in Keras.

Fitted on normal images only, no gradient training:

1. mid-level feature maps of a frozen pretrained backbone, picked from its registered layer groups
   (by default the last group at output stride 8 and the last at stride 16), each averaged over a
   3x3 neighbourhood, the coarser one upsampled to the finer grid, concatenated: one feature per patch;
2. a memory bank of normal patch features, subsampled by greedy k-center coreset selection
   (on a random projection of the features, as in the paper) to bound memory and scoring time;
3. a patch's score is the distance to its nearest bank feature; an image's score is its most
   distant patch; the per-pixel anomaly map is the patch-score grid upsampled to the image.

Optionally (``views``) each normal image enters the bank in several dihedral views (flips or quarter
turns of the resized square input) and an image's score is the mean over the same views, its map the
mean of the views' patch grids turned back (DifferNet averages its score over rotations).

The scoring model is one Keras model (raw image in; score, map out) with the bank stored as a
layer weight and the nearest-neighbour search as graph ops, so exports carry both.
"""
from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import keras
import numpy as np

from tlzoo.errors import ConfigError, DataError
from tlzoo.model.layers import BackbonePreprocess, CastToFloat32
from tlzoo.zoo import build_backbone, get_backbone_spec, layer_groups
from tlzoo.zoo.weights import ResolvedWeights

log = logging.getLogger(__name__)

SCORE_OUTPUT = "probabilities"  # the export contract's score slot: here the raw anomaly score
MAP_OUTPUT = "anomaly_map"

# Dihedral views of a square image, as (quarter turns, mirrored left-right first). A view is used at test
# time only with the same view in the bank: a flipped tile is not a normal tile to an unflipped bank
# (magnetic tiles: 0.879 image ROC-AUC with test-time flips alone, against 0.950 without views).
VIEWS: dict[str, tuple[tuple[int, bool], ...]] = {
    "none": ((0, False),),
    "flips": ((0, False), (0, True), (2, True), (2, False)),  # as is, left-right, up-down, both
    "rot90": tuple((k, False) for k in range(4)),
    "d4": tuple((k, m) for m in (False, True) for k in range(4)),
}


# ---------------------------------------------------------------- layers (serialisable, exported)


@keras.saving.register_keras_serializable(package="tlzoo")
class PatchFeatures(keras.layers.Layer):
    """Feature maps of several levels -> one locally aware feature per patch of the finest grid."""

    def __init__(self, neighbourhood: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.neighbourhood = int(neighbourhood)

    def call(self, maps: Sequence[Any]) -> Any:
        import tensorflow as tf

        k = self.neighbourhood
        pooled = [tf.nn.avg_pool2d(m, k, 1, "SAME") if k > 1 else m for m in maps]
        size = tf.shape(pooled[0])[1:3]
        resized = [pooled[0]] + [tf.image.resize(m, size, method="bilinear") for m in pooled[1:]]
        return tf.concat(resized, axis=-1)

    def compute_output_shape(self, input_shapes: Sequence[Any]) -> Any:
        first = input_shapes[0]
        return (first[0], first[1], first[2], sum(int(s[-1]) for s in input_shapes))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "neighbourhood": self.neighbourhood}


@keras.saving.register_keras_serializable(package="tlzoo")
class DihedralView(keras.layers.Layer):
    """A square batch ([N, S, S, C] or [N, S, S]) mirrored left-right (``mirror``), then turned ``turns``
    quarter turns counter-clockwise; with ``inverse`` the same view undone (a patch grid turned back)."""

    def __init__(self, turns: int = 0, mirror: bool = False, inverse: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.turns, self.mirror, self.inverse = int(turns) % 4, bool(mirror), bool(inverse)

    def call(self, x: Any) -> Any:
        import tensorflow as tf

        grid = len(x.shape) == 3
        if grid:
            x = x[..., None]
        if not self.inverse and self.mirror:
            x = tf.reverse(x, [2])
        if self.turns:
            x = tf.image.rot90(x, self.turns if not self.inverse else 4 - self.turns)
        if self.inverse and self.mirror:
            x = tf.reverse(x, [2])
        return x[..., 0] if grid else x

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "turns": self.turns, "mirror": self.mirror, "inverse": self.inverse}


@keras.saving.register_keras_serializable(package="tlzoo")
class NearestNeighbourDistance(keras.layers.Layer):
    """Patch features (N, h, w, d) -> distance to the nearest memory-bank feature (N, h, w).

    The bank is a non-trainable weight (a constant once exported); the search is a matmul
    (|f|^2 - 2 f.b + |b|^2) and a min over the bank, which every runtime has."""

    def __init__(self, bank_size: int, dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bank_size, self.dim = int(bank_size), int(dim)
        self.bank = self.add_weight(shape=(self.bank_size, self.dim), initializer="zeros", trainable=False, name="bank")

    def call(self, features: Any) -> Any:
        import tensorflow as tf

        bank = tf.convert_to_tensor(self.bank)
        f2 = tf.reduce_sum(tf.square(features), axis=-1, keepdims=True)
        b2 = tf.reduce_sum(tf.square(bank), axis=-1)
        cross = tf.einsum("nhwd,md->nhwm", features, bank)
        d2 = tf.reduce_min(f2 - 2.0 * cross + b2, axis=-1)
        return tf.sqrt(tf.maximum(d2, 0.0))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape[:3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "bank_size": self.bank_size, "dim": self.dim}


@keras.saving.register_keras_serializable(package="tlzoo")
class AnomalyOutputs(keras.layers.Layer):
    """(patch distances of each view, ..., raw image) -> image score (N, 1) = the most distant patch (the
    mean of that over the views), and the per-pixel map (N, H, W): the patch distances (averaged over
    the views, each turned back) upsampled bilinearly to the raw image's size."""

    def call(self, inputs: Sequence[Any]) -> Any:
        import tensorflow as tf

        *grids, image = inputs
        if len(grids) == 1:
            patches = grids[0]
            score = tf.reduce_max(patches, axis=[1, 2])[:, None]
        else:
            patches = tf.add_n(grids) / float(len(grids))
            score = tf.add_n([tf.reduce_max(g, axis=[1, 2]) for g in grids])[:, None] / float(len(grids))
        amap = tf.image.resize(patches[..., None], tf.shape(image)[1:3], method="bilinear")[..., 0]
        return score, amap

    def compute_output_shape(self, input_shapes: Sequence[Any]) -> Any:
        patches, image = input_shapes[0], input_shapes[-1]
        return (patches[0], 1), (image[0], image[1], image[2])


# ---------------------------------------------------------------- pieces usable on their own


def feature_levels(backbone: keras.Model, spec: Any, input_size: int, strides: Sequence[int] = (8, 16),
                   names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(group, layer) pairs whose outputs feed the patch features: the named layer groups, or for
    each output stride in ``strides`` the last group of the backbone at that stride."""
    groups = layer_groups(backbone, spec)
    by_name = {g.name: g for g in groups}
    if names:
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ConfigError(f"feature level(s) {unknown} are not layer groups of {spec.name!r}; groups: "
                              f"{[g.name for g in groups]}")
        return [(n, by_name[n].layers[-1]) for n in names]
    picked = []
    for stride in strides:
        match = None
        for g in groups:
            shape = backbone.get_layer(g.layers[-1]).output.shape
            if len(shape) == 4 and shape[1] and input_size / shape[1] == stride:
                match = g
        if match is None:
            raise ConfigError(f"backbone {spec.name!r} at {input_size} px has no layer group at output stride "
                              f"{stride}; pick levels by name (levels=...) from {[g.name for g in groups]}")
        picked.append((match.name, match.layers[-1]))
    return picked


def greedy_coreset(features: np.ndarray, size: int, *, projection_dim: int | None = 128, seed: int = 0,
                   verbose: bool = False) -> np.ndarray:
    """Indices of ``size`` rows chosen by greedy k-center selection (each new row the one farthest
    from those chosen so far), on a Gaussian random projection to ``projection_dim`` dimensions
    (distances are roughly kept, Johnson-Lindenstrauss; the selection gets cheaper)."""
    n, d = features.shape
    if not 1 <= size <= n:
        raise ConfigError(f"coreset size must be in 1..{n} (the number of patch features), got {size}")
    rng = np.random.default_rng(seed)
    z = np.asarray(features, np.float32)
    if projection_dim and projection_dim < d:
        z = z @ (rng.standard_normal((d, projection_dim)).astype(np.float32) / np.sqrt(projection_dim))
    norms = np.einsum("ij,ij->i", z, z)
    chosen = np.empty(size, np.int64)
    chosen[0] = int(rng.integers(n))
    dist = norms - 2 * (z @ z[chosen[0]]) + norms[chosen[0]]
    t0 = time.perf_counter()
    for i in range(1, size):
        chosen[i] = int(np.argmax(dist))
        np.minimum(dist, norms - 2 * (z @ z[chosen[i]]) + norms[chosen[i]], out=dist)
        if verbose and (i % max(1, size // 5) == 0):
            print(f"  coreset {i}/{size} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return chosen


def false_alarm_threshold(normal_scores: np.ndarray, max_false_alarm: float) -> float:
    """The lowest threshold (decision: score >= threshold) that flags at most ``max_false_alarm`` of
    the given held-out normal scores. Needs at least ceil(1 / max_false_alarm) of them: with fewer,
    a rate that small cannot be measured."""
    s = np.sort(np.asarray(normal_scores, np.float64).reshape(-1))[::-1]
    if not 0 < max_false_alarm < 1:
        raise ConfigError(f"max_false_alarm must be in (0, 1), got {max_false_alarm}")
    need = math.ceil(1 / max_false_alarm - 1e-9)
    if len(s) < need:
        raise DataError(
            f"{len(s)} held-out normal image(s) cannot set a threshold for a {max_false_alarm:g} false-alarm "
            f"rate (at least {need} needed); give more defect-free images, a larger threshold_fraction, or a "
            f"larger max_false_alarm")
    allowed = int(math.floor(max_false_alarm * len(s) + 1e-9))  # normals that may score above
    return float(np.nextafter(np.float32(s[allowed]), np.float32(np.inf)))


def images_to_batch(images: Sequence[np.ndarray] | np.ndarray, where: str = "images") -> tuple[np.ndarray, str | None]:
    """A list of (H, W[, C]) images -> one uint8 batch; mixed sizes are resized to the most common
    size. Returns the batch and a note saying so (once), or None when nothing was resized."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return images, None
    arrays = [np.asarray(im) if np.asarray(im).ndim == 3 else np.asarray(im)[..., None] for im in images]
    if not arrays:
        raise DataError(f"{where}: no images")
    sizes = Counter(a.shape[:2] for a in arrays)
    target = sizes.most_common(1)[0][0]
    note = None
    if len(sizes) > 1:
        import tensorflow as tf

        n_other = sum(c for s, c in sizes.items() if s != target)
        note = (f"{where}: images come in {len(sizes)} sizes; {n_other} resized to the most common "
                f"{target[0]}x{target[1]} (bilinear)")
        arrays = [a if a.shape[:2] == target else
                  np.clip(np.round(tf.image.resize(a.astype(np.float32), target).numpy()), 0, 255).astype(a.dtype)
                  for a in arrays]
    channels = {a.shape[-1] for a in arrays}
    if len(channels) > 1:
        raise DataError(f"{where}: images mix channel counts {sorted(channels)}")
    return np.stack(arrays), note


def map_display_range(maps: np.ndarray, threshold: float) -> tuple[float, float]:
    """One colour scale for anomaly-map overlays: from half the image threshold (background patches
    stay dark) to the maps' 99.5th percentile, at least the threshold (so a flagged patch shows hot)."""
    return threshold * 0.5, max(float(np.percentile(maps, 99.5)), threshold)


# ---------------------------------------------------------------- the detector


@dataclass
class PatchCoreConfig:
    backbone: str = "mobilenet_v2"
    weights: str | None = "imagenet"  # None: randomly initialised backbone (the from-scratch baseline)
    input_size: int = 224
    levels: tuple[str, ...] | None = None  # layer-group names; default: by output stride
    strides: tuple[int, ...] = (8, 16)
    neighbourhood: int = 3
    views: str = "none"  # a key of VIEWS: the views of each image in the bank and averaged at scoring
    coreset_ratio: float = 0.1  # fraction of the normal patch features kept in the bank (all views')
    coreset_size: int | None = None  # overrides coreset_ratio
    projection_dim: int = 128
    max_bank_mb: float = 256.0  # refuse banks larger than this (float32)
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.coreset_ratio <= 1:
            raise ConfigError(f"coreset_ratio must be in (0, 1], got {self.coreset_ratio}")
        if self.coreset_size is not None and int(self.coreset_size) < 1:
            raise ConfigError(f"coreset_size must be >= 1, got {self.coreset_size}")
        if self.max_bank_mb <= 0:
            raise ConfigError(f"max_bank_mb must be > 0, got {self.max_bank_mb}")
        if self.views not in VIEWS:
            raise ConfigError(f"views must be one of {list(VIEWS)}, got {self.views!r}")
        if int(self.neighbourhood) < 1:
            raise ConfigError(f"neighbourhood must be >= 1, got {self.neighbourhood}")


@dataclass
class PatchCore:
    """``pc = PatchCore(PatchCoreConfig()); pc.fit(normal_images); scores, maps = pc.score(images)``."""

    config: PatchCoreConfig = field(default_factory=PatchCoreConfig)

    def __post_init__(self) -> None:
        c = self.config
        self.spec = get_backbone_spec(c.backbone)
        keras.utils.set_random_seed(c.seed)
        self.backbone, _, self.weights_record = build_backbone(
            c.backbone, c.weights, (c.input_size, c.input_size, self.spec.channels))
        self.backbone.trainable = False
        self.levels = feature_levels(self.backbone, self.spec, c.input_size, c.strides, c.levels)
        self.extractor = keras.Model(self.backbone.inputs,
                                     [self.backbone.get_layer(layer).output for _, layer in self.levels],
                                     name=f"{self.spec.name}_levels")
        self.model: keras.Model | None = None
        self.bank: np.ndarray | None = None
        self.fit_info: dict[str, Any] = {}

    # -------------------------------------------------------------- graph pieces
    @property
    def views(self) -> tuple[tuple[int, bool], ...]:
        return VIEWS[self.config.views]

    def _resized(self, inputs: Any) -> Any:
        """Raw image -> float32, RGB where the backbone wants it, square at the input size."""
        x = CastToFloat32(name="to_float32")(inputs)
        if inputs.shape[-1] == 1 and self.spec.channels == 3:
            x = keras.layers.Concatenate(name="gray_to_rgb")([x, x, x])
        return keras.layers.Resizing(self.config.input_size, self.config.input_size, name="resize")(x)

    def _features(self, x: Any, view: tuple[int, bool] = (0, False), suffix: str = "") -> Any:
        """Resized square images -> patch features of one view of them."""
        if view != (0, False):
            x = DihedralView(*view, name=f"view{suffix}")(x)
        x = BackbonePreprocess(self.spec.name, name=f"backbone_preprocess{suffix}")(x)
        maps = self.extractor(x)
        return PatchFeatures(self.config.neighbourhood, name=f"patch_features{suffix}")(
            list(maps) if isinstance(maps, (list, tuple)) else [maps])

    def feature_model(self, channels: int, view: tuple[int, bool] = (0, False)) -> keras.Model:
        inputs = keras.Input(shape=(None, None, channels), name="image")
        return keras.Model(inputs, self._features(self._resized(inputs), view), name="patch_feature_model")

    def grid(self) -> tuple[int, int, int]:
        """(h, w, d) of the patch-feature grid."""
        shape = self.extractor.outputs[0].shape
        return int(shape[1]), int(shape[2]), sum(int(o.shape[-1]) for o in self.extractor.outputs)

    def bank_rows(self, n_images: int) -> int:
        h, w, _ = self.grid()
        total = n_images * len(self.views) * h * w
        c = self.config
        return min(total, int(c.coreset_size) if c.coreset_size else max(1, int(round(c.coreset_ratio * total))))

    def check_budget(self, n_images: int) -> None:
        """Refuse, before any work, a bank larger than ``max_bank_mb``, saying how to cap it."""
        rows, (h, w, d) = self.bank_rows(n_images), self.grid()
        mb = rows * d * 4 / 1e6
        if mb > self.config.max_bank_mb:
            cap = int(self.config.max_bank_mb * 1e6 / (d * 4))
            raise ConfigError(
                f"the memory bank would hold {rows:,} patch features x {d} dims = {mb:.1f} MB "
                f"({n_images} images x {len(self.views)} view(s) x {h * w} patches, coreset_ratio "
                f"{self.config.coreset_ratio:g}), over "
                f"max_bank_mb={self.config.max_bank_mb:g}; cap it with coreset_size<={cap:,} (or a smaller "
                f"coreset_ratio), or raise max_bank_mb")

    # -------------------------------------------------------------- fit / score
    def fit(self, images: np.ndarray, labels: np.ndarray | None = None, normal_label: int | None = None,
            verbose: bool = True) -> "PatchCore":
        """Build the memory bank from normal images. With ``labels``, any image not labelled
        ``normal_label`` is refused: the bank must hold normal patches only."""
        images, note = images_to_batch(images, "normal images")
        if note:
            log.warning(note)
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            if normal_label is None:
                raise ConfigError("labels were given without normal_label: say which label is normal")
            bad = np.flatnonzero(labels != normal_label)
            if bad.size:
                raise DataError(
                    f"{bad.size} of {len(labels)} images given to fit the normal memory bank are labelled as "
                    f"defective (labels {sorted(set(labels[bad].tolist()))[:5]}, normal is {normal_label}; "
                    f"first at index {int(bad[0])}); anomaly fitting takes defect-free images only")
        if len(images) < 1:
            raise DataError("no normal images to fit the memory bank")
        self.check_budget(len(images))
        t0 = time.perf_counter()
        feats = [np.asarray(self.feature_model(images.shape[-1], view).predict(
            images, batch_size=self.config.batch_size, verbose=0), np.float32) for view in self.views]
        t_feat = time.perf_counter() - t0
        flat = np.concatenate([f.reshape(-1, f.shape[-1]) for f in feats])
        rows = self.bank_rows(len(images))
        if verbose:
            print(f"patch features: {len(images)} images x {len(feats)} view(s) x {feats[0].shape[1]}x"
                  f"{feats[0].shape[2]} patches x {flat.shape[-1]} dims ({t_feat:.0f} s); coreset {rows:,} of "
                  f"{len(flat):,}", flush=True)
        t1 = time.perf_counter()
        idx = greedy_coreset(flat, rows, projection_dim=self.config.projection_dim, seed=self.config.seed,
                             verbose=verbose) if rows < len(flat) else np.arange(len(flat))
        self.bank = flat[idx].copy()
        t_core = time.perf_counter() - t1
        self.model = self._scoring_model(images.shape[-1])
        self.fit_info = {"n_images": int(len(images)), "views": self.config.views, "patches": int(len(flat)),
                         "bank_size": int(len(self.bank)),
                         "dim": int(self.bank.shape[1]), "bank_mb": round(self.bank.nbytes / 1e6, 3),
                         "feature_seconds": round(t_feat, 2), "coreset_seconds": round(t_core, 2),
                         "levels": [{"group": g, "layer": layer} for g, layer in self.levels],
                         "grid": list(self.grid()[:2])}
        return self

    def _scoring_model(self, channels: int) -> keras.Model:
        assert self.bank is not None
        inputs = keras.Input(shape=(None, None, channels), name="image")
        x = self._resized(inputs)
        nn_layer = NearestNeighbourDistance(len(self.bank), self.bank.shape[1], name="nearest_neighbour")
        grids = []
        for i, view in enumerate(self.views):  # one bank, searched from every view
            suffix = f"_{i}" if len(self.views) > 1 else ""
            patches = nn_layer(self._features(x, view, suffix))
            grids.append(DihedralView(*view, inverse=True, name=f"unview{suffix}")(patches)
                         if view != (0, False) else patches)
        nn_layer.bank.assign(self.bank)
        score, amap = AnomalyOutputs(name="anomaly_outputs")([*grids, inputs])
        return keras.Model(inputs, {SCORE_OUTPUT: score, MAP_OUTPUT: amap}, name=f"patchcore_{self.spec.name}")

    def score(self, images: np.ndarray, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Image scores (N,) and per-pixel maps (N, H, W) from the scoring model."""
        if self.model is None:
            raise ConfigError("PatchCore is not fitted; call fit(normal_images) first")
        images, note = images_to_batch(images)
        if note:
            log.warning(note)
        bs = batch_size or self.config.batch_size
        scores, maps = [], []
        for i in range(0, len(images), bs):
            out = self.model(images[i:i + bs], training=False)
            scores.append(np.asarray(out[SCORE_OUTPUT])[:, 0])
            maps.append(np.asarray(out[MAP_OUTPUT]))
        return np.concatenate(scores), np.concatenate(maps)

    def describe(self) -> dict[str, Any]:
        return {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.config).items()},
                **self.fit_info}


__all__ = ["VIEWS", "DihedralView", "PatchCore", "PatchCoreConfig", "ResolvedWeights", "feature_levels",
           "greedy_coreset", "false_alarm_threshold", "images_to_batch", "map_display_range"]
