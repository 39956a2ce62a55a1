"""Framework overhead: ``tlzoo.adapt`` against a hand-written ``tf.data`` + ``Model.fit`` doing the same work.

Both sides train the same model on the same data with the same schedule, in ONE process, interleaved
(tlzoo, hand-written, then hand-written, tlzoo in the next repeat, so a slow drift in the machine's load
falls on both), each repeated ``--repeats`` times, under two conditions:

- ``plain``: tlzoo with no optional feature (``calibration="none"``, no subgroups);
- ``features``: tlzoo with calibration on (its default, ``"temperature"``) and subgroup metrics
  (``group_by="brightness"``). With ``--forgetting`` a third condition also turns on ``forgetting=True``
  (per-epoch backbone drift and source-task agreement; expensive by design, so reported on its own).
The hand-written side is the same in every condition: the optional features add reporting, not training.

What both sides do, step for step:

- data: a seeded subset of PneumoniaMNIST (``$TLZOO_DATA_DIR/pneumoniamnist.npz``; 28x28x1 uint8):
  ``--n-train`` train, ``--n-val`` val, ``--n-test`` test images from the official splits. tlzoo gets them
  in memory (``data={"train_images": ..., ...}``); the hand-written side uses the same arrays.
- training stream: ``Dataset.from_tensor_slices((x, y)).cache().shuffle(n, seed, reshuffle each
  iteration).batch(B)``, then in one parallel map: bilinear resize to the input size rounded back to
  uint8 (what tlzoo does to arrays, so arrays and files train on the same pixels), cast to float32, and
  the medical-imaging plugin's augmentation layers in training mode (RandomRotation(15/360),
  RandomZoom(0.15), RandomTranslation(0.1, 0.1), all ``fill_mode="nearest"``, RandomContrast(0.25, value
  range 0-255)); ``prefetch(AUTOTUNE)``. Labels int64, shape (N,). Validation: the same without shuffle,
  resize or augmentation (the model resizes). The hand-written augmentation layers are built by hand; the
  script checks their configs equal the plugin's.
- model: raw (H, W, 1) input -> cast to float32 -> gray to RGB (concatenate x3) -> ``Resizing(S, S)`` ->
  MobileNetV2 preprocessing (x / 127.5 - 1; tlzoo calls ``mobilenet_v2.preprocess_input`` in a layer, the
  hand-written model uses ``Rescaling(1/127.5, offset=-1)``, the same arithmetic) -> MobileNetV2
  (alpha 1.0, no top, ImageNet weights from the same file under ``$TLZOO_WEIGHTS_DIR``) -> global average
  pooling -> Dropout(0.4) -> Dense(1, sigmoid).
- schedule: stage "head" (``--head-epochs`` epochs, backbone frozen, learning rate ``--head-lr``), then
  stage "top" (``--epochs`` epochs, the top ``--unfreeze`` layer groups of MobileNetV2 trainable, i.e.
  ``Conv_1``/``out_relu`` and the last ``--unfreeze - 1`` ``block_N`` groups, BatchNormalization layers kept
  frozen as DESIGN.md says, learning rate ``--lr``). Each stage: AdamW (weight decay 1e-4) on a cosine decay
  of its learning rate over the stage's steps (alpha 0.01, no warm-up), recompiled with
  BinaryCrossentropy and metrics AUC("auc") + BinaryAccuracy("accuracy"); ``fit`` with balanced class
  weights (n / (2 * count per class)), the validation split every epoch, verbose 0. Layer-wise learning-
  rate decay is 1.0 (off) so both optimizers do the same arithmetic (tlzoo's still multiplies by its
  global learning-rate factor).
- best epoch: both keep the best ``val_auc`` weights across stages on disk, written from a never-compiled
  view of the model whenever the epoch improves on the best so far (tlzoo: its own callback; hand-written: a
  10-line callback shared by both stages. Keras' ``ModelCheckpoint(save_weights_only=True)`` would also write
  the optimizer's slots, extra work tlzoo does not do).
- after training (timed separately, not in the throughput): tlzoo evaluates, calibrates, reports subgroups,
  plots and saves the run directory; the hand-written side loads its best weights and predicts the test split.

Measurement: ``keras.Model.fit`` is wrapped (both sides alike) to add a clock callback at the front and one
at the end of the callback list. Throughput = images trained (n_train x epochs) / the training span (from
the first ``fit`` call to the return of the last one: every epoch with its validation pass and epoch-end
callbacks, each stage's first-step tracing, and the stage change between the two ``fit`` calls). Beside
it: epochs only; "steady" epochs (not the first of a stage, so without tracing); process CPU seconds per
1000 images. One-off set-up (reading data, building the model, loading weights; up to the first ``fit``)
and post-training work are reported separately. The wrapper also records, per ``fit`` call, the trainable
parameter count, the optimizer's configuration, class weights, the datasets' element specs and the
metric names, and the summary checks that both sides match.

Load: the machine's load average and, per trial, how many cores other processes used during its training
span (from /proc/stat minus this process's CPU time). On a shared machine the figures are noisy.

Writes overhead.json and overhead.png into --out (default benchmarks/results/overhead).

    python benchmarks/overhead.py                                  # the measurement (about 5 min on 2 cores)
    python benchmarks/overhead.py --n-train 256 --repeats 1 --out /tmp/overhead_smoke   # smoke test
"""
from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from shared_data import cpu_name, find_data

HERE = Path(__file__).resolve().parent
DEFAULT_WEIGHTS_DIR = HERE.parent.parent / "shared" / "weights" / "keras" / "models"
V2_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
TARGET_RATIO = 0.95
CONDITIONS = {
    "plain": {"calibration": "none", "group_by": None, "forgetting": False},
    "features": {"calibration": "temperature", "group_by": "brightness", "forgetting": False},
    "features+forgetting": {"calibration": "temperature", "group_by": "brightness", "forgetting": True},
}
AUGMENT = {"rotation_degrees": 15.0, "zoom": 0.15, "shift": 0.1, "contrast": 0.25}  # medical-imaging defaults
WEIGHT_DECAY = 1e-4
DROPOUT = 0.4


# ---------------------------------------------------------------- machine load


def _cpu_busy_s() -> float:
    """Seconds of CPU time all processes have used (busy jiffies in /proc/stat); nan where unavailable."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


# ---------------------------------------------------------------- the clock around Model.fit


class FitClock:
    """Records every ``fit`` call of a trial: its span, each epoch's phases and what it trains with; and
    Python's garbage-collection pauses (a pass over many objects can stop training for a while)."""

    def __init__(self) -> None:
        self.fits: list[dict[str, Any]] = []
        self.gc_pauses: list[tuple[float, float, int]] = []  # (start, seconds, generation)
        self._gc_start = 0.0

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_pauses.append((self._gc_start, time.perf_counter() - self._gc_start, info["generation"]))

    def callbacks(self, fit: dict[str, Any]) -> tuple[Any, Any]:
        import keras

        class First(keras.callbacks.Callback):  # first in the list: epoch begin, end-callbacks begin
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                fit["epochs"].append({"begin": time.perf_counter()})

            def on_test_begin(self, logs: Any = None) -> None:
                fit["epochs"][-1]["val_begin"] = time.perf_counter()

            def on_test_end(self, logs: Any = None) -> None:
                fit["epochs"][-1]["val_end"] = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                fit["epochs"][-1]["callbacks_begin"] = time.perf_counter()

        class Last(keras.callbacks.Callback):  # last in the list: the epoch is over
            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                fit["epochs"][-1]["end"] = time.perf_counter()

        return First(), Last()


@contextmanager
def clocked_fit(clock: FitClock) -> Iterator[None]:
    """Wrap ``keras.Model.fit`` so that every call (tlzoo's and the hand-written one) is timed alike."""
    import keras
    import numpy as np

    original = keras.Model.fit

    def fit(self: Any, x: Any = None, *args: Any, callbacks: Any = None, **kwargs: Any) -> Any:
        record: dict[str, Any] = {"epochs": []}
        first, last = clock.callbacks(record)
        record["trainable_params"] = int(sum(np.prod(v.shape) for v in self.trainable_weights))
        record["non_trainable_params"] = int(sum(np.prod(v.shape) for v in self.non_trainable_weights))
        record["optimizer"] = _optimizer_summary(self.optimizer)
        record["loss"] = type(self.loss).__name__
        record["class_weight"] = kwargs.get("class_weight")
        record["epochs_asked"] = kwargs.get("epochs")
        record["train_spec"] = str(getattr(x, "element_spec", type(x).__name__))
        record["train_steps"] = int(x.cardinality()) if hasattr(x, "cardinality") else None
        val = kwargs.get("validation_data")
        record["val_spec"] = str(getattr(val, "element_spec", type(val).__name__))
        record["cpu_begin"], record["busy_begin"] = _own_cpu_s(), _cpu_busy_s()
        record["begin"] = time.perf_counter()
        history = original(self, x, *args, callbacks=[first, *(callbacks or []), last], **kwargs)
        record["end"] = time.perf_counter()
        record["cpu_end"], record["busy_end"] = _own_cpu_s(), _cpu_busy_s()
        record["logged"] = sorted(history.history)
        clock.fits.append(record)
        return history

    keras.Model.fit = fit
    gc.callbacks.append(clock.on_gc)
    try:
        yield
    finally:
        keras.Model.fit = original
        gc.callbacks.remove(clock.on_gc)


def _optimizer_summary(optimizer: Any) -> dict[str, Any]:
    """The optimizer's class (Keras' own, under any subclass) and the settings that change its arithmetic."""
    base = next(c for c in type(optimizer).__mro__ if c.__module__.startswith("keras."))
    config = optimizer.get_config()
    keep = ("learning_rate", "weight_decay", "beta_1", "beta_2", "epsilon", "amsgrad", "clipnorm", "clipvalue",
            "global_clipnorm", "use_ema")
    out = {k: config.get(k) for k in keep}
    lr = out["learning_rate"]
    if isinstance(lr, dict):  # a schedule: its class and numbers, not its registered name
        out["learning_rate"] = {"class": lr.get("class_name"), **{k: v for k, v in (lr.get("config") or {}).items()
                                                                  if k != "name"}}
    out["class"] = base.__name__
    return out


# ---------------------------------------------------------------- data


def load_subset(path: Path, n_train: int, n_val: int, n_test: int, seed: int) -> dict[str, Any]:
    """Seeded random subsets of the official splits, as the .npz keys tlzoo reads from memory."""
    import numpy as np

    raw = np.load(path)
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        x, y = raw[f"{split}_images"], raw[f"{split}_labels"].reshape(-1).astype(np.int64)
        idx = np.sort(rng.choice(len(x), size=min(n, len(x)), replace=False))
        out[f"{split}_images"], out[f"{split}_labels"] = x[idx], y[idx]
    return out


# ---------------------------------------------------------------- the two sides


def _schedule(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [{"name": "head", "epochs": args.head_epochs, "trainable": 0, "learning_rate": args.head_lr},
            {"name": "top", "epochs": args.epochs, "trainable": args.unfreeze, "learning_rate": args.lr}]


def tlzoo_trial(arrays: dict[str, Any], args: argparse.Namespace, options: dict[str, Any], run_dir: Path) -> dict:
    import tlzoo

    result = tlzoo.adapt(plugin="medical-imaging", data=dict(arrays), out=str(run_dir), backbone="mobilenet_v2",
                         weights="imagenet", input_size=args.input_size, batch_size=args.batch_size, seed=args.seed,
                         schedule={"stages": _schedule(args)}, overwrite=True, verbose=0, **options)
    return {"test_roc_auc": result.metrics["test"].get("roc_auc"), "weights_path": result.config["weights"]["path"],
            "best_epoch": result.metrics["best_epoch"]}


def hand_augmentations() -> list[Any]:
    import keras

    a = AUGMENT
    return [keras.layers.RandomRotation(a["rotation_degrees"] / 360.0, fill_mode="nearest"),
            keras.layers.RandomZoom(a["zoom"], fill_mode="nearest"),
            keras.layers.RandomTranslation(a["shift"], a["shift"], fill_mode="nearest"),
            keras.layers.RandomContrast(a["contrast"], value_range=(0, 255))]


def _is_top(name: str, unfreeze: int) -> bool:
    """MobileNetV2's top ``unfreeze`` layer groups: ``Conv_1``/``out_relu``, then block_16, block_15, ..."""
    if name.startswith(("Conv_1", "out_relu")):
        return True
    return any(name.startswith(f"block_{i}_") for i in range(17 - (unfreeze - 1), 17))


def hand_datasets(arrays: dict[str, Any], args: argparse.Namespace) -> tuple[Any, Any]:
    """The hand-written training and validation streams (see the docstring)."""
    import tensorflow as tf

    size, bs = args.input_size, args.batch_size
    x_tr, y_tr = arrays["train_images"][..., None], arrays["train_labels"]
    x_val, y_val = arrays["val_images"][..., None], arrays["val_labels"]
    augmentations = hand_augmentations()

    def prepare(x: Any, y: Any) -> Any:
        x = tf.image.resize(tf.cast(x, tf.float32), (size, size), method="bilinear")
        x = tf.cast(tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8), tf.float32)
        for layer in augmentations:
            x = layer(x, training=True)
        return x, y

    train_ds = (tf.data.Dataset.from_tensor_slices((x_tr, y_tr)).cache()
                .shuffle(len(x_tr), seed=args.seed, reshuffle_each_iteration=True).batch(bs)
                .map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
    val_ds = tf.data.Dataset.from_tensor_slices((x_val, y_val)).cache().batch(bs).prefetch(tf.data.AUTOTUNE)
    return train_ds, val_ds


def hand_model(args: argparse.Namespace, weights_file: Path) -> tuple[Any, Any]:
    """(backbone, model): the hand-written model (see the docstring)."""
    import keras

    size = args.input_size
    backbone = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False, weights=str(weights_file))
    inputs = keras.Input((None, None, 1))
    x = keras.ops.cast(inputs, "float32")
    x = keras.layers.Concatenate()([x, x, x])
    x = keras.layers.Resizing(size, size)(x)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(backbone(x))
    x = keras.layers.Dropout(DROPOUT)(x)
    return backbone, keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", dtype="float32")(x))


def set_trainable(backbone: Any, groups: int) -> None:
    """Head only (0), or the top ``groups`` layer groups without their BatchNormalization layers."""
    import keras

    backbone.trainable = groups > 0
    for layer in backbone.layers:
        layer.trainable = (groups > 0 and _is_top(layer.name, groups)
                           and not isinstance(layer, keras.layers.BatchNormalization))


def hand_trial(arrays: dict[str, Any], args: argparse.Namespace, weights_file: Path, run_dir: Path) -> dict:
    import keras
    import numpy as np
    from sklearn.metrics import roc_auc_score

    class KeepBest(keras.callbacks.Callback):
        """The best ``val_auc`` weights across all stages, written to disk when they improve. Like
        ``ModelCheckpoint(save_best_only=True, save_weights_only=True)``, but through a never-compiled view
        of the model: a compiled model's weights file also carries the optimizer's slots, which tlzoo's
        best-weights file does not, and writing them would be extra work on this side only."""

        def __init__(self, view: Any, path: Path) -> None:
            super().__init__()
            self.view, self.path, self.best = view, path, -math.inf

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            value = (logs or {}).get("val_auc")
            if value is not None and value > self.best:
                self.best = value
                self.view.save_weights(self.path)

    keras.utils.set_random_seed(args.seed)
    train_ds, val_ds = hand_datasets(arrays, args)
    backbone, model = hand_model(args, weights_file)
    y_tr, bs = arrays["train_labels"], args.batch_size
    counts = np.bincount(y_tr, minlength=2).astype(float)
    class_weight = {i: float(len(y_tr) / (2 * c)) for i, c in enumerate(counts)}
    steps = math.ceil(len(y_tr) / bs)
    view = keras.Model(model.inputs, model.outputs)  # never compiled: its weights file holds no optimizer state
    best = KeepBest(view, run_dir / "best.weights.h5")
    for stage in _schedule(args):
        set_trainable(backbone, stage["trainable"])
        schedule = keras.optimizers.schedules.CosineDecay(stage["learning_rate"],
                                                          decay_steps=max(1, stage["epochs"] * steps), alpha=0.01)
        model.compile(optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=WEIGHT_DECAY),
                      loss=keras.losses.BinaryCrossentropy(),
                      metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")])
        model.fit(train_ds, validation_data=val_ds, epochs=stage["epochs"], class_weight=class_weight,
                  callbacks=[best], shuffle=False, verbose=0)
    view.load_weights(run_dir / "best.weights.h5")
    probs = model.predict(arrays["test_images"][..., None], batch_size=bs, verbose=0).reshape(-1)
    return {"test_roc_auc": float(roc_auc_score(arrays["test_labels"], probs)), "weights_path": str(weights_file)}


def run_trial(side: str, condition: str, arrays: dict[str, Any], args: argparse.Namespace, weights_file: Path,
              work: Path) -> dict[str, Any]:
    import keras

    keras.backend.clear_session()
    gc.collect()
    run_dir = work / f"{side}-{condition}-{time.monotonic_ns()}"
    run_dir.mkdir(parents=True)
    clock = FitClock()
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with clocked_fit(clock):
        if side == "tlzoo":
            outcome = tlzoo_trial(arrays, args, CONDITIONS[condition], run_dir)
        else:
            outcome = hand_trial(arrays, args, weights_file, run_dir)
    t1 = time.perf_counter()
    shutil.rmtree(run_dir, ignore_errors=True)
    trial = summarise_trial(clock.fits, t0, t1, len(arrays["train_labels"]))
    first, last = clock.fits[0]["begin"], clock.fits[-1]["end"]
    in_span = [p for p in clock.gc_pauses if first <= p[0] <= last]
    trial["gc_in_training_s"] = round(sum(p[1] for p in in_span), 3)
    trial["gc_in_training_full_passes"] = sum(1 for p in in_span if p[2] == 2)
    trial.update(side=side, condition=condition, outcome=outcome,
                 load_average_before=[round(v, 2) for v in load_before],
                 load_average_after=[round(v, 2) for v in os.getloadavg()])
    print(f"  {side:6s} {condition:20s} {trial['images_per_s']:7.1f} img/s (span {trial['train_span_s']:.1f} s, "
          f"steady {trial['images_per_s_steady'] or float('nan'):.1f} img/s), set-up {trial['setup_s']:.1f} s, "
          f"after {trial['post_s']:.1f} s, other processes {trial['other_cores']:.2f} cores, "
          f"test ROC-AUC {outcome['test_roc_auc']:.3f}", flush=True)
    return trial


def summarise_trial(fits: list[dict[str, Any]], t0: float, t1: float, n_train: int) -> dict[str, Any]:
    """Throughput and the phases of one trial's training from its ``fit`` records."""
    epochs = [e | {"stage": i, "first_of_stage": k == 0} for i, f in enumerate(fits) for k, e in enumerate(f["epochs"])]
    span = fits[-1]["end"] - fits[0]["begin"]
    n_epochs = len(epochs)
    steady = [e for e in epochs if not e["first_of_stage"]]
    cpu = sum(f["cpu_end"] - f["cpu_begin"] for f in fits)
    busy = sum(f["busy_end"] - f["busy_begin"] for f in fits)
    fit_time = sum(f["end"] - f["begin"] for f in fits)

    def phase(e: dict[str, Any]) -> dict[str, float]:
        return {"seconds": round(e["end"] - e["begin"], 3),
                "train_steps_s": round(e["val_begin"] - e["begin"], 3),
                "validation_s": round(e["val_end"] - e["val_begin"], 3),
                "after_validation_s": round(e["callbacks_begin"] - e["val_end"], 4),  # logs, metrics results
                "epoch_end_callbacks_s": round(e["end"] - e["callbacks_begin"], 4)}

    epochs_s = sum(e["end"] - e["begin"] for e in epochs)
    return {
        "setup_s": round(fits[0]["begin"] - t0, 2),
        "train_span_s": round(span, 3),
        "post_s": round(t1 - fits[-1]["end"], 2),
        "total_s": round(t1 - t0, 2),
        "images_trained": n_train * n_epochs,
        "images_per_s": round(n_train * n_epochs / span, 1),
        "images_per_s_epochs_only": round(n_train * n_epochs / epochs_s, 1),
        "images_per_s_steady": round(n_train * len(steady) / sum(e["end"] - e["begin"] for e in steady), 1)
        if steady else None,
        "cpu_s_per_1000_images": round(1000 * cpu / (n_train * n_epochs), 3),
        # cores other processes kept busy while this trial trained (machine busy time minus this process's)
        "other_cores": round(max(0.0, busy - cpu) / fit_time, 2) if math.isfinite(busy) else float("nan"),
        "fit_overhead_s": round(sum((f["epochs"][0]["begin"] - f["begin"]) + (f["end"] - f["epochs"][-1]["end"])
                                    for f in fits), 3),  # fit call to first epoch; last epoch to return
        "between_fits_s": round(sum(b["begin"] - a["end"] for a, b in itertools.pairwise(fits)), 3),  # stage change
        "epochs": [{"stage": e["stage"], **phase(e)} for e in epochs],
        "fits": [{"start_s": round(f["epochs"][0]["begin"] - f["begin"], 3),  # fit call to its first epoch
                  "finish_s": round(f["end"] - f["epochs"][-1]["end"], 3),  # last epoch to fit's return
                  **{k: v for k, v in f.items() if k not in ("epochs", "begin", "end", "cpu_begin", "cpu_end",
                                                             "busy_begin", "busy_end")}} for f in fits],
    }


# ---------------------------------------------------------------- components, in isolation


def components(arrays: dict[str, Any], args: argparse.Namespace, weights_file: Path, rounds: int) -> dict[str, Any]:
    """The parts of an epoch where tlzoo runs its own code instead of the hand-written one, timed alone and
    interleaved (``rounds`` times each, medians): one pass over the training stream (``tlzoo.data.make_dataset``
    against ``hand_datasets``) and one optimizer step on the fine-tuning stage's variables
    (``tlzoo.train.schedule.make_optimizer``'s layer-wise AdamW against ``keras.optimizers.AdamW``)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tlzoo.data import Split, make_dataset
    from tlzoo.plugin import get_plugin
    from tlzoo.train.schedule import make_optimizer

    keras.backend.clear_session()
    keras.utils.set_random_seed(args.seed)
    plugin_layers = get_plugin("medical-imaging").augmentations()

    def augment(x: Any) -> Any:  # what the recipe hands make_dataset: the plugin's layers in order
        for layer in plugin_layers:
            x = layer(x, training=True)
        return x

    split = Split(arrays["train_images"][..., None], arrays["train_labels"])
    streams = {"tlzoo": make_dataset(split, batch_size=args.batch_size, training=True, seed=args.seed,
                                     augment=augment, image_size=args.input_size),
               "hand": hand_datasets(arrays, args)[0]}
    batches = math.ceil(len(split) / args.batch_size)

    def one_pass(ds: Any) -> float:
        t = time.perf_counter()
        for _ in ds:
            pass
        return time.perf_counter() - t

    for ds in streams.values():
        one_pass(ds)  # fills the cache, traces the map
    pipeline = {k: [] for k in streams}
    for r in range(rounds):
        for side in (("tlzoo", "hand") if r % 2 == 0 else ("hand", "tlzoo")):
            pipeline[side].append(1000 * one_pass(streams[side]) / batches)

    backbone, model = hand_model(args, weights_file)
    set_trainable(backbone, args.unfreeze)
    variables = model.trainable_variables
    rng = np.random.default_rng(args.seed)
    grads = [tf.constant(rng.normal(0, 1e-3, v.shape).astype("float32")) for v in variables]
    schedule = keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=10_000, alpha=0.01)
    optimizers = {"tlzoo": make_optimizer("adamw", schedule, {v.path: 1.0 for v in variables},
                                          weight_decay=WEIGHT_DECAY),
                  "hand": keras.optimizers.AdamW(learning_rate=schedule, weight_decay=WEIGHT_DECAY)}
    steps_fn = {}
    for side, opt in optimizers.items():
        opt.build(variables)

        @tf.function
        def step(opt: Any = opt) -> None:
            opt.apply_gradients(zip(grads, variables))

        step()  # traces
        steps_fn[side] = step
    optimizer = {k: [] for k in optimizers}
    n_steps = 20
    for r in range(rounds):
        for side in (("tlzoo", "hand") if r % 2 == 0 else ("hand", "tlzoo")):
            t = time.perf_counter()
            for _ in range(n_steps):
                steps_fn[side]()
            optimizer[side].append(1000 * (time.perf_counter() - t) / n_steps)

    def med(values: dict[str, list[float]]) -> dict[str, Any]:
        out: dict[str, Any] = {k: round(statistics.median(v), 2) for k, v in values.items()}
        out["difference"] = round(out["tlzoo"] - out["hand"], 2)
        out["rounds"] = {k: [round(x, 2) for x in v] for k, v in values.items()}
        return out

    result = {"pipeline_ms_per_batch": med(pipeline) | {"batches": batches},
              "optimizer_step_ms": med(optimizer) | {"variables": len(variables),
                                                     "parameters": int(sum(np.prod(v.shape) for v in variables))}}
    stream = result["pipeline_ms_per_batch"]
    print(f"  components: stream {stream['tlzoo']} vs {stream['hand']}"
          f" ms/batch; optimizer step {result['optimizer_step_ms']['tlzoo']} vs {result['optimizer_step_ms']['hand']} "
          f"ms (tlzoo vs hand-written)", flush=True)
    return result


# ---------------------------------------------------------------- equivalence and summary


def augmentation_check() -> dict[str, Any]:
    """The hand-written augmentation layers against the plugin's (configs without name and seed)."""
    from tlzoo.plugin import get_plugin

    def configs(layers: list[Any]) -> list[Any]:
        return [(type(layer).__name__, {k: v for k, v in layer.get_config().items() if k not in ("name", "seed")})
                for layer in layers]

    plugin = get_plugin("medical-imaging")
    theirs, ours = configs(plugin.augmentations()), configs(hand_augmentations())
    return {"equal": theirs == ours, "plugin": [c[0] for c in theirs], "hand_written": [c[0] for c in ours]}


def equivalence(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """What the two sides' ``fit`` calls were given, compared stage by stage (first trial of each side)."""
    first = {side: next(t for t in trials if t["side"] == side) for side in ("tlzoo", "hand")}
    keys = ("trainable_params", "non_trainable_params", "optimizer", "loss", "class_weight", "epochs_asked",
            "train_spec", "train_steps", "val_spec", "logged")
    stages = []
    for a, b in zip(first["tlzoo"]["fits"], first["hand"]["fits"]):
        cw_a = {str(k): round(v, 6) for k, v in (a["class_weight"] or {}).items()}
        cw_b = {str(k): round(v, 6) for k, v in (b["class_weight"] or {}).items()}
        diff = {k: {"tlzoo": a[k], "hand": b[k]} for k in keys if k != "class_weight" and a[k] != b[k]}
        if cw_a != cw_b:
            diff["class_weight"] = {"tlzoo": cw_a, "hand": cw_b}
        stages.append({"trainable_params": a["trainable_params"], "differences": diff})
    same_weights = first["tlzoo"]["outcome"]["weights_path"] == first["hand"]["outcome"]["weights_path"]
    return {"stages": stages, "same_weights_file": same_weights,
            "equal": same_weights and len(first["tlzoo"]["fits"]) == len(first["hand"]["fits"])
            and not any(s["differences"] for s in stages)}


def _median(values: list[float], digits: int = 1) -> float:
    return round(statistics.median(values), digits) if values else float("nan")


def summarise(args: argparse.Namespace, trials: list[dict[str, Any]], conditions: list[str]) -> dict[str, Any]:
    per: dict[str, Any] = {}
    for cond in conditions:
        t = [x for x in trials if x["condition"] == cond and x["side"] == "tlzoo"]
        h = [x for x in trials if x["condition"] == cond and x["side"] == "hand"]
        paired = [a["images_per_s"] / b["images_per_s"] for a, b in zip(t, h)]  # the two trials of one repeat
        row: dict[str, Any] = {}
        for key in ("images_per_s", "images_per_s_epochs_only", "images_per_s_steady", "cpu_s_per_1000_images",
                    "setup_s", "post_s", "train_span_s", "fit_overhead_s", "between_fits_s", "gc_in_training_s",
                    "other_cores"):
            digits = 1 if key.startswith("images") else 3
            row[key] = {"tlzoo": _median([x[key] for x in t if x[key] is not None], digits),
                        "hand": _median([x[key] for x in h if x[key] is not None], digits)}
        for phase in ("train_steps_s", "validation_s", "after_validation_s", "epoch_end_callbacks_s"):
            row[f"per_epoch_{phase}"] = {
                side: round(statistics.median([sum(e[phase] for e in x["epochs"]) / len(x["epochs"]) for x in xs]), 4)
                for side, xs in (("tlzoo", t), ("hand", h))}
        row["ratio"] = round(statistics.median(paired), 3) if paired else None
        row["ratio_per_repeat"] = [round(r, 3) for r in paired]
        row["ratio_of_medians"] = round(row["images_per_s"]["tlzoo"] / row["images_per_s"]["hand"], 3)
        for key in ("images_per_s_epochs_only", "images_per_s_steady"):
            row[f"ratio_{key[len('images_per_s_'):]}"] = round(row[key]["tlzoo"] / row[key]["hand"], 3)
        row["ratio_cpu_per_image"] = round(row["cpu_s_per_1000_images"]["hand"]
                                           / row["cpu_s_per_1000_images"]["tlzoo"], 3)
        row["target"] = f">= {TARGET_RATIO} (median of the per-repeat ratios of training-span images/s)"
        row["pass"] = bool(row["ratio"] is not None and row["ratio"] >= TARGET_RATIO)
        row["test_roc_auc"] = {"tlzoo": [round(x["outcome"]["test_roc_auc"], 4) for x in t],
                               "hand": [round(x["outcome"]["test_roc_auc"], 4) for x in h]}
        per[cond] = row
    return per


def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    import tlzoo

    return {"tlzoo": tlzoo.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=1024, help="training images (the epoch's length)")
    ap.add_argument("--n-val", type=int, default=256)
    ap.add_argument("--n-test", type=int, default=256)
    ap.add_argument("--input-size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--head-epochs", type=int, default=2, help="epochs of the head-only stage")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of the fine-tuning stage")
    ap.add_argument("--unfreeze", type=int, default=4, help="top layer groups trainable in the fine-tuning stage")
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--repeats", type=int, default=2, help="tlzoo / hand-written pairs per condition")
    ap.add_argument("--forgetting", action="store_true",
                    help="also a condition with forgetting=True (per-epoch drift tracking; expensive)")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up trial")
    ap.add_argument("--component-rounds", type=int, default=5,
                    help="interleaved rounds of the stream and optimizer-step timings (0: skip them)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights-file", help=f"MobileNetV2 no-top .h5 (default: {V2_FILE} under $TLZOO_WEIGHTS_DIR)")
    ap.add_argument("--out", default=str(HERE / "results" / "overhead"))
    args = ap.parse_args()
    if args.unfreeze < 1 or args.unfreeze > 17:
        raise SystemExit("--unfreeze counts MobileNetV2's top layer groups: 1 to 17")

    os.environ.setdefault("TLZOO_WEIGHTS_DIR", str(DEFAULT_WEIGHTS_DIR))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    weights_file = Path(args.weights_file or Path(os.environ["TLZOO_WEIGHTS_DIR"]) / V2_FILE)
    if not weights_file.is_file():
        raise SystemExit(f"{weights_file} not found: set TLZOO_WEIGHTS_DIR or give --weights-file")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_path = find_data("pneumoniamnist.npz")
    arrays = load_subset(data_path, args.n_train, args.n_val, args.n_test, args.seed)
    args.n_train = len(arrays["train_labels"])
    conditions = ["plain", "features"] + (["features+forgetting"] if args.forgetting else [])
    work = Path(tempfile.mkdtemp(prefix="tlzoo-overhead-"))
    load_start = os.getloadavg()
    t_start = time.perf_counter()
    trials: list[dict[str, Any]] = []
    try:
        if not args.no_warmup:  # TensorFlow's one-off start-up costs land here, on neither side
            print("warm-up (untimed)", flush=True)
            warm = argparse.Namespace(**{**vars(args), "head_epochs": 1, "epochs": 1})
            run_trial("hand", "warmup", load_subset(data_path, 2 * args.batch_size, args.batch_size, args.batch_size,
                                                    args.seed), warm, weights_file, work)
        for r in range(args.repeats):
            order = ("tlzoo", "hand") if r % 2 == 0 else ("hand", "tlzoo")  # ABBA: drift falls on both sides
            for cond in conditions:
                print(f"repeat {r + 1}/{args.repeats}, {cond}", flush=True)
                for side in order:
                    trials.append(run_trial(side, cond, arrays, args, weights_file, work))
        parts = components(arrays, args, weights_file, args.component_rounds) if args.component_rounds else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per = summarise(args, trials, conditions)
    summary = {
        "what": "training throughput of tlzoo.adapt vs a hand-written tf.data + Model.fit loop doing the same work "
                "(see the script's docstring), interleaved in one process",
        "data": {"source": str(data_path), "n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_test},
        "settings": {k: getattr(args, k) for k in ("input_size", "batch_size", "head_epochs", "epochs", "unfreeze",
                                                   "head_lr", "lr", "repeats", "seed")}
        | {"backbone": "mobilenet_v2 (alpha 1.0), ImageNet", "weights_file": str(weights_file),
           "steps_per_epoch": math.ceil(args.n_train / args.batch_size),
           "order": "per repeat and condition: tlzoo then hand-written in odd repeats, the reverse in even ones"},
        "conditions": {c: CONDITIONS[c] for c in conditions},
        "results": per,
        "components": parts,
        "equivalence": {"augmentations": augmentation_check(), "fit_calls": equivalence(trials)},
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "load_average_start": [round(v, 2) for v in load_start],
                    "load_average_end": [round(v, 2) for v in os.getloadavg()],
                    "other_processes_cores_median": _median([t["other_cores"] for t in trials], 2)},
        "versions": _versions(),
        "wall_s": round(time.perf_counter() - t_start, 1),
        "note": "in-process, interleaved; throughput is images trained / training span (first fit call to last "
                "return). On a shared machine (see other_processes_cores) the figures are noisy.",
        "trials": trials,
    }
    (out / "overhead.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    plot(summary, out / "overhead.png")
    print_table(summary, out)


def plot(s: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    res, trials = s["results"], s["trials"]
    conds = list(res)
    fig, ((a, b), (c, d)) = plt.subplots(2, 2, figsize=(12, 8.5))
    x, w = np.arange(len(conds)), 0.38
    sides = (("tlzoo", "tlzoo.adapt", "tab:blue"), ("hand", "hand-written", "tab:orange"))
    for k, (side, label, col) in enumerate(sides):
        vals = [res[cd]["images_per_s"][side] for cd in conds]
        bars = a.bar(x + (k - 0.5) * w, vals, w, label=label, color=col)
        a.bar_label(bars, fmt="%.0f")
        for i, cd in enumerate(conds):  # every repeat as a dot
            pts = [t["images_per_s"] for t in trials if t["condition"] == cd and t["side"] == side]
            a.scatter([x[i] + (k - 0.5) * w] * len(pts), pts, color="black", s=10, zorder=3)
    a.set_xticks(x, conds)
    a.set_ylabel("images / s (training span)")
    a.set_title("training throughput (median; dots: repeats)")
    a.legend(fontsize=8, loc="lower right")

    ratios = [res[cd]["ratio"] for cd in conds]
    bars = b.bar(conds, ratios, color=["tab:green" if r >= TARGET_RATIO else "tab:red" for r in ratios])
    b.bar_label(bars, fmt="%.3f")
    for i, cd in enumerate(conds):
        b.scatter([i] * len(res[cd]["ratio_per_repeat"]), res[cd]["ratio_per_repeat"], color="black", s=10, zorder=3)
    b.axhline(TARGET_RATIO, color="tab:red", ls="--", lw=1, label=f"target {TARGET_RATIO}")
    b.axhline(1.0, color="gray", lw=0.8)
    b.set_ylim(0, max(1.15, max(max(res[cd]["ratio_per_repeat"] or [0]) for cd in conds) + 0.1))
    b.set_title("tlzoo / hand-written (median of per-repeat ratios)")
    b.legend(fontsize=8, loc="lower right")

    phases = (("per_epoch_train_steps_s", "training steps", "tab:blue"),
              ("per_epoch_validation_s", "validation", "tab:cyan"),
              ("per_epoch_epoch_end_callbacks_s", "epoch-end callbacks", "tab:red"))
    labels = [f"{cd}\n{side}" for cd in conds for side in ("tlzoo", "hand")]
    bottom = np.zeros(len(labels))
    for key, label, col in phases:
        vals = np.array([res[cd][key][side] for cd in conds for side in ("tlzoo", "hand")])
        c.bar(labels, vals, bottom=bottom, label=label, color=col)
        bottom += vals
    for i, v in enumerate(bottom):
        c.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    c.set_ylabel("seconds per epoch (median)")
    c.set_title("where an epoch goes")
    c.legend(fontsize=8, loc="lower right")

    for k, (key, label, col) in enumerate((("setup_s", "set-up (to the first fit)", "tab:gray"),
                                           ("post_s", "after training", "tab:purple"))):
        vals = [res[cd][key][side] for cd in conds for side in ("tlzoo", "hand")]
        bars = d.bar(np.arange(len(labels)) + (k - 0.5) * w, vals, w, label=label, color=col)
        d.bar_label(bars, fmt="%.1f", fontsize=8)
    d.set_xticks(np.arange(len(labels)), labels)
    d.set_ylabel("seconds (median)")
    d.set_title("one-off work, not in the throughput")
    d.legend(fontsize=8)
    m, st = s["machine"], s["settings"]
    fig.suptitle(f"MobileNetV2 {st['input_size']} px, batch {st['batch_size']}, {s['data']['n_train']} train images, "
                 f"head {st['head_epochs']} + top-{st['unfreeze']} {st['epochs']} epochs; {m['cpu']}, "
                 f"{m['cores']} cores, load avg {m['load_average_start'][0]} -> {m['load_average_end'][0]}, "
                 f"others used {m['other_processes_cores_median']} cores", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(s: dict[str, Any], out: Path) -> None:
    print(f"\n{'condition':22s} {'tlzoo img/s':>11s} {'hand img/s':>10s} {'ratio':>6s}  per repeat       steady  "
          f"cpu/img  set-up s (t/h)  after s (t/h)")
    for cd, r in s["results"].items():
        print(f"{cd:22s} {r['images_per_s']['tlzoo']:11.1f} {r['images_per_s']['hand']:10.1f} {r['ratio']:6.3f}  "
              f"{r['ratio_per_repeat']!s:16s} {r['ratio_steady']:6.3f}  {r['ratio_cpu_per_image']:7.3f}  "
              f"{r['setup_s']['tlzoo']:5.1f}/{r['setup_s']['hand']:<5.1f}      "
              f"{r['post_s']['tlzoo']:5.1f}/{r['post_s']['hand']:<5.1f}")
    eq = s["equivalence"]
    print(f"equivalent: augmentations {eq['augmentations']['equal']}, fit calls {eq['fit_calls']['equal']}")
    if not eq["fit_calls"]["equal"]:
        print(json.dumps(eq["fit_calls"], indent=1, default=str))
    m = s["machine"]
    print(f"{m['cpu']}, {m['cores']} cores; load average {m['load_average_start']} -> {m['load_average_end']}; "
          f"other processes used {m['other_processes_cores_median']} cores (median over trials); wall {s['wall_s']} s")
    print(f"results in {out}/overhead.json and overhead.png", flush=True)


if __name__ == "__main__":
    sys.exit(main())
