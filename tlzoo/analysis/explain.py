"""Why did the model say that? Grad-CAM maps (Selvaraju et al. 2017) of a run's predictions, or, for
an anomaly run, its own anomaly maps, written as overlays next to the images: ``tlzoo explain RUN``.

Grad-CAM: the gradient of the explained class's score with respect to a convolutional feature map
A (h x w x K), averaged over space, weighs A's channels; ReLU(sum_k w_k A_k) is upsampled to the raw
image and divided by its maximum, so maps lie in [0, 1] (all zero: no positive evidence).
The score is the class's logit, the pre-activation of the head's sigmoid / softmax Dense layer, as in
the paper (probabilities saturate; a calibration layer after it only rescales). For a one-unit
sigmoid head it is z for class 1 and -z for class 0, the logits a two-way softmax would have up to a
shared constant: a map always shows evidence FOR the class it names, by default the predicted one
at the run's threshold. A negative call ("clear") often has little positive evidence of its own, so
its map may be empty; ``class_index=1`` shows where the finding's evidence lies instead.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tlzoo.data import IMAGE_SUFFIXES, SPLITS, as_labels, load_image
from tlzoo.errors import ConfigError, DataError
from tlzoo.evaluation import plots
from tlzoo.model.assemble import backbone_call, find_backbone
from tlzoo.runs import METRICS_FILE
from tlzoo.runs.directory import atomic_dir, write_json
from tlzoo.train.recipe import load_run
from tlzoo.zoo import get_backbone_spec, layer_groups

EXPLAIN_DIR = "explanations"
INDEX_FILE = "explanations.json"
PARITY_TOL = 1e-5  # recomposed forward pass vs model(x), probabilities


@dataclass
class ExplainResult:
    """What ``explain`` wrote, and the maps and predictions behind it."""

    out: Path
    method: str  # "grad-cam" | "anomaly-map"
    layer: str | None  # Grad-CAM's target layer inside the backbone
    maps: np.ndarray  # (N, H, W) at the images' size: Grad-CAM in [0, 1], or anomaly patch distances
    probabilities: np.ndarray  # the model's outputs (anomaly runs: image scores)
    predicted: np.ndarray  # predicted class per image
    explained: np.ndarray  # the class each map explains
    labels: np.ndarray | None  # true labels, when the images came with them
    files: list[str]  # one PNG per image, relative to ``out``; the grid is ``grid.png``


def target_layer(backbone: keras.Model, spec: Any, layer: str | None = None) -> str:
    """``layer`` checked, or the last layer of the highest layer group whose output is a spatial map
    (4-D, larger than 1x1: a 1x1 map upsamples to a constant, e.g. MobileNet at 32 px). For a vision
    transformer, the tokens entering its last block (see ``token_target_layer``)."""
    if spec.modality != "image":
        raise ConfigError(f"Grad-CAM needs a CNN's spatial feature maps; {spec.name!r} is a {spec.modality} backbone")
    if spec.patch_size:
        return token_target_layer(backbone, spec, layer)
    names = {lyr.name for lyr in backbone.layers}
    # a TF-Hub backbone's groups hold variable names inside one opaque layer: nothing to hook into
    ends = [g.layers[-1] for g in layer_groups(backbone, spec) if g.layers[-1] in names]
    maps = [n for n in ends if len(backbone.get_layer(n).output.shape) == 4]
    if layer is not None:
        if layer not in names:
            close = sorted(n for n in names if layer.lower() in n.lower())[:5]
            raise ConfigError(f"layer {layer!r} is not in backbone {spec.name!r}; "
                              f"{'similar: ' + str(close) + '; ' if close else ''}group outputs: {maps[-6:]}")
        shape = backbone.get_layer(layer).output.shape
        if len(shape) != 4:
            raise ConfigError(f"layer {layer!r} outputs shape {tuple(shape)}; Grad-CAM needs a 4-D feature map "
                              f"(batch, height, width, channels), e.g. one of {maps[-6:]}")
        return layer
    spatial = [n for n in maps if all((s or 2) > 1 for s in backbone.get_layer(n).output.shape[1:3])]
    if not spatial:
        raise ConfigError(f"backbone {spec.name!r} has no layer group with a spatial feature map (got "
                          f"{[tuple(backbone.get_layer(n).output.shape) for n in maps[-3:]] or 'none'}); Grad-CAM "
                          f"needs a CNN, with an input size large enough for a map over 1x1, or --layer NAME")
    return spatial[-1]


def token_target_layer(backbone: keras.Model, spec: Any, layer: str | None = None) -> str:
    """A vision transformer's Grad-CAM layer: by default the output of the block before the last one, as
    pytorch-grad-cam uses the last block's input. Later tokens do not do: after the last block, the class
    token no longer mixes in the patch tokens, so a class-token head has no gradient on them."""
    names = [lyr.name for lyr in backbone.layers]
    tokens = [n for n in names if len(backbone.get_layer(n).output.shape) == 3]
    if layer is not None:
        if layer not in tokens:
            raise ConfigError(f"layer {layer!r} of {spec.name!r} does not output patch tokens [batch, tokens, dim]; "
                              f"token layers: {tokens[-6:]}")
        return layer
    groups = layer_groups(backbone, spec)
    blocks = [i for i, g in enumerate(groups) if g.name.startswith("block")]
    if not blocks:
        raise ConfigError(f"backbone {spec.name!r} has no transformer blocks in its layer groups; pass --layer NAME "
                          f"(token layers: {tokens[-6:]})")
    return groups[blocks[-1] - 1].layers[-1]


class GradCAM:
    """Grad-CAM on an adapted model: the model split around its nested backbone (raw image -> adapter
    -> backbone -> head), the backbone re-wired to return the target feature map too."""

    def __init__(self, model: keras.Model, backbone_name: str, layer: str | None = None) -> None:
        try:
            backbone = find_backbone(model)
        except ValueError as exc:
            raise ConfigError(f"Grad-CAM: {exc}") from None
        self.model = model
        spec = get_backbone_spec(backbone_name)
        self.layer = target_layer(backbone, spec, layer)
        self._patch = spec.patch_size
        backbone_in, backbone_out = backbone_call(backbone)  # its call inside the adapted model
        self._pre = keras.Model(model.inputs[0], backbone_in)
        self._inner = keras.Model(backbone.inputs, [backbone.get_layer(self.layer).output, backbone.output])
        # the head's last sigmoid / softmax Dense gives the logits; what follows it (temperature
        # scaling) rescales the probabilities without changing a class's evidence
        after = model.layers[model.layers.index(backbone) + 1:]
        heads = [lyr for lyr in after if isinstance(lyr, keras.layers.Dense)
                 and getattr(lyr.activation, "__name__", "") in ("sigmoid", "softmax")]
        if not heads:
            raise ConfigError(f"Grad-CAM needs a head with a sigmoid or softmax Dense layer; {model.name}'s layers "
                              f"after the backbone: {[lyr.name for lyr in after]}")
        self._final = heads[-1]
        self._body = keras.Model(backbone_out, self._final.input)  # head up to the final logits
        out = model.outputs[0]
        self._tail = None if self._final.output is out else keras.Model(self._final.output, out)
        self._reference = keras.Model(model.inputs[0], out)  # the model as one graph, one plain input

    @property
    def grid(self) -> tuple[int, int]:
        shape = self._inner.outputs[0].shape
        if len(shape) == 3:  # transformer tokens: the patch grid
            h, w = self._inner.inputs[0].shape[1:3]
            return int(h) // self._patch, int(w) // self._patch
        return int(shape[1]), int(shape[2])

    def spatial(self, t: Any) -> Any:
        """A feature map [batch, h, w, channels]; transformer tokens reshaped onto their patch grid, the
        class and register tokens dropped."""
        if len(t.shape) != 3:
            return t
        gh, gw = self.grid
        return keras.ops.reshape(t[:, int(t.shape[1]) - gh * gw:], (-1, gh, gw, int(t.shape[-1])))

    def forward(self, x: Any) -> tuple[Any, Any, Any]:
        """(feature map, logits, the model's output), recomposed from the pieces."""
        fmap, feats = self._inner(self._pre(x, training=False), training=False)
        logits = self._logits(feats)
        return fmap, logits, self._outputs(logits)

    def _logits(self, feats: Any) -> Any:
        z = keras.ops.matmul(self._body(feats, training=False), self._final.kernel)
        return z + self._final.bias if self._final.use_bias else z

    def _outputs(self, logits: Any) -> Any:
        p = self._final.activation(logits)
        return p if self._tail is None else self._tail(p, training=False)

    def __call__(self, x: np.ndarray, class_index: int | None = None, threshold: float = 0.5,
                 batch_size: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Maps (N, H, W) in [0, 1], probabilities, predicted and explained classes. Raises when the
        recomposed forward pass does not reproduce ``model(x)`` (a model this split does not fit)."""
        import tensorflow as tf

        maps, probs, reference = [], [], []
        for i in range(0, len(x), batch_size):
            xb = tf.convert_to_tensor(x[i:i + batch_size])
            h = self._pre(xb, training=False)
            with tf.GradientTape() as tape:
                tape.watch(h)  # so the map is on the tape even where every backbone weight is frozen
                fmap, feats = self._inner(h, training=False)
                z = self._logits(feats)
                p = self._outputs(z)
                c = self._classes(p.numpy(), class_index, threshold)
                score = tf.gather(self._class_logits(z), c, axis=1, batch_dims=1)
            grads = self.spatial(tape.gradient(score, fmap))
            fmap = self.spatial(fmap)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1))[..., None]
            cam = tf.image.resize(cam, tf.shape(xb)[1:3], method="bilinear")[..., 0].numpy()
            peak = cam.max(axis=(1, 2), keepdims=True)
            maps.append(np.where(peak > 0, cam / np.where(peak > 0, peak, 1), 0.0).astype(np.float32))
            probs.append(p.numpy())
            reference.append(np.asarray(self._reference(xb, training=False)))
        probs_all = np.concatenate(probs)
        diff = float(np.max(np.abs(probs_all - np.concatenate(reference))))
        if not diff <= PARITY_TOL:
            raise ConfigError(f"Grad-CAM's recomposed forward pass differs from the model by {diff:.3g} "
                              f"(> {PARITY_TOL:g}); this model's graph is not raw input -> backbone -> head")
        predicted = self._classes(probs_all, None, threshold)
        explained = predicted if class_index is None else np.full(len(x), class_index)
        return np.concatenate(maps), probs_all, predicted, explained

    def _class_logits(self, z: Any) -> Any:
        """One logit per class: a one-unit sigmoid gets [-z, z] (classes 0 and 1)."""
        return keras.ops.concatenate([-z, z], axis=1) if z.shape[-1] == 1 else z

    def num_classes(self) -> int:
        units = int(self._final.units)
        return 2 if units == 1 else units

    def _classes(self, p: np.ndarray, class_index: int | None, threshold: float) -> np.ndarray:
        if class_index is not None:
            return np.full(len(p), class_index)
        return (p[:, 0] >= threshold).astype(np.int64) if p.shape[-1] == 1 else p.argmax(-1)


# ---------------------------------------------------------------- images in


def _read_images(images: Any, split: str, n: int,
                 config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """(uint8-like batch, true labels or None, a source name per image): the first ``n`` of them."""
    labels = None
    if images is None:
        from tlzoo.train.config import recorded
        from tlzoo.train.recipe import read_run_data, run_plugin

        cfg = recorded(config)
        data = read_run_data(cfg, run_plugin(cfg, config.get("plugin") or {}))  # decoded at the run's input size
        s = data.split(split)
        names = s.attributes.get("filenames")
        return (np.asarray(s.x[:n]), s.y[:n],
                [str(names[i]) if names is not None else f"{split}[{i}]" for i in range(min(n, len(s)))])
    if isinstance(images, np.ndarray):
        one = images.ndim == 2 or (images.ndim == 3 and images.shape[-1] in (1, 3))  # (H, W[, C]): one image
        x = images[None] if one else images
        names = [f"array[{i}]" for i in range(len(x))]
    else:
        path = Path(images)
        if path.suffix == ".npz" and path.is_file():
            with np.load(path, allow_pickle=False) as f:
                key = next((k for k in (f"{split}_images", "images") if k in f.files), None)
                if key is None:
                    raise DataError(f"{str(path)!r} holds no {split}_images or images array; keys: {sorted(f.files)}")
                x = f[key]
                lkey = key.replace("images", "labels")
                labels = as_labels(f[lkey], f"{path}:{lkey}") if lkey in f.files else None
            names = [f"{path.name}:{key}[{i}]" for i in range(len(x))]
        elif path.is_dir():
            from tlzoo.anomaly.patchcore import images_to_batch

            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
            if not files:
                raise DataError(f"image folder {str(path)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            x, note = images_to_batch([load_image(p) for p in files], str(path))
            if note:
                print(note)
            names = [str(p.relative_to(path)) for p in files]
        else:
            raise DataError(f"--images {str(images)!r} is not a .npz file, an image folder or an array")
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or len(x) == 0:
        raise DataError(f"images must be (N, H, W[, C]) with N >= 1, got shape {x.shape}")
    return x[:n], None if labels is None else labels[:n], names[:n]


def _check_channels(x: np.ndarray, model: keras.Model) -> None:
    want = model.inputs[0].shape[-1]
    if want is not None and x.shape[-1] != want:
        raise DataError(f"images have {x.shape[-1]} channel(s) (shape {x.shape}); this run's model takes {want} "
                        f"(the channel count of the data it was trained on)")


# ---------------------------------------------------------------- the command


def explain(run_dir: str | Path, images: str | Path | np.ndarray | None = None, *, split: str = "test", n: int = 8,
            out: str | Path | None = None, class_index: int | None = None, layer: str | None = None,
            batch_size: int = 16) -> ExplainResult:
    """Write heat-map overlays for ``n`` images (default: the first of the run's ``split``) into ``out``
    (default ``RUN_DIR/explanations``): one PNG per image, ``grid.png`` and ``explanations.json``.
    Grad-CAM for classifiers (``class_index``: the class to explain, default the predicted one;
    ``layer``: a backbone layer, default the last spatial group's), the run's own anomaly maps for
    anomaly runs. An existing ``out`` is replaced only if it holds an earlier explanation."""
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / EXPLAIN_DIR
    if out.is_dir() and any(out.iterdir()) and not (out / INDEX_FILE).is_file():
        raise ConfigError(f"output directory {str(out)!r} is not empty and holds no earlier {INDEX_FILE}; "
                          f"choose another --out")
    config, model = load_run(run_dir)
    saved = json.loads((run_dir / METRICS_FILE).read_text()) if (run_dir / METRICS_FILE).is_file() else {}
    names = [str(c) for c in (saved.get("class_names") or config.get("data", {}).get("classes") or [])]
    anomaly = config.get("recipe", "").startswith("anomaly")
    threshold = float(saved.get("threshold", saved.get("test", {}).get("threshold", 0.5)))
    if anomaly and (class_index is not None or layer is not None):
        raise ConfigError("an anomaly run is explained by its own anomaly maps; --class-index / --layer do not apply")
    cam = None if anomaly else GradCAM(model, config["backbone"]["name"], layer)  # refuses before data is read
    if cam is not None and class_index is not None and not 0 <= class_index < cam.num_classes():
        raise ConfigError(f"class_index must be in 0..{cam.num_classes() - 1} ({names or 'class indices'}), "
                          f"got {class_index}")
    x, labels, sources = _read_images(images, split, n, config)
    _check_channels(x, model)

    if cam is None:
        from tlzoo.anomaly.patchcore import MAP_OUTPUT, SCORE_OUTPUT, map_display_range

        outs = model.predict(x, batch_size=batch_size, verbose=0)
        maps, probs = np.asarray(outs[MAP_OUTPUT]), np.asarray(outs[SCORE_OUTPUT])
        predicted = explained = (probs[:, 0] >= threshold).astype(np.int64)
        vrange, label, grad_layer = map_display_range(maps, threshold), "patch distance", None
        shown = [f"score {s:.3g} {'FLAG' if s >= threshold else 'ok'}" for s in probs[:, 0]]
    else:
        maps, probs, predicted, explained = cam(x, class_index, threshold, batch_size)
        vrange, label, grad_layer = (0.0, 1.0), f"Grad-CAM ({cam.layer})", cam.layer
        p_pred = (np.where(predicted == 1, probs[:, 0], 1 - probs[:, 0]) if probs.shape[-1] == 1
                  else probs[np.arange(len(x)), predicted])
        shown = [f"pred {_name(names, c)} {q:.2f}" for c, q in zip(predicted, p_pred)]
    titles = [("" if labels is None else f"true {_name(names, labels[i])} | ") + shown[i]
              + ("" if explained[i] == predicted[i] or anomaly else f"\nmap: {_name(names, explained[i])}")
              for i in range(len(x))]

    files = [re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{i:03d}_{_name(names, predicted[i])}.png") for i in range(len(x))]
    index = {
        "run": str(run_dir), "method": "anomaly-map" if anomaly else "grad-cam", "layer": grad_layer,
        "feature_grid": None if cam is None else list(cam.grid), "threshold": threshold, "class_names": names,
        "score": ("the anomaly model's patch distances, upsampled" if anomaly else
                  "logit of the explained class (one-unit sigmoid: z for class 1, -z for class 0)"),
        "grid": "grid.png",
        "images": [{"file": f, "source": s, "true": None if labels is None else _name(names, labels[i]),
                    "predicted": _name(names, predicted[i]), "output": probs[i].tolist(),
                    "explained": _name(names, explained[i]), "map_all_zero": bool(maps[i].max() <= 0)}
                   for i, (f, s) in enumerate(zip(files, sources))],
    }
    with atomic_dir(out, overwrite=True) as tmp:
        for i, f in enumerate(files):
            plots.overlay_grid([x[i]], [maps[i]], [titles[i]], tmp / f, *vrange, label=label)
        plots.overlay_grid(list(x), list(maps), titles, tmp / "grid.png", *vrange, label=label)
        write_json(tmp / INDEX_FILE, index)
    return ExplainResult(out, index["method"], grad_layer, maps, probs, predicted, explained, labels, files)


def _name(names: list[str], k: Any) -> str:
    k = int(k)
    return names[k] if 0 <= k < len(names) else str(k)
