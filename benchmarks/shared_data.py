"""Where the benchmarks find the real data sets: $TLZOO_DATA_DIR, else ../shared/data."""
from __future__ import annotations

import os
import platform
from pathlib import Path

HERE = Path(__file__).resolve().parent


def find_data(name: str = "pneumoniamnist.npz") -> Path:
    for base in (os.environ.get("TLZOO_DATA_DIR"), HERE.parent.parent / "shared" / "data"):
        if base and (Path(base) / name).is_file():
            return Path(base) / name
    raise SystemExit(f"{name} not found: set TLZOO_DATA_DIR")


def cpu_name() -> str:
    """The processor's model name, for the record beside timings."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
