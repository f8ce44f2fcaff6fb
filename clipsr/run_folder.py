"""A training run folder moves from one saved step to the next as a unit, so a resume never mixes steps.

A save writes every file of the step into `.pending/`, then a manifest (the step and a sha256 per file),
renamed into place last: that rename commits the step. The files then move into the run folder and the
manifest after them. Killed before the commit, the folder still holds the previous step whole and the
pending folder is discarded on resume; killed after it, the resume finishes the move. A resume (and a
checkpoint load) trusts only files whose digest matches the manifest.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from clipsr_runtime.atomic import atomic_write, move_into_place
from clipsr_runtime.manifest import file_sha256

MANIFEST = "run_manifest.json"
CHECKPOINT_FILE = "checkpoint.safetensors"  # the model: weights + config, what export and eval read
PENDING = ".pending"
FORMAT = "clipsr-run"


class RunFolderError(ValueError):
    """A run folder is partial, mixed or damaged: nothing in it is trusted."""


def save_step(out: Path, step: int, writers: dict[str, Callable[[Path], object]]) -> None:
    """Write `writers` (file name -> function writing that file) as the folder's state at `step`."""
    pending = out / PENDING
    shutil.rmtree(pending, ignore_errors=True)
    pending.mkdir(parents=True)
    files = {}
    for name, write in writers.items():
        write(pending / name)
        _fsync(pending / name)
        files[name] = file_sha256(pending / name)
    manifest = json.dumps({"format": FORMAT, "step": step, "files": files}, indent=2) + "\n"
    atomic_write(pending / MANIFEST, lambda tmp: tmp.write_text(manifest), durable=True)
    _finish_pending(out)


def recover(out: Path) -> int:
    """Finish or discard an interrupted save, remove leftover temporary files, verify every file the
    manifest lists, and return its step. Raises RunFolderError (one line, naming the file) otherwise."""
    pending = out / PENDING
    if (pending / MANIFEST).is_file():
        _finish_pending(out)
    else:
        shutil.rmtree(pending, ignore_errors=True)
    for leftover in out.glob(".*.part"):  # atomic_write's temporary files
        if leftover.is_file():
            leftover.unlink()
    manifest_path = out / MANIFEST
    if not manifest_path.is_file():
        raise RunFolderError(f"nothing to resume in {out}: no {MANIFEST} (no step was saved completely, or "
                             f"the run was saved by a clipsr without run manifests)")
    step, files = read_manifest(manifest_path)
    for name, digest in files.items():
        _check_digest(out / name, digest, manifest_path, step)
    return step


def verify_listed(path: Path) -> None:
    """If `path` lies in a run folder whose manifest lists it, check its digest (else nothing to check)."""
    manifest_path = path.parent / MANIFEST
    if manifest_path.is_file():
        step, files = read_manifest(manifest_path)
        if path.name in files:
            _check_digest(path, files[path.name], manifest_path, step)


def read_manifest(path: Path) -> tuple[int, dict[str, str]]:
    """(step, {file name: sha256}) of a run manifest, or a RunFolderError naming it."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunFolderError(f"{path} is not a readable run manifest ({err})") from err
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(files, dict) or not all(
            isinstance(n, str) and "/" not in n and isinstance(d, str) for n, d in files.items()):
        raise RunFolderError(f"{path} is not a clipsr run manifest")
    step = data.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise RunFolderError(f"{path}: step must be a non-negative integer, got {step!r}")
    return step, files


def _check_digest(path: Path, digest: str, manifest_path: Path, step: int) -> None:
    if not path.is_file():
        raise RunFolderError(f"{path} is missing (listed in {manifest_path})")
    if file_sha256(path) != digest:
        raise RunFolderError(f"{path} does not match its sha256 in {manifest_path} (step {step}): the file "
                              f"is damaged or from another step")


def _finish_pending(out: Path) -> None:
    """Move a committed pending step into the run folder; safe to repeat after a kill at any point."""
    pending = out / PENDING
    _, files = read_manifest(pending / MANIFEST)
    for name in files:
        if (pending / name).is_file():
            move_into_place(pending / name, out / name)
    move_into_place(pending / MANIFEST, out / MANIFEST)
    shutil.rmtree(pending)


def _fsync(path: Path) -> None:
    """Flushed to disk before the manifest that vouches for it is written."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
