"""Forgetting control: how far fine-tuning moves a backbone away from its pretrained self.

On a fixed reference batch of raw training images, the output of the last layer of every layer
group is recorded before training (the pretrained state) and again after every epoch; linear CKA
(Kornblith et al. 2019) compares the two, per group (drift = 1 - CKA; 1 = the same representation
up to rotation and scale). Where the pretrained weights come with a classification top available
offline (e.g. MobileNetV2's ImageNet top), that top is applied to the current backbone's output:
source agreement is the fraction of reference images whose top-1 source class is still the one the
pretrained backbone gave (with the top-5 overlap and the mean KL divergence beside it).

``max_drift`` bounds the largest per-group drift; when an epoch passes it, ``on_drift`` either
stops training (the best weights so far are kept) or halves the learning rate (the optimizer's
``lr_scale``, see ``tlzoo.train.schedule``), at most ``max_lr_lowerings`` times.

``tlzoo adapt --track-forgetting [--max-drift 0.3 --on-drift lower_lr]`` writes ``forgetting.json``
and ``forgetting.png`` into the run directory, per-epoch values into ``history.json`` and a summary
into ``metrics.json`` (``"forgetting"``) and the model card.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np

from tlzoo.errors import ConfigError, DataError, WeightsError
from tlzoo.model.assemble import backbone_call
from tlzoo.runs.directory import write_json
from tlzoo.train.schedule import get_lr_scale, set_lr_scale
from tlzoo.zoo.spec import BackboneSpec, LayerGroup

FORGETTING_FILE = "forgetting.json"
FORGETTING_PLOT = "forgetting.png"
ON_DRIFT = ("stop", "lower_lr")
LR_FACTOR = 0.5  # what lower_lr multiplies the learning rate by, each time the bound is passed
MIN_REFERENCE = 4  # CKA on fewer images says little (with 2 every pair of representations agrees)


# --- linear CKA -----------------------------------------------------------------------------------

def _centered_gram(x: Any) -> np.ndarray:
    """X X^T of the column-centred, flattened features: n x n whatever the feature size."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    x = x - x.mean(axis=0, keepdims=True)
    return x @ x.T


def _cka_from_grams(kx: np.ndarray, ky: np.ndarray) -> float:
    # tr(K L) / (||K||_F ||L||_F) with centred Gram matrices = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)
    norm = math.sqrt(float(np.sum(kx * kx)) * float(np.sum(ky * ky)))
    return float(np.sum(kx * ky)) / norm if norm > 0 else float("nan")  # constant features: undefined


def _unbiased_hsic(kx: np.ndarray, ky: np.ndarray) -> float:
    """HSIC's unbiased estimator (Song et al. 2012) on Gram matrices (their diagonals are dropped)."""
    n = len(kx)
    kx, ky = kx.copy(), ky.copy()
    np.fill_diagonal(kx, 0.0)
    np.fill_diagonal(ky, 0.0)
    kl = (float(np.sum(kx * ky)) + kx.sum() * ky.sum() / ((n - 1) * (n - 2))
          - 2.0 / (n - 2) * float(kx.sum(0) @ ky.sum(1)))
    return kl / (n * (n - 3))


def linear_cka(x: Any, y: Any, *, debiased: bool = False) -> float:
    """Linear CKA between two representations of the same ``n`` examples (Kornblith et al. 2019).

    ``x`` and ``y`` are arrays with ``n`` rows, any trailing shape (flattened per example, so conv
    maps of different sizes compare). Computed through the n x n Gram matrices of the centred
    features, so a 48x48x32 map costs n^2 x 73k, not 73k^2. 1 for identical representations,
    invariant to orthogonal transforms and isotropic scaling. For independent features it is near 0
    only when n is well above the feature dimension: with n << d even unrelated random features score
    high (both Gram matrices are close to a multiple of the identity). ``debiased=True`` uses the
    unbiased HSIC estimator (Nguyen et al. 2021), near 0 for independent features at any n >= 4.
    NaN when either representation is constant.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 1 or y.ndim < 1 or len(x) != len(y):
        raise DataError(f"linear_cka needs two arrays with the same number of rows (examples), got shapes "
                        f"{x.shape} and {y.shape}")
    if len(x) < (MIN_REFERENCE if debiased else 2):
        raise DataError(f"linear_cka needs at least {MIN_REFERENCE if debiased else 2} examples, got {len(x)}")
    if not debiased:
        return _cka_from_grams(_centered_gram(x), _centered_gram(y))
    kx, ky = _centered_gram(x), _centered_gram(y)
    norm = math.sqrt(max(0.0, _unbiased_hsic(kx, kx) * _unbiased_hsic(ky, ky)))
    return _unbiased_hsic(kx, ky) / norm if norm > 0 else float("nan")


# --- options --------------------------------------------------------------------------------------

def check_options(*, enabled: bool, reference: Any = 64, max_drift: Any = None, on_drift: Any = "stop",
                  max_lr_lowerings: Any = 3) -> None:
    """Raise ``ConfigError`` naming the bad value; called before any training."""
    if on_drift not in ON_DRIFT:
        raise ConfigError(f"on_drift must be one of {', '.join(ON_DRIFT)}, got {on_drift!r}")
    if isinstance(reference, bool) or not isinstance(reference, (int, np.integer)) or reference < MIN_REFERENCE:
        raise ConfigError(f"forgetting_reference (reference images for drift) must be an integer >= {MIN_REFERENCE}, "
                          f"got {reference!r}; 64 is a good default")
    if (isinstance(max_lr_lowerings, bool) or not isinstance(max_lr_lowerings, (int, np.integer))
            or max_lr_lowerings < 1):
        raise ConfigError(f"max_lr_lowerings must be an integer >= 1, got {max_lr_lowerings!r}")
    if max_drift is not None:
        if isinstance(max_drift, bool) or not isinstance(max_drift, (int, float)) or not 0 < max_drift < 1:
            raise ConfigError(f"max_drift bounds 1 - CKA and must lie in (0, 1), got {max_drift!r} "
                              "(e.g. 0.2: stop once a layer group keeps less than 0.8 CKA with its pretrained self)")
        if not enabled:
            raise ConfigError(f"max_drift={max_drift!r} needs forgetting tracking: set forgetting=True "
                              "(--track-forgetting)")
    elif on_drift != "stop":
        raise ConfigError(f"on_drift={on_drift!r} acts only when the drift passes a bound: give max_drift too "
                          "(--max-drift X)")


def reference_indices(n_available: int, n: int, seed: int) -> np.ndarray:
    """A seeded choice of ``n`` training examples (all of them when there are fewer), sorted."""
    if n_available < MIN_REFERENCE:
        raise DataError(f"forgetting tracking needs at least {MIN_REFERENCE} training examples, got {n_available}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_available, size=min(n, n_available), replace=False))


# --- the source task's top ------------------------------------------------------------------------

@dataclass
class SourceTop:
    """The pretrained classification top, as a model from the backbone's output to source-class
    probabilities, or the reason there is none."""

    model: keras.Model | None
    reason: str = ""  # why unavailable; "" when available
    description: str = ""


_TOP_LAYERS = (keras.layers.Dropout, keras.layers.Dense, keras.layers.Conv2D, keras.layers.Reshape,
               keras.layers.Flatten, keras.layers.Activation, keras.layers.Softmax, keras.layers.LayerNormalization)


def source_top(spec: BackboneSpec, weights: Any) -> SourceTop:
    """The classification top that came with ``weights`` (the full model built at its native size with
    ``include_top=True``, through the same offline weights chain as the backbone), cut after its global
    pooling: global pooling + per-example layers (dropout, Dense / 1x1 conv, reshape, activation).
    Tops of another shape (VGG's fully connected layers on a fixed-size map) are reported unavailable."""
    if weights is None:
        return SourceTop(None, "random initialisation: no pretrained source task")
    if spec.modality != "image" or spec.family in ("tfhub", "keras_hub"):
        return SourceTop(None, f"{spec.name} ({spec.family}) has no classification top tlzoo can load")
    if str(weights) not in spec.weight_names:
        return SourceTop(None, f"weights given as a file ({weights}) carry no classification top")
    from tlzoo.zoo.weights import routed_keras_downloads

    records: list[Any] = []
    try:
        with routed_keras_downloads(records):
            full = spec.builder(weights=str(weights), **dict(spec.builder_kwargs, include_top=True))
    except WeightsError as exc:
        return SourceTop(None, f"the {weights} top of {spec.name} is not available: {str(exc).splitlines()[0]}")
    except (TypeError, ValueError) as exc:  # a builder without a top
        return SourceTop(None, f"{spec.name} cannot be built with its {weights} top: {exc}")
    tail: list[keras.layers.Layer] = []
    for layer in reversed(full.layers):
        if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)):
            tail.insert(0, layer)
            break
        if not isinstance(layer, _TOP_LAYERS) or (isinstance(layer, keras.layers.Conv2D)
                                                 and tuple(layer.kernel_size) != (1, 1)):
            return SourceTop(None, f"the {weights} top of {spec.name} is not global pooling + classifier "
                                   f"(it holds {layer.name!r}, {type(layer).__name__})")
        tail.insert(0, layer)
    else:
        return SourceTop(None, f"the {weights} top of {spec.name} has no global pooling")
    # fresh copies of the top's layers, so the full model (and its memory) can go
    x = inputs = keras.Input(shape=(None, None, int(tail[0].input.shape[-1])), name="backbone_output")
    for layer in tail:
        clone = type(layer).from_config(layer.get_config())
        x = clone(x)
        clone.set_weights(layer.get_weights())
    weighted = [f"{lyr.name} ({type(lyr).__name__})" for lyr in tail if lyr.weights]
    file = f", {records[-1].file}" if records else ""
    top = keras.Model(inputs, x, name=f"{spec.name}_{weights}_top")
    del full
    return SourceTop(top, "", f"{weights} top of {spec.name}: {' -> '.join(weighted)}, "
                               f"{int(x.shape[-1])} classes{file}")


def _probabilities(out: np.ndarray) -> np.ndarray:
    out = np.asarray(out, dtype=np.float64).reshape(len(out), -1)
    if np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
        return out
    z = np.exp(out - out.max(axis=1, keepdims=True))  # logits (a top without softmax)
    return z / z.sum(axis=1, keepdims=True)


# --- the monitor ----------------------------------------------------------------------------------

class DriftMonitor(keras.callbacks.Callback):
    """Per-epoch drift of a backbone from its pretrained self, as a Keras callback (spans several ``fit``
    calls, one per freeze stage: set ``.stage`` before each).

    ``model`` is the adapted model (raw input -> ... -> backbone -> head), ``backbone`` its nested backbone
    (``tlzoo.model.assemble.find_backbone``), ``groups`` the backbone's layer groups and ``reference`` raw inputs
    as the model takes them. ``capture()`` records the pretrained state; call it before any training (else
    the first ``on_train_begin`` does). Each epoch's values are added to the epoch's logs (so to the run's
    history rows), as ``drift_<group>``, ``cka_min``, ``drift_max``, ``source_agreement``, ``lr_scale``.
    """

    def __init__(
        self, model: keras.Model, backbone: keras.Model, groups: Sequence[LayerGroup], reference: np.ndarray, *,
        source: SourceTop | None = None, max_drift: float | None = None, on_drift: str = "stop",
        max_lr_lowerings: int = 3, batch_size: int = 32, reference_info: dict[str, Any] | None = None,
        verbose: int = 0,
    ) -> None:
        check_options(enabled=True, reference=len(reference), max_drift=max_drift, on_drift=on_drift,
                      max_lr_lowerings=max_lr_lowerings)
        super().__init__()
        self.reference = np.asarray(reference)
        self.max_drift, self.on_drift, self.max_lr_lowerings = max_drift, on_drift, int(max_lr_lowerings)
        self.batch_size, self.verbose = max(1, int(batch_size)), verbose
        self.reference_info = dict(reference_info or {})
        self.source = source or SourceTop(None, "no source top given")
        backbone_in, _ = backbone_call(backbone)
        self._pre = keras.Model(model.inputs[0], backbone_in)  # raw input -> adapter -> preprocessing
        names = {layer.name for layer in backbone.layers}
        # a TF-Hub backbone's groups are variable names inside one layer: only its output can be read
        ends = [(g.name, g.layers[-1]) for g in groups if g.layers[-1] in names] or [("output", "")]
        self.group_names = [g for g, _ in ends]
        outputs = [backbone.get_layer(n).output if n else backbone.output for _, n in ends]
        self._features = keras.Model(backbone.inputs, [*outputs, backbone.output])
        top_channels = int(self.source.model.inputs[0].shape[-1]) if self.source.model is not None else None
        if top_channels is not None and top_channels != int(backbone.output.shape[-1]):
            self.source = SourceTop(None, f"the source top takes {top_channels} channels, "
                                          f"the backbone gives {backbone.output.shape[-1]}")
        self.stage: str | None = None
        self.records: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.stopped = False
        self.lr_scale = 1.0
        self.lowerings = 0
        self._grams: list[np.ndarray] | None = None
        self.source_start: dict[str, Any] = {}

    # the pretrained state
    def capture(self) -> None:
        """Record the pretrained features (their Gram matrices) and source predictions; epoch 0 is then
        measured again from a fresh pass (1.0 everywhere unless inference is not deterministic)."""
        feats, out = self._extract()
        self._grams = [_centered_gram(f) for f in feats]
        if self.source.model is not None:
            p0 = self._source_probabilities(out)
            self._p0, self._top1_0 = p0, p0.argmax(axis=1)
            self._top5_0 = np.argsort(-p0, axis=1)[:, :5]
            # how firm the pretrained calls are: top-1 agreement means little if they are near ties
            self.source_start = {"distinct_top1": int(len(np.unique(self._top1_0))),
                                 "mean_top1_probability": float(p0.max(axis=1).mean())}
        self.records = [self._measure(0, None)]

    def _extract(self) -> tuple[list[np.ndarray], np.ndarray]:
        chunks: list[list[np.ndarray]] = []
        for i in range(0, len(self.reference), self.batch_size):
            x = self._pre(self.reference[i:i + self.batch_size], training=False)
            chunks.append([np.asarray(o) for o in self._features(x, training=False)])
        joined = [np.concatenate(parts) for parts in zip(*chunks)]
        return joined[:-1], joined[-1]

    def _source_probabilities(self, backbone_out: np.ndarray) -> np.ndarray:
        assert self.source.model is not None
        out = [np.asarray(self.source.model(backbone_out[i:i + self.batch_size], training=False))
               for i in range(0, len(backbone_out), self.batch_size)]
        return _probabilities(np.concatenate(out))

    def _measure(self, epoch: int, stage: str | None) -> dict[str, Any]:
        assert self._grams is not None
        feats, out = self._extract()
        cka: dict[str, float] = {}
        collapsed = []
        for g, k0, f in zip(self.group_names, self._grams, feats):
            k = _centered_gram(f)
            if not np.any(k) and np.any(k0):  # every reference image now gives the same output (dead units):
                cka[g] = 0.0  # nothing of the pretrained representation is left, not an undefined CKA
                collapsed.append(g)
            else:
                cka[g] = _cka_from_grams(k0, k)
        finite = {g: v for g, v in cka.items() if math.isfinite(v)}
        worst = min(finite, key=finite.__getitem__) if finite else None
        record: dict[str, Any] = {
            "epoch": epoch, "stage": stage, "cka": cka,
            "cka_min": finite[worst] if worst else float("nan"),
            "cka_mean": float(np.mean(list(finite.values()))) if finite else float("nan"),
            "drift_max": 1.0 - finite[worst] if worst else float("nan"), "most_drifted": worst,
            "lr_scale": self.lr_scale,
            **({"collapsed": collapsed} if collapsed else {}),
        }
        if self.source.model is not None:
            p = self._source_probabilities(out)
            top5 = np.argsort(-p, axis=1)[:, :5]
            record["source_agreement"] = float(np.mean(p.argmax(axis=1) == self._top1_0))
            overlap = [len(set(a) & set(b)) / 5 for a, b in zip(top5, self._top5_0)]
            record["source_top5_overlap"] = float(np.mean(overlap))
            eps = 1e-12
            record["source_kl"] = float(np.mean(np.sum(self._p0 * (np.log(self._p0 + eps) - np.log(p + eps)), axis=1)))
        return record

    # Keras hooks
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._grams is None:
            self.capture()
        if self.on_drift == "lower_lr" or self.lr_scale != 1.0:
            set_lr_scale(self.model.optimizer, self.lr_scale)  # a new stage's optimizer keeps the lowered rate

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        record = self._measure(len(self.records), self.stage)
        self.records.append(record)
        if logs is not None:  # the same dict the later callbacks (the run's history) receive
            logs.update(self.log_values(record))
        action = self._check_bound(record)
        if self.verbose:
            src = (f"; source agreement {record['source_agreement']:.1%} (top-5 overlap "
                   f"{record['source_top5_overlap']:.1%})" if "source_agreement" in record else "")
            print(f"\nforgetting, epoch {record['epoch']}: CKA min {record['cka_min']:.4f} ({record['most_drifted']}), "
                  f"mean {record['cka_mean']:.4f}{src}" + (f"; {action}" if action else ""), flush=True)

    def log_values(self, record: dict[str, Any]) -> dict[str, float]:
        values = {f"drift_{g}": 1.0 - v for g, v in record["cka"].items()}
        values.update(cka_min=record["cka_min"], drift_max=record["drift_max"], lr_scale=record["lr_scale"])
        for key in ("source_agreement", "source_top5_overlap", "source_kl"):
            if key in record:
                values[key] = record[key]
        return values

    def _check_bound(self, record: dict[str, Any]) -> str:
        if self.max_drift is None or not record["drift_max"] > self.max_drift:
            return ""
        event = {"epoch": record["epoch"], "stage": record["stage"], "drift_max": record["drift_max"],
                 "group": record["most_drifted"], "max_drift": self.max_drift}
        if self.on_drift == "stop":
            self.model.stop_training = True
            self.stopped = True
            self.events.append({**event, "action": "stop"})
            return f"drift {record['drift_max']:.4f} > {self.max_drift:g}: training stops"
        if self.lowerings >= self.max_lr_lowerings:
            if not any(e["action"] == "bound passed, no lowering left" for e in self.events):
                self.events.append({**event, "action": "bound passed, no lowering left"})
            return (f"drift {record['drift_max']:.4f} > {self.max_drift:g}, learning rate already lowered "
                    f"{self.lowerings}x")
        self.lr_scale *= LR_FACTOR
        self.lowerings += 1
        set_lr_scale(self.model.optimizer, self.lr_scale)
        self.events.append({**event, "action": "lower_lr", "lr_scale": self.lr_scale,
                            "optimizer_lr_scale": get_lr_scale(self.model.optimizer)})
        return f"drift {record['drift_max']:.4f} > {self.max_drift:g}: learning rate x{self.lr_scale:g}"

    # results
    def summary(self, kept_epoch: int | None = None) -> dict[str, Any]:
        """What ``metrics.json`` and the model card keep: final (and kept-epoch) values, the bound's actions."""
        final = self.records[-1] if self.records else {}
        kept = next((r for r in self.records if r["epoch"] == kept_epoch), None)
        passed = [r["epoch"] for r in self.records
                  if self.max_drift is not None and r["drift_max"] > self.max_drift]

        def brief(r: dict[str, Any] | None) -> dict[str, Any] | None:
            return None if r is None else {k: v for k, v in r.items() if k != "lr_scale"}

        return {
            "reference": {"n": len(self.reference), **self.reference_info},
            "groups": self.group_names,
            "measure": "linear CKA (Kornblith et al. 2019) of each layer group's last output vs the pretrained "
                       "backbone, on the reference batch; drift = 1 - CKA",
            "source": ({"available": True, "top": self.source.description, "pretrained_calls": self.source_start}
                       if self.source.model is not None
                       else {"available": False, "reason": self.source.reason}),
            "final": brief(final),
            "kept": brief(kept),
            "bound": {"max_drift": self.max_drift, "on_drift": self.on_drift if self.max_drift is not None else None,
                      "first_passed_epoch": passed[0] if passed else None, "stopped": self.stopped,
                      "lr_lowerings": self.lowerings, "lr_scale_final": self.lr_scale,
                      "max_lr_lowerings": self.max_lr_lowerings if self.on_drift == "lower_lr" else None},
            "events": self.events,
            "epochs_tracked": max(0, len(self.records) - 1),
        }

    def write(self, run_dir: str | Path, kept_epoch: int | None = None) -> dict[str, Any]:
        """``forgetting.json`` (every epoch) and ``forgetting.png`` into ``run_dir``; returns ``summary()``."""
        run_dir = Path(run_dir)
        summary = self.summary(kept_epoch)
        write_json(run_dir / FORGETTING_FILE, {**summary, "epochs": self.records})
        plot(self.records, self.group_names, run_dir / FORGETTING_PLOT, max_drift=self.max_drift,
             events=self.events, kept_epoch=kept_epoch, source_reason=self.source.reason,
             n_reference=len(self.reference))
        return summary


def monitor_for_run(cfg: Any, model: keras.Model, backbone: keras.Model, groups: Sequence[LayerGroup],
                    spec: BackboneSpec, train_x: np.ndarray) -> DriftMonitor:
    """The monitor of an ``adapt`` run, its pretrained state captured: the reference batch is a seeded
    choice of ``cfg.forgetting_reference`` raw training examples."""
    idx = reference_indices(len(train_x), int(cfg.forgetting_reference), cfg.seed)
    monitor = DriftMonitor(
        model, backbone, groups, np.asarray(train_x[idx]), source=source_top(spec, cfg.weights),
        max_drift=cfg.max_drift, on_drift=cfg.on_drift, batch_size=cfg.batch_size, verbose=cfg.verbose,
        reference_info={"split": "train", "seed": cfg.seed, "indices": idx.tolist()},
    )
    monitor.capture()
    if cfg.verbose:
        src = monitor.source.description or f"unavailable ({monitor.source.reason})"
        print(f"forgetting: {len(idx)} reference images, {len(monitor.group_names)} layer groups; source top: {src}",
              flush=True)
    return monitor


# --- plot and card --------------------------------------------------------------------------------

def plot(records: Sequence[dict[str, Any]], groups: Sequence[str], path: Path, *, max_drift: float | None = None,
         events: Sequence[dict[str, Any]] = (), kept_epoch: int | None = None, source_reason: str = "",
         n_reference: int | None = None) -> None:
    """CKA per layer group vs epoch (one line per group, bottom dark to top bright), stage boundaries
    and bound actions marked; source agreement on a second panel."""
    import matplotlib.pyplot as plt

    import tlzoo.evaluation.plots  # noqa: F401  (selects the Agg backend before pyplot draws)

    epochs = [r["epoch"] for r in records]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10, 7.2), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    colours = plt.cm.viridis(np.linspace(0, 0.92, max(1, len(groups))))
    for colour, g in zip(colours, groups):
        ax.plot(epochs, [r["cka"].get(g, np.nan) for r in records], color=colour, lw=1.3, marker="o", ms=2.5, label=g)
    if max_drift is not None:
        ax.axhline(1 - max_drift, color="red", ls="--", lw=1, label=f"bound (drift {max_drift:g})")
    ax.set_ylabel("linear CKA vs pretrained")
    n = f" on {n_reference} reference images" if n_reference else ""
    ax.set_title(f"Backbone drift per layer group{n} (1 = pretrained representation)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=1 if len(groups) <= 8 else 2, loc="center left", bbox_to_anchor=(1.01, 0.5),
              title="layer group", title_fontsize=8)

    if any("source_agreement" in r for r in records):
        for key, label, style in (("source_agreement", "top-1 agreement", "-"),
                                  ("source_top5_overlap", "top-5 overlap", "--")):
            ax2.plot(epochs, [r.get(key, np.nan) for r in records], style, marker="o", ms=3, label=label)
        ax2.set_ylim(-0.02, 1.02)
        kl = ax2.twinx()  # graded where top-1 agreement saturates
        kl.plot(epochs, [r.get("source_kl", np.nan) for r in records], ":", color="grey", marker=".", label="mean KL")
        kl.set_ylabel("mean KL(pretrained || now), nats", fontsize=8, color="grey")
        handles = ax2.get_legend_handles_labels()
        more = kl.get_legend_handles_labels()
        ax2.legend(handles[0] + more[0], handles[1] + more[1], fontsize=8, loc="center left",
                   bbox_to_anchor=(1.08, 0.5))
    else:
        ax2.text(0.5, 0.5, f"source agreement unavailable:\n{source_reason}", ha="center", va="center",
                 transform=ax2.transAxes, fontsize=9, wrap=True)
    ax2.set_ylabel("source-task agreement\nwith the pretrained top")
    ax2.set_xlabel("epoch (0 = pretrained)")
    ax2.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax2.grid(alpha=0.3)

    for a in (ax, ax2):
        for prev, cur in zip(records, records[1:]):
            if cur["stage"] != prev["stage"]:
                a.axvline(cur["epoch"] - 0.5, color="grey", lw=0.8)
                if a is ax:
                    a.text(cur["epoch"] - 0.4, 1.0, f" {cur['stage']}", transform=a.get_xaxis_transform(), va="top",
                           fontsize=8, color="grey")
        for e in events:
            a.axvline(e["epoch"], color="red", ls=":", lw=1)
        if kept_epoch is not None:
            a.axvline(kept_epoch, color="green", ls="-.", lw=1)
    for e in events:
        ax.text(e["epoch"], 0.02, f" {e['action']}", transform=ax.get_xaxis_transform(), color="red", fontsize=7,
                rotation=90, va="bottom")
    if kept_epoch is not None:
        ax.text(kept_epoch, 0.02, " kept", transform=ax.get_xaxis_transform(), color="green", fontsize=7,
                rotation=90, va="bottom")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def markdown_lines(summary: dict[str, Any] | None) -> list[str]:
    """The model card's section on forgetting (empty when the run did not track it)."""
    if not summary:
        return []
    lines = ["## Forgetting of the pretrained backbone", "",
             f"Measured on {summary['reference']['n']} fixed training images: {summary['measure']}."]
    for label, rec in (("after the last epoch", summary.get("final")), ("at the kept epoch", summary.get("kept"))):
        if not rec:
            continue
        cka = ", ".join(f"{g} {v:.3f}" for g, v in rec["cka"].items())
        lines.append(f"- {label} ({rec['epoch']}): CKA min {rec['cka_min']:.3f} ({rec['most_drifted']}); "
                     f"per group: {cka}")
        if "source_agreement" in rec:
            lines.append(f"  - source-task agreement {rec['source_agreement']:.1%} (top-5 overlap "
                         f"{rec['source_top5_overlap']:.1%}, mean KL {rec['source_kl']:.3f})")
    src = summary["source"]
    lines.append(f"- source top: {src['top']}" if src["available"]
                 else f"- source agreement unavailable: {src['reason']}")
    b = summary["bound"]
    if b["max_drift"] is None:
        lines.append("- no drift bound set")
    else:
        acted = ("training stopped at epoch " + str(b["first_passed_epoch"])) if b["stopped"] else (
            f"learning rate lowered {b['lr_lowerings']}x (to x{b['lr_scale_final']:g})" if b["lr_lowerings"]
            else "no action needed")
        lines.append(f"- bound: drift <= {b['max_drift']:g} ({b['on_drift']}); first passed at epoch "
                     f"{b['first_passed_epoch'] if b['first_passed_epoch'] is not None else '-'}; {acted}")
    return lines + [""]


# ---------------------------------------------------------------- extension

from tlzoo.extensions.base import Extension, Run  # noqa: E402


class Forgetting(Extension):
    """Backbone drift (CKA per layer group) and source-task agreement per epoch, with an optional bound
    that stops training or lowers the learning rate (``forgetting.png``, ``forgetting.json``)."""

    name = "forgetting"
    card_key = "forgetting"
    # Model.fit does not run under MultiWorkerMirroredStrategy (the custom loop does), and every worker
    # would have to run the reference batch in lock-step for its collectives: not supported.
    strategies = ("auto", "one", "mirrored")

    @classmethod
    def check_options(cls, cfg: Any) -> None:
        check_options(enabled=bool(cfg.forgetting), reference=cfg.forgetting_reference, max_drift=cfg.max_drift,
                      on_drift=cfg.on_drift)

    def on_model(self, run: Run) -> Any:
        # the pretrained state, captured before any stage trains (or a resumed run restores weights)
        self.monitor = monitor_for_run(self.cfg, run.model, run.backbone, run.groups, run.spec, run.data.train.x)
        return None

    def callbacks(self, run: Run, index: int, stage: Any) -> list[Any]:
        self.monitor.stage = stage.name
        return [self.monitor]

    def after_stage(self, run: Run, index: int, stage: Any) -> bool:
        return bool(self.monitor.stopped)  # the drift bound ends the schedule

    def after_training(self, run: Run) -> None:
        run.state["forgetting"] = self.monitor.write(run.run_dir, kept_epoch=run.state["best_epoch"])

    def metrics(self, run: Run) -> dict[str, Any]:
        return {"forgetting": run.state["forgetting"]} if "forgetting" in run.state else {}

    @classmethod
    def card_section(cls, config: dict[str, Any], metrics: dict[str, Any], contract: dict[str, Any]) -> Any:
        return metrics.get("forgetting")

    @classmethod
    def card_markdown(cls, section: Any) -> list[str]:
        return markdown_lines(section)
