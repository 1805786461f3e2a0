"""Where tasks/ caches what it builds (glyph masters, face banks), and how it writes there.

The folder is the one the native decode kernels use: ``$INNATE_CACHE_DIR``,
else ``$XDG_CACHE_HOME/innate``, else ``~/.cache/innate``. Files are written
beside their place and renamed over it, so a reader never sees half a file
and processes that build the same file at once each leave a whole one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("INNATE_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "innate"


def write_atomic(path: Path, data: bytes) -> None:
    """`path` holds either what it held or all of `data` (fsynced), never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
