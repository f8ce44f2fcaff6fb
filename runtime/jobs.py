"""Which files a `clipsr-run` call reads and writes, decided for every input before any work, so that
no output overwrites an input, two inputs never share an output, and an existing file is only
replaced (or kept) when the user said so."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from clipsr_runtime.errors import OptionError

EXISTING = ("refuse", "overwrite", "skip")


@dataclass(frozen=True)
class Job:
    """One image to upscale: `rel` is its path relative to the input folder (the prompt-file key)."""

    src: Path
    dst: Path
    rel: str


def _readable_extensions() -> set[str]:
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def _format(ext: str) -> str | None:
    """Pillow's format name for a file extension (".jpeg" and ".jpg" are both JPEG)."""
    return Image.registered_extensions().get(ext.lower())


def image_files(folder: Path, recursive: bool, suffix: str) -> list[Path]:
    """Files with an image extension Pillow reads; earlier outputs (stem ends with a non-empty suffix)
    skipped."""
    readable = _readable_extensions()
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in readable
                  and not (suffix and p.stem.endswith(suffix)))


def _single_target(src: Path, output: Path | None, name: str, ext: str | None) -> Path:
    """Next to the input, into an -o folder, or -o itself when it names a file."""
    if output is None:
        return src.with_name(name)
    if output.is_dir() or not output.suffix:
        return output / name
    if _format(output.suffix) is None:
        raise OptionError(f"-o {output}: cannot write images with extension {output.suffix!r} "
                          "(use .png, .jpg, .webp, .tif)")
    if ext is not None and _format(output.suffix) != _format(f".{ext}"):
        raise OptionError(f"-o {output} is a {_format(output.suffix)} file name but --ext {ext} asks for "
                          f"{_format(f'.{ext}')}: give one of them")
    return output


def _folder_sources(folder: Path, output: Path | None, recursive: bool, suffix: str) -> list[Path]:
    if output is not None and output.exists() and not output.is_dir():
        raise OptionError(f"-o {output} is a file; a folder input needs an output folder")
    if output is not None and not output.exists() and output.suffix.lower() in _readable_extensions():
        raise OptionError(f"-o {output} looks like an image file name, but {folder} is a folder: "
                          "give an output folder")
    sources = image_files(folder, recursive, suffix)
    if not sources:
        skipped = len(image_files(folder, recursive, "")) if suffix else 0
        why = f" ({skipped} skipped: their names end with {suffix!r}, as earlier outputs do)" if skipped else ""
        raise ValueError(f"{folder}: no images to upscale{why}")
    return sources


def plan_jobs(input: Path, output: Path | None, suffix: str, ext: str | None, recursive: bool,
              existing: str = "refuse") -> tuple[list[Job], list[Job]]:
    """(jobs to run, jobs skipped because their output exists); refuses a plan that would lose a file."""
    if existing not in EXISTING:
        raise OptionError(f"existing must be one of {', '.join(EXISTING)}, got {existing!r}")
    if not input.exists():
        raise OptionError(f"{input}: no such file or folder")
    if any(c in suffix for c in "/\\\x00"):
        raise OptionError(f"--suffix {suffix!r} must be part of a file name, not a path (no '/' or '\\')")
    folder = input.is_dir()
    sources = _folder_sources(input, output, recursive, suffix) if folder else [input]
    jobs = []
    for src in sources:
        rel = src.relative_to(input) if folder else Path(src.name)
        name = src.stem + suffix + (f".{ext}" if ext else src.suffix)
        if folder and output is not None:
            dst = output / rel.parent / name
            _refuse_escape(dst, output)  # a sub-folder of -o may be a link to elsewhere
        elif folder:
            dst = src.with_name(name)
        else:
            dst = _single_target(src, output, name, ext)
        jobs.append(Job(src, dst, rel.as_posix()))
    _refuse_lost_files(jobs)
    present = [job for job in jobs if job.dst.exists() or job.dst.is_symlink()]
    if present and existing == "refuse":
        more = f" (and {len(present) - 1} more)" if len(present) > 1 else ""
        raise OptionError(f"{present[0].dst} exists{more}: pass --overwrite to replace or --skip-existing "
                          "to keep existing outputs")
    if existing == "skip":
        return [job for job in jobs if job not in present], present
    return jobs, []


def _refuse_escape(dst: Path, root: Path) -> None:
    """An output lands inside the folder it was planned for, also once links and '..' resolve (the
    file itself may be a link the user made: it is replaced, not followed)."""
    if not (dst.parent.resolve() / dst.name).is_relative_to(root.resolve()):
        raise OptionError(f"{dst} resolves outside {root}: output names are names, not paths")


def _key(path: Path) -> str:
    return os.path.normcase(str(path.resolve()))


def _refuse_lost_files(jobs: list[Job]) -> None:
    """No output may be an input (its own or another's), and no two inputs may share an output."""
    inputs = {_key(job.src): job.src for job in jobs}
    writers: dict[str, Path] = {}
    for job in jobs:
        key = _key(job.dst)
        if key in inputs:
            victim = inputs[key]
            whose = "its own output" if victim == job.src else f"the output of {job.src}"
            raise OptionError(f"{victim} would be overwritten by {whose}: use -o, a non-empty --suffix or "
                              "another --ext")
        if key in writers:
            raise OptionError(f"{writers[key]} and {job.src} would both be written to {job.dst}: drop --ext, or "
                              "upscale them into separate folders")
        writers[key] = job.src
