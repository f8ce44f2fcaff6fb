"""One atomic-write helper for every package (clipsr_runtime.atomic: the runtime, the export and clipsr
use it), and it keeps its promise for files and whole folders."""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from clipsr_runtime.atomic import atomic_folder, atomic_write

ROOT = Path(__file__).resolve().parents[1]
RENAMES = {("os", "replace"), ("os", "rename"), ("tempfile", "mkstemp"), ("tempfile", "NamedTemporaryFile")}


def _renaming_modules(package: str) -> set[str]:
    """Modules of a package that call os.replace/os.rename or make temporary files themselves."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Name) and (node.func.value.id, node.func.attr) in RENAMES:
                found.add(path.relative_to(ROOT).as_posix())
    return found


@pytest.mark.parametrize("package, allowed", [("clipsr", set()), ("runtime", {"runtime/atomic.py"}),
                                              ("export", set())])
def test_one_atomic_write_helper_serves_every_package(package, allowed):
    assert _renaming_modules(package) == allowed


def test_runtime_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path):
    target = tmp_path / "engine.bin"
    target.write_bytes(b"old")

    def fail(tmp):
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["engine.bin"]
    atomic_write(target, lambda tmp: tmp.write_bytes(b"new"))
    mask = os.umask(0)
    os.umask(mask)
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["engine.bin"]


def test_runtime_atomic_folder_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    dest = tmp_path / "repo"
    with atomic_folder(dest) as stage:
        (stage / "a.txt").write_text("first")
        assert not dest.exists()  # nothing at the destination until the block succeeds
    assert [p.name for p in dest.iterdir()] == ["a.txt"]
    with pytest.raises(RuntimeError, match="midway"):
        with atomic_folder(dest) as stage:
            (stage / "b.txt").write_text("second")
            raise RuntimeError("midway")
    assert [p.name for p in dest.iterdir()] == ["a.txt"] and [p.name for p in tmp_path.iterdir()] == ["repo"]
    real_rename = os.rename

    def rename_fails_into_place(src, dst):
        if Path(src).name.endswith(".partial"):
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_fails_into_place)
    with pytest.raises(OSError, match="No space left"):
        with atomic_folder(dest) as stage:
            (stage / "c.txt").write_text("third")
    assert [p.name for p in dest.iterdir()] == ["a.txt"] and [p.name for p in tmp_path.iterdir()] == ["repo"]
    monkeypatch.undo()
    with atomic_folder(dest, mode=0o750) as stage:
        (stage / "d.txt").write_text("fourth")
    assert [p.name for p in dest.iterdir()] == ["d.txt"] and dest.stat().st_mode & 0o777 == 0o750


def test_a_write_without_replace_keeps_a_file_that_appeared_meanwhile(tmp_path):
    target = tmp_path / "out.png"

    def racing(tmp):  # another process finishes the same target while this one writes
        target.write_bytes(b"theirs")
        tmp.write_bytes(b"ours")

    with pytest.raises(FileExistsError):
        atomic_write(target, racing, replace=False)
    assert target.read_bytes() == b"theirs" and [p.name for p in tmp_path.iterdir()] == ["out.png"]
    atomic_write(tmp_path / "new" / "fresh.png", lambda tmp: tmp.write_bytes(b"ours"), replace=False)
    assert (tmp_path / "new" / "fresh.png").read_bytes() == b"ours"  # its folder made on the way
