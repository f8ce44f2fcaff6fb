"""Write a file through a temporary sibling and a rename, so no reader (and no crash) ever sees half a
file and an existing file stays intact until the new one is complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(fh)` with a unique temporary file next to `path` open for binary writing, then
    rename it onto `path`; on any failure the temporary file is removed and `path` is untouched."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(name, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(name, path)
    finally:
        Path(name).unlink(missing_ok=True)
    return path
