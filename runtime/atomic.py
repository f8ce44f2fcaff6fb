"""All-or-nothing writes: a file or a whole folder is written next to its destination under a temporary
name and renamed into place, so no reader (and no crash) ever sees half of it, and what was there stays
intact until the new one is complete. The one implementation for the runtime and for clipsr_export."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def atomic_folder(dest: str | Path, mode: int | None = None) -> Iterator[Path]:
    """Yield an empty staging folder next to `dest`; when the block succeeds it becomes `dest` (an
    existing `dest` is moved aside first, restored if the rename fails, then removed), on any error it
    is removed. `mode`: the folder's permissions (default: as the umask gives). The caller decides
    whether an existing `dest` may be replaced."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        yield stage
        stage.chmod(0o777 & ~_umask() if mode is None else mode)  # mkdtemp makes it private
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.{os.getpid()}.old")
            os.rename(dest, old)
        try:
            os.rename(stage, dest)
        except OSError:
            if old is not None:
                os.rename(old, dest)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
