"""Where a data path is looked up. A module of its own, without the data readers, so that the command line
checks that files exist before it loads anything heavy."""
from __future__ import annotations

import os
from pathlib import Path


def resolve_path(source: str | os.PathLike[str]) -> Path:
    """``source`` as a path; a relative path that does not exist is looked up under ``$TLZOO_DATA_DIR``."""
    path = Path(source).expanduser()
    if not path.exists() and not path.is_absolute() and os.environ.get("TLZOO_DATA_DIR"):
        alt = Path(os.environ["TLZOO_DATA_DIR"]) / source
        if alt.exists():
            return alt
    return path
