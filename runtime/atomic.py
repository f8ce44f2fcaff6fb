"""All-or-nothing writes: a file or a whole folder is written next to its destination under a temporary
name and renamed into place, so no reader (and no crash) ever sees half of it, and what was there stays
intact until the new one is complete. The one implementation for every package: the runtime, clipsr_export
and clipsr (checkpoints, training state, run folders) all write through it."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_RENAME_NOREPLACE = 1  # linux/fs.h


def _rename_noreplace(source: str, target: Path) -> None:
    """renameat2(RENAME_NOREPLACE): one step that fails if `target` exists, for file systems without
    hard links; OSError where the C library or the file system lacks it."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOTSUP, "this system can neither hard-link nor rename without replacing")
    at_cwd = -100  # AT_FDCWD
    if renameat2(at_cwd, os.fsencode(source), at_cwd, os.fsencode(str(target)), _RENAME_NOREPLACE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(target))


def _move_without_replacing(source: str, target: Path) -> None:
    """Move `source` onto `target` only if `target` does not exist at that moment (FileExistsError
    otherwise): a check made earlier cannot see a file another process writes meanwhile."""
    try:
        os.link(source, target)  # fails with EEXIST, atomically, if the target appeared
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        _rename_noreplace(source, target)
        return
    os.unlink(source)


def atomic_write(path: str | Path, write: Callable[[Path], object], replace: bool = True,
                 durable: bool = False) -> Path:
    """Call `write(tmp)` to fill a unique temporary file next to `path` (created empty, in a folder made
    if missing), then rename it onto `path`; on any failure it is removed and `path` is untouched.
    `replace=False`: FileExistsError if `path` exists when the new file is complete. `durable`: the
    file is on disk before it takes the name (for a file that vouches for others)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        write(Path(name))
        if durable:
            with open(name, "rb") as written:
                os.fsync(written.fileno())
        os.chmod(name, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        if replace:
            os.replace(name, path)
        else:
            _move_without_replacing(name, path)
    finally:
        Path(name).unlink(missing_ok=True)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_parts(targets: list[Path]) -> int:
    """Remove the temporary files `atomic_write` left for these targets when its process was killed
    (the writer's pid is in the name, and it is gone); a live writer's file is kept. Returns how many."""
    wanted: dict[Path, set[str]] = {}
    for target in targets:
        wanted.setdefault(target.parent, set()).add(target.name)
    removed = 0
    for folder, names in wanted.items():
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            match = re.fullmatch(r"\.(.+)\.(\d+)\.[^.]+\.part", entry.name)
            if match and match[1] in names and not _alive(int(match[2])) and entry.is_file():
                entry.unlink(missing_ok=True)
                removed += 1
    return removed


def move_into_place(source: Path, target: Path) -> None:
    """Rename `source` (written whole beside `target`, same file system) onto `target` in one step:
    readers see the old file or the new one."""
    os.replace(source, target)


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
