"""Anomaly detection from pretrained features, fitted on normal (defect-free) images only."""
from tlzoo.anomaly.patchcore import (
    VIEWS,
    PatchCore,
    PatchCoreConfig,
    false_alarm_threshold,
    feature_levels,
    greedy_coreset,
)

__all__ = ["VIEWS", "PatchCore", "PatchCoreConfig", "false_alarm_threshold", "feature_levels", "greedy_coreset"]
