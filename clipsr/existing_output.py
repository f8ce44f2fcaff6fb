"""The rule every command that writes a run folder or a trained file follows: what is there already is
never replaced without an explicit choice. A new output needs a path that does not exist (or an empty
folder); `resume` continues what is there (the command checks it); `restart` moves it aside to
`NAME.old-YYYYmmdd-HHMMSS` when the new output is about to be written, so starting over loses nothing,
even when the work before fails."""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from clipsr_runtime.errors import OptionError

ASIDE = ".old-"


def check_output(path: Path, *, resume: bool = False, restart: bool = False, resumable: bool = True) -> None:
    """OptionError when the choice is missing or contradicts what is on disk; moves nothing, so a command
    can refuse before its work and claim the path when it is about to write. A command whose output is
    written whole at the end (`resumable=False`) offers only --restart, and its message says so."""
    path = Path(path)
    if resume and restart:
        raise OptionError("--resume continues the output that is there, --restart moves it aside: give one")
    if resume and not path.exists():
        raise OptionError(f"nothing to resume: {path} does not exist")
    if not resume and not restart and _holds_something(path):
        resume_hint = "--resume continues it, " if resumable else ""
        raise OptionError(f"{path} exists: {resume_hint}--restart moves it aside to {path.name}{ASIDE}<time> "
                          "and starts over")


def claim_output(path: Path, *, resume: bool = False, restart: bool = False) -> Path | None:
    """`check_output`, then with `restart` move what is there aside; returns where it went, if it moved."""
    path = Path(path)
    check_output(path, resume=resume, restart=restart)
    if not restart or not _holds_something(path):
        return None
    aside = _aside_name(path)
    os.rename(path, aside)  # same folder, so one rename: the earlier output is whole, here or there
    return aside


def write_new_folder(path: Path, fill: Callable[[Path], object], *, restart: bool = False) -> Path | None:
    """Fill a draft folder beside `path` with `fill(draft)`, then claim `path` and rename the draft onto it,
    so `path` is never partial and, when `fill` fails, what was there stays as it was (the draft is removed).
    For a folder written whole (`resumable=False`); returns where the earlier folder went, if it moved."""
    path = Path(path)
    check_output(path, restart=restart, resumable=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.partial-{os.getpid()}")
    draft.mkdir()
    try:
        fill(draft)
        set_aside = claim_output(path, restart=restart)
        draft.rename(path)  # replaces an empty folder; anything else was refused or moved aside above
    except BaseException:
        shutil.rmtree(draft, ignore_errors=True)
        raise
    return set_aside


def _holds_something(path: Path) -> bool:
    if path.is_dir() and not path.is_symlink():
        return any(path.iterdir())
    return path.exists() or path.is_symlink()


def _aside_name(path: Path) -> Path:
    """`NAME.old-<UTC time>`, numbered when two restarts fall in the same second."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    candidate, n = path.with_name(f"{path.name}{ASIDE}{stamp}"), 1
    while candidate.exists() or candidate.is_symlink():
        candidate, n = path.with_name(f"{path.name}{ASIDE}{stamp}-{n}"), n + 1
    return candidate
