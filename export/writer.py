"""All-or-nothing output folders: everything is written into a hidden temporary folder next to the
destination and renamed into place at the end, so a failed or interrupted export leaves nothing
half-written. An existing model folder is replaced only when asked (`overwrite`), and stays intact
until the new one is complete; a folder that is not a model is never replaced.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from clipsr_runtime.atomic import atomic_folder
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
        with atomic_folder(dest) as stage:
            yield stage
    except OSError as err:
        raise OutputError(f"cannot write to {dest.parent}: {err.strerror or err}") from err
