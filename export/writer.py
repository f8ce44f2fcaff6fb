"""All-or-nothing output folders: everything is written into a hidden temporary folder next to the
destination and renamed into place at the end, so a failed or interrupted export leaves nothing
half-written. An existing model folder is replaced only when asked (`overwrite`), and stays intact
until the new one is complete; a folder that is not a model is never replaced.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from clipsr_runtime.manifest import MANIFEST


class OutputError(ValueError):
    """The destination folder cannot be written or would overwrite something that is not a model."""


def check_destination(dest: Path, overwrite: bool = False) -> None:
    """A destination must be absent, an empty folder, or (with `overwrite`) an earlier model folder,
    which is then replaced whole. Cheap: run it before any slow work."""
    dest = Path(dest).absolute()
    if dest.exists() and not dest.is_dir():
        raise OutputError(f"output {dest} exists and is not a folder")
    blocker = next(p for p in dest.parents if p.exists())
    if not blocker.is_dir():
        raise OutputError(f"cannot write to {dest}: {blocker} is a file, not a folder")
    if not dest.is_dir() or not any(dest.iterdir()):
        return
    if not (dest / MANIFEST).is_file():
        raise OutputError(f"output folder {dest} is not empty and holds no {MANIFEST}: "
                          "refusing to replace it (choose another --out)")
    if not overwrite:
        raise OutputError(f"output folder {dest} already holds a model: pass --overwrite to replace it")


@contextlib.contextmanager
def staged_folder(dest: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder; on success it becomes `dest`, on any error it is removed."""
    dest = Path(dest).absolute()
    check_destination(dest, overwrite)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    except OSError as err:
        raise OutputError(f"cannot write to {dest.parent}: {err.strerror or err}") from err
    try:
        yield stage
        stage.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a model folder is ordinary
        _replace(stage, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace(stage: Path, dest: Path) -> None:
    """Rename `stage` to `dest`; an existing `dest` is moved aside first and restored on failure."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.{os.getpid()}.old")
        os.rename(dest, old)
    try:
        os.rename(stage, dest)
    except OSError as err:
        if old is not None:
            os.rename(old, dest)
        raise OutputError(f"cannot move the export into {dest}: {err.strerror or err}") from err
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
