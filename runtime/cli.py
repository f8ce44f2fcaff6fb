"""`clipsr-run INPUT PROMPT`: upscale an image or a folder of images with a text prompt.

Heavy imports (numpy, Pillow, onnxruntime) happen inside the command, so `--help` is instant.
Every failure is one line on stderr; a folder run reports bad files, goes on, and exits 1 at the end.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Text-guided super-resolution with an exported CLIP-SR model (torch-free).")
_err = Console(stderr=True, highlight=False, soft_wrap=True)
_EXTS = ("png", "jpg", "webp", "tif")


def _say(kind: str, message: str) -> None:
    _err.print(f"{kind}: {message}", markup=False)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    _say("warning", str(message))


def _image_files(folder: Path, recursive: bool, suffix: str) -> list[Path]:
    """Files with an image extension Pillow reads; earlier outputs (stem ends with suffix) skipped."""
    from PIL import Image

    readable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in readable
                  and not p.stem.endswith(suffix))


def _load_prompts(path: Path) -> dict[str, str]:
    """image (path relative to INPUT, or file name) -> prompt, from a .csv (image,prompt) or .jsonl."""
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path}: no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if rows and not {"image", "prompt"} <= rows[0].keys():
            raise ValueError(f"prompt file {path}: needs the header columns 'image,prompt'")
    elif path.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"prompt file {path}, line {number}: invalid JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or not {"image", "prompt"} <= row.keys():
                raise ValueError(f"prompt file {path}, line {number}: needs keys 'image' and 'prompt'")
            rows.append(row)
    else:
        raise ValueError(f"prompt file {path}: use a .csv or .jsonl file")
    return {str(row["image"]).replace("\\", "/"): str(row["prompt"]) for row in rows}


def _output_path(src: Path, root: Path, output: Path | None, suffix: str, ext: str | None) -> Path:
    """Next to the input with a suffix, or under -o (a folder, or the file itself for one input)."""
    new_name = src.stem + suffix + (f".{ext}" if ext else src.suffix)
    if output is None:
        return src.with_name(new_name)
    if src == root and not output.is_dir() and output.suffix:
        return output
    return output / (src.relative_to(root).parent if root.is_dir() else Path()) / new_name


@app.command()
def run(
    input: Path = typer.Argument(..., help="An image file or a folder of images."),
    prompt: str = typer.Argument(..., help="Caption, e.g. 'a bird with a red crown'; '-' with --prompts."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file or folder."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder (default: the built-in one)."),
    backend: str = typer.Option("auto", help="auto | ort | trt | ort-cpu | ort-cuda | ort-trt."),
    precision: str = typer.Option("fp32", help="fp32 | fp16 (fp16 falls back to fp32 on NaN/Inf)."),
    fit: str = typer.Option("auto", help="auto | tile | resize: inputs that are not the model's LR size."),
    tile: Optional[int] = typer.Option(None, help="Tile side in input pixels (default: LR size)."),
    tile_pad: Optional[int] = typer.Option(None, help="Tile overlap in input pixels (default: LR size / 4)."),
    batch: int = typer.Option(4, help="Tiles per generator call."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for ONNX Runtime; with --server, "
                                                     "concurrent requests (default 8)."),
    ext: Optional[str] = typer.Option(None, help="Output format: png | jpg | webp | tif (default: input's)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    prompts: Optional[Path] = typer.Option(None, help="Per-image prompts: .csv (image,prompt) or .jsonl."),
    suffix: Optional[str] = typer.Option(None, help="Output name suffix (default: _x<scale>)."),
    server: Optional[str] = typer.Option(None, help="Upscale on a Triton server: http://host:8000 or "
                                                    "grpc://host:8001 (docs/serving.md)."),
) -> None:
    """Upscale INPUT guided by PROMPT; writes INPUT_x<scale>.<ext> next to it, or into -o."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            warnings.simplefilter("always")
            if server:
                from clipsr_runtime.triton.client import run_remote

                failed = run_remote(server, input, prompt, output, fit, tile, tile_pad, batch, threads, ext,
                                    recursive, prompts, suffix)
            else:
                failed = _run(input, prompt, output, model, backend, precision, fit, tile, tile_pad, batch,
                              threads, ext, recursive, prompts, suffix)
    except (ValueError, OSError, RuntimeError) as exc:
        _say("error", str(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        _say("error", "interrupted")
        raise typer.Exit(130) from None
    if failed:
        raise typer.Exit(1)


def _run(input: Path, prompt: str, output: Path | None, model: Path | None, backend: str, precision: str,
         fit: str, tile: int | None, tile_pad: int | None, batch: int, threads: int | None,
         ext: str | None, recursive: bool, prompts: Path | None, suffix: str | None) -> int:
    """Does the work; returns the number of failed images."""
    if not input.exists():
        raise FileNotFoundError(f"{input}: no such file or folder")
    if ext is not None and ext.lower().lstrip(".") not in _EXTS:
        raise ValueError(f"--ext must be one of {', '.join(_EXTS)}, got {ext!r}")
    ext = ext.lower().lstrip(".") if ext else None
    per_image = _load_prompts(prompts) if prompts else {}
    if prompt == "-" and not prompts:
        raise ValueError("PROMPT '-' needs --prompts FILE")
    from clipsr_runtime.upscaler import Upscaler

    upscaler = Upscaler(model, backend=backend, precision=precision, fit=fit, tile=tile, tile_pad=tile_pad,
                        batch=batch, threads=threads)
    if prompt != "-":
        upscaler.encode_prompt(prompt)  # an empty prompt is one error, not one per image
    suffix = f"_x{upscaler.manifest.scale}" if suffix is None else suffix
    _say("info", f"model {upscaler.manifest.name} ({upscaler.manifest.root}), backend "
                 f"{upscaler.backend.name}, {upscaler.backend.precision}")
    sources = _image_files(input, recursive, suffix) if input.is_dir() else [input]
    if input.is_dir() and output is not None:
        output.mkdir(parents=True, exist_ok=True)
    written = failed = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=_err, disable=not input.is_dir()) as progress:
        task = progress.add_task("upscaling", total=len(sources))
        for src in sources:
            try:
                rel = src.relative_to(input).as_posix() if input.is_dir() else src.name
                text = per_image.get(rel, per_image.get(src.name, prompt))
                if text == "-":
                    raise ValueError(f"{src}: no prompt for it in {prompts}")
                dst = _output_path(src, input, output, suffix, ext)
                dst.parent.mkdir(parents=True, exist_ok=True)
                upscaler.upscale_file(src, dst, text)
                written += 1
                if not input.is_dir():
                    print(dst)
            except (ValueError, OSError, RuntimeError) as exc:
                failed += 1
                _say("error", str(exc) if str(src) in str(exc) else f"{src}: {exc}")
            progress.advance(task)
    info = upscaler.prompt_cache_info()
    _say("done", f"{written} written, {failed} failed, {info.misses} prompt(s) encoded "
                 f"({upscaler.backend.name}, {upscaler.backend.precision})")
    return failed


def main() -> None:
    """Console-script entry point."""
    app(prog_name="clipsr-run")
