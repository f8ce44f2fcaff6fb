"""Write a file through a temporary sibling and a rename, so readers never see half a file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` and move tmp onto `path`; on failure nothing is left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors writes 0600; a shared model file should be readable
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def move_into_place(source: Path, target: Path) -> None:
    """Rename `source` (written whole beside `target`, same file system) onto `target` in one step:
    readers see the old file or the new one."""
    os.replace(source, target)
