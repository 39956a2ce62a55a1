"""Defect-detection plugin for industrial inspection: surfaces and parts.

Two modes (``--option mode=...``):

- ``classify`` (default): a multiclass head over known defect types on a pretrained backbone,
  through the standard ``adapt`` recipe. Augmentations suit textures (flips in both axes, quarter
  turns, small brightness / contrast / blur changes, random crops); the freeze schedule unfreezes
  the whole backbone after a short head stage, because textures sit far from ImageNet.
- ``anomaly``: learn "normal" from defect-free images only (PatchCore on frozen pretrained
  features, ``tlzoo.anomaly``) and flag what is not; the threshold comes from a false-alarm budget
  (``max_false_alarm``) on held-out normal images. Its own recipe (``recipe.run_anomaly``), no
  gradient training.

Registered through the ``tlzoo.plugins`` entry point, exactly as a third-party plugin is. Keras (the
augmentation layers, the anomaly model) is imported when a plugin instance needs it, so that listing
plugins does not start TensorFlow.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np

from tlzoo.errors import ConfigError, DataError
from tlzoo.plugin import DomainPlugin
from tlzoo.train.schedule import FreezeSchedule

if TYPE_CHECKING:
    import keras

    from tlzoo.data import DataSplits

MODES = ("classify", "anomaly")


class DefectDetectionPlugin(DomainPlugin):
    """Supervised defect classification, or defect-free-only anomaly detection."""

    name: ClassVar[str] = "defect-detection"
    modality: ClassVar[str] = "image"
    task: ClassVar[str] = "multiclass"
    default_backbone: ClassVar[str] = "mobilenet_v2"
    default_input_size: ClassVar[int | None] = 128
    monitor: ClassVar[str] = "accuracy"
    description: ClassVar[str] = ("industrial inspection: defect classification (accuracy, macro-F1, per-class "
                                  "recall) or PatchCore anomaly detection (image ROC-AUC, recall at a "
                                  "false-alarm rate)")
    intended_use: ClassVar[str] = (
        "Visual inspection prototyping on images from the same camera, lighting, part and surface as the training "
        "data; anomaly mode flags parts for review at a chosen false-alarm rate.")
    limitations: ClassVar[tuple[str, ...]] = (
        "Changes of camera, lighting, focus, part pose or material shift the features; re-fit or re-check the "
        "false-alarm rate after any change of the line.",
        "Anomaly mode flags anything unlike the normal images it saw, including harmless variation that the normal "
        "set did not cover; it does not say which defect it is.",
        "The false-alarm threshold is estimated on a few hundred normal images at most; its rate is uncertain.",
    )
    default_options: ClassVar[dict[str, Any]] = {
        "mode": "classify",
        # classify
        "flips": True,
        "quarter_turns": True,
        "brightness": 0.1,  # fraction of the 0-255 range
        "contrast": 0.2,
        "blur": 0.5,  # maximum blend weight of a 3x3 box blur
        "crop": 0.15,  # random crops of up to this fraction of the side, resized back
        "dropout": 0.2,
        "epochs": 10,
        "head_epochs": 2,
        "base_lr": 2e-3,
        "lr_decay": 0.85,
        # anomaly
        "max_false_alarm": 0.01,
        "normal_class": "auto",  # class name or index of the defect-free images; auto: good/ok/normal/*_free
        "train_fraction": 0.5,  # of the normal images: the rest goes to the test set
        "threshold_fraction": 0.25,  # of the training normals: held out to set the threshold
        "split_file": None,  # a list of training file names (a published protocol's): replaces train_fraction
        "coreset_ratio": 0.1,
        "coreset_size": 0,  # 0: coreset_ratio decides
        "max_bank_mb": 256.0,
        "levels": "",  # comma-separated layer groups; "": the last groups at output strides 8 and 16
        "neighbourhood": 3,  # side of the patch neighbourhood each feature is averaged over
        "views": "none",  # none | flips | rot90 | d4: each normal image's views in the bank, averaged at scoring
        "anomaly_input_size": 128,
        "heatmaps": 8,
    }
    augmentation_options: ClassVar[tuple[str, ...]] = ("brightness", "contrast", "blur", "crop")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        mode = self.options["mode"]
        if mode not in MODES:
            raise ConfigError(f"defect-detection mode must be one of {MODES}, got {mode!r}")
        if mode == "anomaly":
            self.task = "binary"  # type: ignore[misc]  normal (0) / defective (1)
            self.monitor = "auc"  # type: ignore[misc]
        # Registers the anomaly model's layers, so that runs load with safe_mode. Here rather than at
        # import: an instance is about to train or evaluate, and listing plugins should not load Keras.
        import tlzoo.anomaly  # noqa: F401

    @property
    def anomaly(self) -> bool:
        return self.options["mode"] == "anomaly"

    # ------------------------------------------------------------------ recipe hook
    def custom_recipe(self) -> Callable[..., Any] | None:
        if not self.anomaly:
            return None
        from tlzoo_defect.recipe import run_anomaly

        return lambda cfg: run_anomaly(cfg, self)

    # ------------------------------------------------------------------ data
    def read_data(self, source: str, *, seed: int = 0, options: dict[str, Any] | None = None) -> DataSplits:
        if not self.anomaly:
            return super().read_data(source, seed=seed, options=options)
        from tlzoo_defect.anomaly_data import (
            anomaly_splits,
            normal_label,
            read_labelled,
        )

        labelled = read_labelled(source)
        splits, _ = anomaly_splits(labelled, normal_label(labelled, self.options["normal_class"]), seed=seed,
                                   train_fraction=float(self.options["train_fraction"]),
                                   threshold_fraction=float(self.options["threshold_fraction"]),
                                   split_file=self.options["split_file"])
        return splits

    def check_data(self, data: DataSplits) -> None:
        if not self.anomaly:
            return super().check_data(data)
        if (data.train.y != 0).any() or (data.val.y != 0).any():
            raise DataError("anomaly mode fits and thresholds on defect-free images only; the train / val splits "
                            "hold images labelled defective")
        self.check_images(data)

    # ------------------------------------------------------------------ classify model
    def augmentations(self) -> list[keras.layers.Layer]:
        import keras

        from tlzoo_defect.augment import RandomBlur, RandomQuarterTurn

        o = self.options
        layers: list[keras.layers.Layer] = []
        if o["flips"]:
            layers.append(keras.layers.RandomFlip("horizontal_and_vertical"))
        if o["quarter_turns"]:
            layers.append(RandomQuarterTurn())
        if o["crop"]:
            layers.append(keras.layers.RandomZoom((-float(o["crop"]), 0.0), fill_mode="reflect"))
        if o["brightness"]:
            layers.append(keras.layers.RandomBrightness(float(o["brightness"]), value_range=(0, 255)))
        if o["contrast"]:
            layers.append(keras.layers.RandomContrast(float(o["contrast"]), value_range=(0, 255)))
        if o["blur"]:
            layers.append(RandomBlur(float(o["blur"])))
        return layers

    def freeze_schedule(self, backbone_groups: int) -> FreezeSchedule:
        """Head first, then the whole backbone with layer-wise decaying learning rates: texture
        domains need their upper groups retrained (features far from ImageNet's objects)."""
        o = self.options
        return FreezeSchedule.fine_tune(epochs=int(o["epochs"]), freeze_epochs=int(o["head_epochs"]),
                                        base_lr=float(o["base_lr"]), lr_decay=float(o["lr_decay"]))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, y_true: np.ndarray, probs: np.ndarray, *, threshold: float = 0.5) -> dict[str, Any]:
        if not self.anomaly:
            return super().evaluate(y_true, probs, threshold=threshold)
        from tlzoo_defect.recipe import anomaly_metrics

        if isinstance(probs, np.ndarray) and probs.dtype == object:  # np.asarray of the model's output dict
            probs = probs.item()
        if isinstance(probs, dict):  # the anomaly model's named outputs (tlzoo evaluate)
            probs = probs["probabilities"]
        return anomaly_metrics(y_true, np.asarray(probs).reshape(-1), threshold, float(self.options["max_false_alarm"]))


__all__ = ["DefectDetectionPlugin"]
