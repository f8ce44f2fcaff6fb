"""`clipsr-run INPUT PROMPT`: upscale an image or a folder of images with a text prompt.

Heavy imports (numpy, Pillow, onnxruntime) happen inside the command, so `--help` is instant.
Every error is one line on stderr (exit 2: the command line cannot work as given; 1: a failure). All
outputs are planned before the model loads: nothing overwrites an input or another output. A folder
run reports bad files, goes on, and exits 1 at the end.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from clipsr_runtime.cli_errors import OneLineErrorsCommand
from clipsr_runtime.errors import OptionError

if TYPE_CHECKING:  # the upscaler imports numpy and onnxruntime: not for --help
    from clipsr_runtime.upscaler import Plan

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Text-guided super-resolution with an exported CLIP-SR model (torch-free).")
_err = Console(stderr=True, highlight=False, soft_wrap=True)
_EXTS = ("png", "jpg", "webp", "tif")
FEW_TILES = 8  # an image of more tiles gets its own progress bar


@dataclass(frozen=True)
class RunOptions:
    """Everything one `clipsr-run` call was asked to do (the command line, parsed)."""

    input: Path
    prompt: str
    output: Path | None = None
    model: Path | None = None
    backend: str = "auto"
    precision: str = "fp32"
    fit: str = "auto"
    tile: int | None = None
    tile_pad: int | None = None
    batch: int = 4
    threads: int | None = None
    ext: str | None = None
    recursive: bool = False
    prompts: Path | None = None
    suffix: str | None = None
    existing: str = "refuse"  # refuse | overwrite | skip
    outscale: float | None = None
    max_output_pixels: int | None = None


def _say(kind: str, message: str) -> None:
    _err.print(f"{kind}: {message}", markup=False)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    _say("warning", str(message))


@app.command(cls=OneLineErrorsCommand)
def run(
    input: Path = typer.Argument(..., help="An image file or a folder of images."),
    prompt: str = typer.Argument(..., help="Caption, e.g. 'a bird with a red crown'; '-' with --prompts."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Output file (one input) or folder (created if missing)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder (default: the built-in one)."),
    backend: str = typer.Option("auto", help="auto | ort | trt | ort-cpu | ort-cuda | ort-trt."),
    precision: str = typer.Option("fp32", help="fp32 | fp16 (fp16 falls back to fp32 on NaN/Inf)."),
    fit: str = typer.Option("auto", help="auto | tile | resize: inputs that are not the model's LR size."),
    tile: Optional[int] = typer.Option(None, help="Tile side in input pixels (default: the model's LR size). A "
                                                  "model exported with a fixed LR shape takes only that size "
                                                  "(the built-in one: 16); a dynamic one any size >= 1."),
    tile_pad: Optional[int] = typer.Option(None, help="Tile overlap in input pixels, 0..tile/2 (default: LR "
                                                      "size / 4)."),
    batch: int = typer.Option(4, help="Tiles per generator call."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for ONNX Runtime."),
    ext: Optional[str] = typer.Option(None, help="Output format: png | jpg | webp | tif (default: input's)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    prompts: Optional[Path] = typer.Option(None, help="Per-image prompts: .csv (image,prompt) or .jsonl."),
    suffix: Optional[str] = typer.Option(None, help="Output name suffix (default: _x<scale>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs that exist already."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Keep outputs that exist already "
                                                                      "(and skip their inputs)."),
    outscale: Optional[float] = typer.Option(None, help="Final size as a factor of the input, e.g. 4 with a "
                                                        "16x model (default: the model's scale; Lanczos)."),
    max_output_pixels: Optional[int] = typer.Option(None, help="Largest output in pixels, checked before "
                                                               "decoding (default: 67108864 = 8192x8192)."),
) -> None:
    """Upscale INPUT guided by PROMPT; writes INPUT_x<scale>.<ext> next to it, or into -o."""
    if overwrite and skip_existing:
        raise OptionError("--overwrite and --skip-existing contradict each other: give one")
    options = RunOptions(input=input, prompt=prompt, output=output, model=model, backend=backend,
                         precision=precision, fit=fit, tile=tile, tile_pad=tile_pad, batch=batch, threads=threads,
                         ext=ext, recursive=recursive, prompts=prompts, suffix=suffix,
                         existing="overwrite" if overwrite else "skip" if skip_existing else "refuse",
                         outscale=outscale, max_output_pixels=max_output_pixels)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.simplefilter("always")
        failed = _run(options)
    if failed:
        raise typer.Exit(1)


def _check_choices(opts: RunOptions) -> str | None:
    """Choices and the prompt, before any file is read; returns the normalised --ext."""
    from clipsr_runtime.backends import BACKENDS
    from clipsr_runtime.manifest import PRECISIONS
    from clipsr_runtime.tiling import FITS

    for flag, value, allowed in (("--backend", opts.backend, BACKENDS), ("--precision", opts.precision, PRECISIONS),
                                 ("--fit", opts.fit, FITS)):
        if value not in allowed:
            raise OptionError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")
    ext = opts.ext.lower().lstrip(".") if opts.ext is not None else None
    if ext is not None and ext not in _EXTS:
        raise OptionError(f"--ext must be one of {', '.join(_EXTS)}, got {opts.ext!r}")
    if opts.prompt == "-" and not opts.prompts:
        raise OptionError("PROMPT '-' needs --prompts FILE")
    if not opts.prompt.strip():
        raise OptionError("empty prompt: describe the image, e.g. 'a bird with a red crown'")
    return ext


class _Bars:
    """A bar over the images of a folder run and one over the tiles of an image of many tiles; rich
    draws them on a terminal and prints their last state once elsewhere. Nothing shows until needed."""

    def __init__(self, images: int | None) -> None:
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeRemainingColumn(), console=_err)
        self._images = None if images is None else self._progress.add_task("images", total=images)
        self._tiles = None
        self._started = False
        if images is not None:
            self._start()

    def _start(self) -> None:
        self._progress.start()
        self._started = True

    def planned(self, name: str, plan: Plan) -> None:
        """Say the output size up front; a tile bar for an image of many tiles."""
        (w, h), (out_w, out_h) = plan.input_size, plan.size
        tiles = f", {plan.tiles:,} tiles" if plan.mode == "tile" else ""
        if self._images is None:
            _say("info", f"{name}: {w}x{h} -> {out_w}x{out_h} ({plan.mode}{tiles})")
        else:
            self._progress.update(self._images, description=f"{name} -> {out_w}x{out_h}")
        if plan.tiles <= FEW_TILES:
            if self._tiles is not None:
                self._progress.update(self._tiles, visible=False)
            return
        if self._tiles is None:
            self._tiles = self._progress.add_task("tiles", total=plan.tiles)
        else:
            self._progress.reset(self._tiles, total=plan.tiles, visible=True)
        if not self._started:
            self._start()

    def tiles_done(self, count: int) -> None:
        if self._tiles is not None:
            self._progress.advance(self._tiles, count)

    def image_done(self) -> None:
        if self._images is not None:
            self._progress.advance(self._images)

    def close(self) -> None:
        if self._started:
            self._progress.stop()


def _run(opts: RunOptions) -> int:
    """Does the work; returns the number of failed images."""
    ext = _check_choices(opts)
    from clipsr_runtime.jobs import plan_jobs
    from clipsr_runtime.manifest import default_model_dir, load_manifest
    from clipsr_runtime.prompt_files import load_prompts

    per_image = load_prompts(opts.prompts) if opts.prompts else {}
    model_dir = opts.model if opts.model is not None else default_model_dir()
    suffix = f"_x{load_manifest(model_dir).scale}" if opts.suffix is None else opts.suffix
    jobs, skipped = plan_jobs(opts.input, opts.output, suffix, ext, opts.recursive, opts.existing)

    from clipsr_runtime.upscaler import Upscaler

    limit = {} if opts.max_output_pixels is None else {"max_output_pixels": opts.max_output_pixels}
    upscaler = Upscaler(model_dir, backend=opts.backend, precision=opts.precision, fit=opts.fit, tile=opts.tile,
                        tile_pad=opts.tile_pad, batch=opts.batch, threads=opts.threads, outscale=opts.outscale,
                        **limit)
    if opts.prompt != "-":
        upscaler.encode_prompt(opts.prompt)  # an unusable prompt is one error, not one per image
    _say("info", f"model {upscaler.manifest.name} ({upscaler.manifest.root}), backend "
                 f"{upscaler.backend.name}, {upscaler.backend.precision}")
    if skipped:
        _say("info", f"{len(skipped)} output(s) exist already, kept (--skip-existing)")
    folder = opts.input.is_dir()
    written = failed = 0
    bars = _Bars(len(jobs) if folder else None)
    try:
        for job in jobs:
            try:
                text = per_image.get(job.rel, per_image.get(job.src.name, opts.prompt))
                if text == "-":
                    raise ValueError(f"{job.src}: no prompt for it in {opts.prompts}")
                job.dst.parent.mkdir(parents=True, exist_ok=True)
                upscaler.upscale_file(job.src, job.dst, text, on_plan=lambda plan: bars.planned(job.rel, plan),
                                      progress=bars.tiles_done)
                written += 1
                if not folder:
                    print(job.dst)
            except (ValueError, OSError, RuntimeError) as exc:
                failed += 1
                _say("error", str(exc) if str(job.src) in str(exc) else f"{job.src}: {exc}")
            bars.image_done()
    finally:
        bars.close()
    info = upscaler.prompt_cache_info()
    kept = f", {len(skipped)} kept" if skipped else ""
    _say("done", f"{written} written, {failed} failed{kept}, {info.misses} prompt(s) encoded "
                 f"({upscaler.backend.name}, {upscaler.backend.precision})")
    return failed


def main() -> None:
    """Console-script entry point."""
    app(prog_name="clipsr-run")
