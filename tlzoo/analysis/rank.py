"""Choose a backbone before training: score candidates on the target data from frozen features.

Three scores per candidate, all from the un-augmented frozen features the tuner caches
(:func:`tlzoo.analysis.features.build_extractor`):

* **LogME** (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer
  Learning", ICML 2021): the log marginal likelihood (evidence) of a Bayesian linear model from
  features to one-vs-rest label targets, with its prior precision alpha and noise precision beta
  set by evidence maximisation (MacKay's fixed point, computed through the SVD of the feature
  matrix), averaged over targets and divided by the sample count. No training, no hyperparameters.
* **k-NN**: leave-one-out balanced accuracy of a cosine k-nearest-neighbour vote.
* **linear probe**: logistic regression fitted on train features and scored on val (ROC-AUC for
  binary tasks, accuracy for multiclass).

LogME and k-NN use every labelled sample given (train and val); the probe keeps them apart.
``backbone@weights`` names a candidate with other weights, e.g. ``mobilenet_v2@none`` for a random
initialisation. Candidates whose weights are not on this machine are skipped with the file they
need; the rest are still ranked.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tlzoo.errors import ConfigError, WeightsError

RANK_JSON = "rank.json"
RANK_PNG = "rank.png"
RANDOM_INIT_NAMES = ("none", "None", "random", "scratch")


# ---------------------------------------------------------------------------- LogME
def _evidence_terms(sigma: np.ndarray, x2: np.ndarray, res_x2: float, alpha: float, beta: float,
                    n: int, d: int) -> tuple[float, float, float, float]:
    """For fixed alpha, beta: (log evidence / n, gamma, |m|^2, |y - F m|^2), in the SVD basis.
    ``sigma`` holds the k = min(n, d) eigenvalues of F^T F, ``x2`` the squared projections of y on
    F's left singular vectors and ``res_x2`` the part of |y|^2 outside F's column space."""
    t = alpha / beta
    gamma = float((sigma / (sigma + t)).sum())
    m2 = float((sigma * x2 / (sigma + t) ** 2).sum())  # |m|^2, m = beta A^-1 F^T y
    res2 = float((x2 * (t / (sigma + t)) ** 2).sum() + res_x2)  # |y - F m|^2
    # log|A| = sum over all d eigenvalues of alpha + beta F^T F; the d - k zero ones give log(alpha)
    logdet = float(np.log(alpha + beta * sigma).sum() + (d - len(sigma)) * np.log(alpha))
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * logdet - beta / 2 * res2 - alpha / 2 * m2
                - n / 2 * np.log(2 * np.pi))
    return float(evidence / n), gamma, m2, res2


def logme_target(features: np.ndarray, target: np.ndarray, *, max_iter: int = 100,
                 tol: float = 1e-5) -> tuple[float, float, float]:
    """LogME of one real-valued target: (maximum log evidence / N, alpha, beta)."""
    f = np.asarray(features, dtype=np.float64)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    return _fit_target(u, s ** 2, np.asarray(target, dtype=np.float64).reshape(-1), f.shape[1], max_iter, tol)


def _fit_target(u: np.ndarray, sigma: np.ndarray, y: np.ndarray, d: int, max_iter: int,
                tol: float) -> tuple[float, float, float]:
    n = len(y)
    x = u.T @ y
    x2 = x ** 2
    res_x2 = max(float(y @ y - x2.sum()), 0.0)
    alpha, beta = 1.0, 1.0
    eps = 1e-12  # guards the divisions on degenerate targets (e.g. all zeros)
    for _ in range(max_iter):
        _, gamma, m2, res2 = _evidence_terms(sigma, x2, res_x2, alpha, beta, n, d)
        new_alpha = gamma / (m2 + eps)
        new_beta = (n - gamma) / (res2 + eps)
        t_old, t_new = alpha / beta, new_alpha / new_beta
        alpha, beta = max(new_alpha, eps), max(new_beta, eps)
        if abs(t_new - t_old) <= tol * t_old:
            break
    evidence = _evidence_terms(sigma, x2, res_x2, alpha, beta, n, d)[0]
    return evidence, alpha, beta


def logme(features: np.ndarray, labels: np.ndarray, *, regression: bool = False) -> float:
    """LogME score of ``features`` [N, D] for ``labels``: class ids [N] (one-vs-rest 0/1 target per
    class, as in the paper), or a [N, K] array of targets (multilabel / regression, one per column).
    The mean over targets of the maximised log evidence, divided by N; higher is better."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if f.ndim != 2 or len(f) != len(y) or len(f) < 2:
        raise ConfigError(f"logme needs features [N, D] and N labels (N >= 2), got {f.shape} and {y.shape}")
    if not np.isfinite(f).all():
        raise ConfigError("logme: the features contain NaN or infinite values")
    if y.ndim == 2 and y.shape[1] == 1 and not regression:
        y = y[:, 0]
    if y.ndim == 1 and not regression:
        targets = [(y == c).astype(np.float64) for c in np.unique(y)]
    else:
        y2 = y.reshape(len(y), -1).astype(np.float64)
        targets = [y2[:, j] for j in range(y2.shape[1])]
    # The evidence is invariant to the features' scale (alpha absorbs it), but the fixed point is not at
    # extreme scales: a random-init MobileNet's frozen features are ~1e-12. Unit RMS first.
    rms = float(np.sqrt(np.mean(f ** 2)))
    if rms > 0:
        f = f / rms
    u, s, _ = np.linalg.svd(f, full_matrices=False)  # once: every target reuses it
    sigma = s ** 2
    return float(np.mean([_fit_target(u, sigma, t, f.shape[1], 100, 1e-5)[0] for t in targets]))


# ---------------------------------------------------------------------------- k-NN and linear probe
def knn_loo(features: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Leave-one-out balanced accuracy of a k-nearest-neighbour vote (cosine similarity on
    L2-normalised features, votes weighted by similarity)."""
    from sklearn.metrics import balanced_accuracy_score

    y = np.asarray(labels).reshape(len(labels), -1)
    if y.shape[1] != 1:
        raise ConfigError("knn_loo needs one class id per sample")
    y = y[:, 0].astype(int)
    z = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    z = z / np.where(norms > 0, norms, 1.0)  # no floor: tiny features (random init) still have a direction
    k = max(1, min(k, len(z) - 1))
    sims = z @ z.T
    np.fill_diagonal(sims, -np.inf)  # leave the sample itself out
    nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    classes = np.unique(y)
    idx = np.searchsorted(classes, y)
    votes = np.zeros((len(z), len(classes)))
    rows = np.repeat(np.arange(len(z)), k)
    # shift similarities to be positive so every neighbour adds weight
    np.add.at(votes, (rows, idx[nn].ravel()), 1.0 + np.take_along_axis(sims, nn, axis=1).ravel())
    return float(balanced_accuracy_score(y, classes[votes.argmax(1)]))


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                 task: str, *, seed: int = 0) -> tuple[float | None, str]:
    """Logistic regression on standardised train features, scored on val:
    (ROC-AUC for binary, accuracy for multiclass; None where the val split cannot score it), metric name."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ytr, yva = np.asarray(train_y).reshape(-1).astype(int), np.asarray(val_y).reshape(-1).astype(int)
    metric = "roc_auc" if task == "binary" else "accuracy"
    if len(np.unique(ytr)) < 2:
        return None, metric
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced",
                                                             random_state=seed))
    clf.fit(np.asarray(train_x, dtype=np.float64), ytr)
    if task == "binary":
        if len(np.unique(yva)) < 2:
            return None, metric
        return float(roc_auc_score(yva, clf.predict_proba(np.asarray(val_x, dtype=np.float64))[:, 1])), metric
    return float(accuracy_score(yva, clf.predict(np.asarray(val_x, dtype=np.float64)))), metric


# ---------------------------------------------------------------------------- candidates
@dataclass(frozen=True)
class Candidate:
    label: str  # "backbone@weights" as shown
    backbone: str
    weights: str | None  # None: random initialisation


@dataclass
class RankRow:
    """One ranked candidate."""

    candidate: str
    backbone: str
    weights: str | None
    input_size: int
    feature_dim: int
    logme: float
    knn: float | None
    probe: float | None
    probe_metric: str
    seconds: float  # build + feature extraction + scores
    extract_seconds: float
    score_seconds: float
    cached: bool  # features came from the feature cache
    weights_source: dict[str, Any] | None = None  # where the weights were resolved (sha256, file)
    feature_rms: float | None = None  # the scores ignore scale; a tiny one (~1e-12, random init) slows training


@dataclass
class RankResult:
    rows: list[RankRow]  # sorted by LogME, best first
    skipped: list[dict[str, str]]  # {"candidate", "reason"}
    plugin: str
    task: str
    data: dict[str, Any]
    settings: dict[str, Any]
    out: Path | None = None
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [dataclasses.asdict(r) for r in self.rows], "skipped": self.skipped, "plugin": self.plugin,
                "task": self.task, "data": self.data, "settings": self.settings, "wall_s": self.wall_s,
                "out": str(self.out) if self.out else None}

    def table(self) -> str:
        """The ranked table, then the skipped candidates with their reasons."""
        metric = self.rows[0].probe_metric if self.rows else "score"
        width = max([len(r.candidate) for r in self.rows] + [9])
        lines = [f"{'#':>2}  {'backbone':{width}}  {'LogME':>8}  {'kNN bal.acc':>11}  "
                 f"{'probe val ' + metric:>17}  {'seconds':>7}"]
        for i, r in enumerate(self.rows, start=1):
            knn = f"{r.knn:.4f}" if r.knn is not None else "-"
            probe = f"{r.probe:.4f}" if r.probe is not None else "-"
            lines.append(f"{i:>2}  {r.candidate:{width}}  {r.logme:>8.4f}  {knn:>11}  {probe:>17}  "
                         f"{r.seconds:>7.1f}{'  (cached)' if r.cached else ''}"
                         + (f"  (feature RMS {r.feature_rms:.1g}: vanishing activations, fine-tuning may stall)"
                            if r.feature_rms is not None and r.feature_rms < 1e-6 else ""))
        n = self.data.get("n_scored", 0)
        lines.append(f"{len(self.rows)} ranked on {n} labelled samples ({self.data.get('n_train')} train + "
                     f"{self.data.get('n_val')} val) in {self.wall_s:.1f}s")
        if self.skipped:
            lines.append(f"{len(self.skipped)} skipped:")
            lines += [f"  {s['candidate']}: {s['reason']}" for s in self.skipped]
        return "\n".join(lines)


def _offline() -> bool:
    from tlzoo.zoo.weights import ENV_OFFLINE

    return os.environ.get(ENV_OFFLINE, "") in ("1", "true", "yes")


def resolve_candidates(backbones: str | Sequence[str], weights: str | None, modality: str
                       ) -> tuple[list[Candidate], list[dict[str, str]]]:
    """Names, globs and ``name@weights`` -> candidates of the plugin's modality (glob matches of
    another modality are left out; a name given exactly is reported as skipped)."""
    from tlzoo.zoo import get_backbone_spec, list_backbones

    items = [backbones] if isinstance(backbones, str) else list(backbones)
    if not items:
        raise ConfigError("give at least one backbone name or pattern, e.g. --backbones 'mobilenet*'")
    out: list[Candidate] = []
    skipped: list[dict[str, str]] = []
    for item in items:
        name, at, w = item.rpartition("@") if "@" in item else (item, "", "")
        name = name.strip()
        cand_weights: str | None = (None if w in RANDOM_INIT_NAMES else w) if at else weights
        glob = any(ch in name for ch in "*?[") and not name.startswith("hub:")
        names = list_backbones(name) if glob else [name]
        if glob and not names:
            raise ConfigError(f"no backbone matches {name!r}; see `tlzoo backbones` for the names")
        for n in names:
            spec = get_backbone_spec(n)  # unknown name -> error with did-you-mean, before any work
            label = f"{n}@{'none' if cand_weights is None else cand_weights}"
            if spec.modality != modality:
                if not glob:
                    skipped.append({"candidate": label, "reason": f"a {spec.modality} backbone; the plugin needs "
                                                                  f"{modality} backbones"})
                continue
            if label not in {c.label for c in out}:
                out.append(Candidate(label, n, cand_weights))
    return out, skipped


def unavailable_reason(backbone: str, weights: str | None) -> str | None:
    """Why ``backbone`` with ``weights`` cannot be built on this machine (without building it), or None."""
    from tlzoo.zoo import get_backbone_spec
    from tlzoo.zoo.keras_weight_files import KERAS_WEIGHT_FILES
    from tlzoo.zoo.weights import keras_cache_dir, mirror_dirs

    if weights is None:
        spec = get_backbone_spec(backbone)
        if spec.family == "tfhub":
            return "a TF-Hub backbone carries its own weights; it has no random initialisation"
        return None
    spec = get_backbone_spec(backbone)
    weights = spec.weights_name(weights)
    if spec.family in ("tfhub", "keras_hub"):  # the SavedModel / the preset carries its own weights
        from tlzoo.zoo.hub_catalogue import resolve_handle
        from tlzoo.zoo.keras_hub_catalogue import resolve_preset

        if weights not in (*spec.weight_names, "savedmodel"):
            return f"a {spec.family} backbone carries its own weights; rank it as {backbone}@imagenet"
        try:
            if spec.family == "tfhub":
                resolve_handle(spec.builder_kwargs["handle"])
            else:
                resolve_preset(spec.builder_kwargs["preset"])
        except WeightsError as exc:
            return str(exc) if _offline() else None  # online: the build may still download it
        return None
    if os.sep in weights or weights.endswith((".h5", ".keras")):
        return None if Path(weights).expanduser().is_file() else f"weights file {weights!r} does not exist"
    if weights not in spec.weight_names:
        return (f"has no {weights!r} weights (available: {list(spec.weight_names) or 'none'}); "
                f"rank {backbone}@none for a random initialisation")
    if backbone in KERAS_WEIGHT_FILES:
        from tlzoo.zoo.mirror import entry_for

        entry = entry_for(backbone)
        if not entry.present and _offline():
            looked = ", ".join(str(d) for d in mirror_dirs()) or "$TLZOO_WEIGHTS_DIR unset"
            return (f"needs the weights file {entry.needs!r}, which is not on this machine (looked in the mirror: "
                    f"{looked}; the Keras cache: {keras_cache_dir()}) and downloads are off (TLZOO_OFFLINE=1); "
                    f"fetch it with `tlzoo weights fetch {backbone}` where there is network, or "
                    f"`tlzoo weights import FILE --backbone {backbone}`")
    return None


# ---------------------------------------------------------------------------- ranking
def _pooled(x: np.ndarray) -> np.ndarray:
    """[N, H, W, C] feature maps (a backbone without pooling) -> [N, C], as the plugin head pools them."""
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(len(x), -1, x.shape[-1]).mean(1) if x.ndim > 2 else x


def _cap(split: Any, max_samples: int | None, seed: int) -> Any:
    from tlzoo.data import subsample_labels

    if max_samples is None or len(split) <= max_samples:
        return split
    return subsample_labels(split, fraction=max_samples / len(split), seed=seed)


def rank(
    plugin: str,
    data: str,
    backbones: str | Sequence[str],
    weights: str | None = "imagenet",
    input_size: int | None = None,
    max_samples: int | None = 2000,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    *,
    label_fraction: float | None = None,
    labels_per_class: int | None = None,
    plugin_options: dict[str, Any] | None = None,
    data_options: dict[str, Any] | None = None,
    knn_k: int = 10,
    batch_size: int = 64,
    verbose: int = 1,
) -> RankResult:
    """Score candidate backbones on ``data`` from frozen features and rank them by LogME.

    ``tlzoo.rank("medical-imaging", "x.npz", ["mobilenet*", "mobilenet_v2@none"], out="rank/x")``

    ``max_samples`` caps the train and the val split each (stratified) before features are computed.
    Candidates whose weights are not available are skipped with the reason; if none remain, a
    ``ConfigError`` lists them all. With ``out``, ``rank.json`` and ``rank.png`` are written there.
    """
    import keras

    from tlzoo.analysis.features import FeatureCache, build_extractor, extractor_key
    from tlzoo.plugin import get_plugin
    from tlzoo.train.recipe import AdaptConfig, prepare_data
    from tlzoo.zoo import check_input_shape, get_backbone_spec

    t_start = time.perf_counter()
    p = get_plugin(plugin, **(plugin_options or {}))
    if p.modality != "image" or p.custom_recipe() is not None:
        raise ConfigError(f"tlzoo rank scores image backbones for plugins trained by gradient descent; plugin "
                          f"{p.name!r} ({p.modality}{', own recipe' if p.custom_recipe() is not None else ''}) "
                          f"is not supported yet")
    if p.task not in ("binary", "multiclass"):
        raise ConfigError(f"tlzoo rank needs a binary or multiclass plugin; {p.name!r} is {p.task}")
    if max_samples is not None and max_samples < 10:
        raise ConfigError(f"max_samples must be >= 10 (or None for all), got {max_samples}")
    if input_size is not None and input_size < 1:
        raise ConfigError(f"input_size must be a positive number of pixels, got {input_size}")
    candidates, skipped = resolve_candidates(backbones, weights, p.modality)
    ready: list[tuple[Candidate, int]] = []
    for c in candidates:  # everything checkable is checked before any feature is computed
        size = int(input_size or p.default_input_size or get_backbone_spec(c.backbone).default_size)
        reason = unavailable_reason(c.backbone, c.weights)
        if reason is None:
            try:
                spec = get_backbone_spec(c.backbone)
                check_input_shape(spec, (size, size, spec.channels))
            except ConfigError as exc:
                reason = str(exc)
        if reason is not None:
            skipped.append({"candidate": c.label, "reason": reason})
        else:
            ready.append((c, size))
    if not ready:
        _no_candidates(skipped)

    splits, _ = prepare_data(AdaptConfig(plugin=plugin, data=data, label_fraction=label_fraction,
                                         labels_per_class=labels_per_class, seed=seed, verbose=0,
                                         data_options=dict(data_options or {})), p)
    splits = dataclasses.replace(splits, train=_cap(splits.train, max_samples, seed),
                                 val=_cap(splits.val, max_samples, seed))
    y_train, y_val = splits.train.y.reshape(-1).astype(int), splits.val.y.reshape(-1).astype(int)
    y_all = np.concatenate([y_train, y_val])

    tmp_cache = None
    if cache_dir is None:
        tmp_cache = tempfile.mkdtemp(prefix="tlzoo-rank-features-")
    cache = FeatureCache(cache_dir or tmp_cache)  # type: ignore[arg-type]
    rows: list[RankRow] = []
    try:
        for i, (c, size) in enumerate(ready, start=1):
            if verbose:
                print(f"[{i}/{len(ready)}] {c.label} at {size}px ...", flush=True)
            t0 = time.perf_counter()
            try:
                extractor, record = build_extractor(p, c.backbone, c.weights, size, splits.train.x.shape[1:], seed=seed)
            except (WeightsError, ConfigError) as exc:  # e.g. a download failed, a pin did not match
                skipped.append({"candidate": c.label, "reason": str(exc)})
                if verbose:
                    print(f"  skipped: {exc}", flush=True)
                continue
            key = extractor_key(p, c.backbone, c.weights, record, size, splits, seed=seed)
            feats, cached = cache.get_or_compute(key, extractor, splits, splits=("train", "val"), batch_size=batch_size,
                                                 verbose=0, describe={"backbone": c.backbone, "weights": c.weights,
                                                                      "input_size": size})
            del extractor
            keras.backend.clear_session()
            t1 = time.perf_counter()
            f_train, f_val = _pooled(feats["train"]), _pooled(feats["val"])
            f_all = np.concatenate([f_train, f_val])
            if not np.isfinite(f_all).all():  # e.g. activations overflowing in a random initialisation
                skipped.append({"candidate": c.label, "reason": "its frozen features contain NaN or infinite values"})
                continue
            score = logme(f_all, y_all)
            knn = knn_loo(f_all, y_all, k=knn_k)
            probe, metric = linear_probe(f_train, y_train, f_val, y_val, p.task, seed=seed)
            t2 = time.perf_counter()
            rows.append(RankRow(c.label, c.backbone, c.weights, size, int(f_train.shape[1]), score, knn, probe, metric,
                                round(t2 - t0, 2), round(t1 - t0, 2), round(t2 - t1, 2), cached,
                                record.to_dict() if record else None, float(np.sqrt(np.mean(f_all ** 2)))))
            if verbose:
                print(f"  LogME {score:.4f}  kNN {knn:.4f}  probe {metric} "
                      f"{'-' if probe is None else f'{probe:.4f}'}  ({t2 - t0:.1f}s)", flush=True)
    finally:
        if tmp_cache:
            shutil.rmtree(tmp_cache, ignore_errors=True)
    if not rows:
        _no_candidates(skipped)
    rows.sort(key=lambda r: r.logme, reverse=True)
    result = RankResult(
        rows, skipped, p.name, p.task,
        data={"source": data, "fingerprint": splits.fingerprint(), "n_train": len(splits.train),
              "n_val": len(splits.val), "n_scored": len(y_all), "classes": splits.class_names},
        settings={"weights": weights, "input_size": input_size, "max_samples": max_samples, "seed": seed,
                  "label_fraction": label_fraction, "labels_per_class": labels_per_class, "knn_k": knn_k,
                  "plugin_options": plugin_options or {}, "backbones": [backbones] if isinstance(backbones, str)
                  else list(backbones)},
        out=Path(out) if out else None, wall_s=round(time.perf_counter() - t_start, 2),
    )
    if out:
        write_outputs(result, Path(out))
    return result


def _no_candidates(skipped: list[dict[str, str]]) -> None:
    reasons = "; ".join(f"{s['candidate']}: {s['reason']}" for s in skipped) or "no candidates"
    raise ConfigError(f"no backbone left to rank ({len(skipped)} skipped). {reasons}")


# ---------------------------------------------------------------------------- outputs
def write_outputs(result: RankResult, out: Path) -> None:
    """``rank.json`` and ``rank.png`` in ``out``, each written to a temporary name and renamed."""
    from tlzoo.runs.directory import write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / RANK_JSON, json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    tmp = out / f".{RANK_PNG}.tmp-{os.getpid()}.png"
    try:
        plot_scores(result, tmp)
        os.replace(tmp, out / RANK_PNG)
    finally:
        tmp.unlink(missing_ok=True)


def plot_scores(result: RankResult, path: Path) -> None:
    """One horizontal bar panel per score, candidates in LogME order (best on top)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.rows[::-1]  # barh draws bottom-up
    labels = [r.candidate for r in rows]
    metric = result.rows[0].probe_metric if result.rows else ""
    panels = [("LogME (evidence / N)", [r.logme for r in rows]),
              ("k-NN leave-one-out balanced acc.", [np.nan if r.knn is None else r.knn for r in rows]),
              (f"linear probe, val {metric}", [np.nan if r.probe is None else r.probe for r in rows])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 1.2 + 0.45 * len(rows)), sharey=True)
    for ax, (title, values) in zip(axes, panels):
        ax.barh(labels, values, color="tab:blue")
        for y, v in enumerate(values):
            if np.isfinite(v):
                ax.text(max(v, 0.0) if title.startswith("LogME") else v, y, f" {v:.3f}", va="center", fontsize=8)
        ax.set_title(title, fontsize=10)
        finite = [v for v in values if np.isfinite(v)]
        if finite and title.startswith("LogME"):  # evidence can be either sign: keep 0 in view
            lo, hi = min(finite + [0.0]), max(finite + [0.0])
            pad = max(hi - lo, 1e-3) * 0.1
            ax.set_xlim(lo - pad, hi + pad * 3)
            ax.axvline(0, color="grey", lw=0.8)
        elif finite:
            ax.set_xlim(min(0.5, min(finite) - 0.05), 1.08)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"tlzoo rank: {result.plugin} on {Path(str(result.data['source'])).name} "
                 f"({result.data['n_scored']} labelled samples)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


__all__ = ["Candidate", "RankResult", "RankRow", "knn_loo", "linear_probe", "logme", "logme_target", "rank",
           "resolve_candidates", "unavailable_reason", "write_outputs"]
