"""The run directory: written atomically, read back by every later command. Public: a plugin's own
recipe writes its run through these too."""
from tlzoo.runs.directory import (
    atomic_dir,
    check_target,
    environment,
    now,
    read_yaml,
    write_json,
    write_text_atomic,
    write_yaml,
)

# The files of a run directory.
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.keras"
BEST_WEIGHTS = "best.weights.h5"

__all__ = ["BEST_WEIGHTS", "CONFIG_FILE", "METRICS_FILE", "MODEL_FILE", "atomic_dir", "check_target", "environment",
           "now", "read_yaml", "write_json", "write_text_atomic", "write_yaml"]
