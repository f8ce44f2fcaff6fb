"""`clipsr-run INPUT PROMPT`: upscale an image or a folder of images with a text prompt.

Heavy imports (numpy, Pillow, onnxruntime) happen inside the command, so `--help` is instant.
Every error is one line on stderr (exit 2: the command line cannot work as given; 1: a failure). All
outputs are planned before the model loads: nothing overwrites an input or another output. A folder
run reports bad files, goes on, and exits 1 at the end. With --server the same run happens with the
model on a Triton server: only the upscaler and the number of files in flight differ.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from clipsr_runtime.cli_errors import OneLineErrorsCommand
from clipsr_runtime.errors import OptionError

if TYPE_CHECKING:  # the upscaler imports numpy and onnxruntime: not for --help
    from clipsr_runtime.jobs import Job
    from clipsr_runtime.upscaler import Plan, Upscaler

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
    server: str | None = None  # a Triton server's URL: its model runs, `threads` files in flight


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
    backend: str = typer.Option("auto", help="auto | ort | trt | ort-cpu | ort-cuda | ort-trt | openvino."),
    precision: str = typer.Option("fp32", help="fp32 | fp16 | int8 (CPU; fp16 falls back to fp32 on NaN/Inf)."),
    fit: str = typer.Option("auto", help="auto | tile | resize: inputs that are not the model's LR size."),
    tile: Optional[int] = typer.Option(None, help="Tile side in input pixels (default: the model's LR size). A "
                                                  "model exported with a fixed LR shape takes only that size "
                                                  "(the built-in one: 16); a dynamic one any size >= 1."),
    tile_pad: Optional[int] = typer.Option(None, help="Tile overlap in input pixels, 0..tile/2 (default: LR "
                                                      "size / 4)."),
    batch: int = typer.Option(4, help="Tiles per generator call."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for ONNX Runtime; with --server, files in "
                                                     "flight (default 8)."),
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
    server: Optional[str] = typer.Option(None, help="Upscale on a Triton server: http://host:8000 or "
                                                    "grpc://host:8001 (docs/serving.md)."),
) -> None:
    """Upscale INPUT guided by PROMPT; writes INPUT_x<scale>.<ext> next to it, or into -o."""
    if overwrite and skip_existing:
        raise OptionError("--overwrite and --skip-existing contradict each other: give one")
    options = RunOptions(input=input, prompt=prompt, output=output, model=model, backend=backend,
                         precision=precision, fit=fit, tile=tile, tile_pad=tile_pad, batch=batch, threads=threads,
                         ext=ext, recursive=recursive, prompts=prompts, suffix=suffix,
                         existing="overwrite" if overwrite else "skip" if skip_existing else "refuse",
                         outscale=outscale, max_output_pixels=max_output_pixels, server=server)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.simplefilter("always")
        failed = _run(options)
    if failed:
        raise typer.Exit(1)


def _check_choices(opts: RunOptions) -> str | None:
    """Choices and the prompt, before any file is read; returns the normalised --ext."""
    from clipsr_runtime.backends import BACKENDS, check_threads
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
    if opts.server is not None:
        local = [flag for flag, given in (("--model", opts.model is not None), ("--backend", opts.backend != "auto"),
                                          ("--precision", opts.precision != "fp32")) if given]
        if local:
            raise OptionError(f"{', '.join(local)} cannot apply with --server: the server's repository decides "
                              "model, backend and precision")
    check_threads(opts.threads, "--threads")  # CPU threads, or files in flight with --server
    return ext


class _Bars:
    """A bar over the images of a folder run and one over the tiles of an image of many tiles; rich
    draws them on a terminal and prints their last state once elsewhere. Nothing shows until needed."""

    def __init__(self, images: int | None, tile_bar: bool) -> None:
        self._tile_bar = tile_bar  # one image's tiles at a time: not with several files in flight
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
        if plan.tiles <= FEW_TILES or not self._tile_bar:
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


@dataclass(frozen=True)
class _Engine:
    """Where a run's model runs: its scale names the outputs, `open()` gives the upscaler once every
    output is planned, and `in_flight` files are upscaled at once."""

    scale: int
    open: Callable[[], Upscaler]
    in_flight: int


def _fitting(opts: RunOptions) -> dict[str, object]:
    """The upscaler options a local model and a server share: fitting, batching, output size."""
    fitting: dict[str, object] = dict(fit=opts.fit, tile=opts.tile, tile_pad=opts.tile_pad, batch=opts.batch,
                                      outscale=opts.outscale)
    if opts.max_output_pixels is not None:
        fitting["max_output_pixels"] = opts.max_output_pixels
    return fitting


def _local(opts: RunOptions) -> _Engine:
    """The model folder's scale from its manifest; the networks load only when opened. One file at a
    time: ONNX Runtime spreads each over the threads."""
    from clipsr_runtime.manifest import default_model_dir, load_manifest
    from clipsr_runtime.upscaler import Upscaler

    model_dir = opts.model if opts.model is not None else default_model_dir()
    return _Engine(load_manifest(model_dir).scale,
                   lambda: Upscaler(model_dir, backend=opts.backend, precision=opts.precision, threads=opts.threads,
                                    **_fitting(opts)),
                   1)


def _remote(opts: RunOptions) -> _Engine:
    """The server is asked for its model's scale; several files in flight let it batch them."""
    from clipsr_runtime.triton.client import DEFAULT_IN_FLIGHT, RemoteUpscaler

    upscaler = RemoteUpscaler(opts.server, **_fitting(opts))
    return _Engine(upscaler.manifest.scale, lambda: upscaler, opts.threads or DEFAULT_IN_FLIGHT)


_T = TypeVar("_T")
_R = TypeVar("_R")


def _each(work: Callable[[_T], _R], items: Iterable[_T], in_flight: int) -> Iterator[_R]:
    """work(item) for every item, `in_flight` at a time, results in order. One at a time runs on this
    thread, so Ctrl-C stops it at once; on a pool, Ctrl-C cancels the items not started."""
    if in_flight == 1:
        yield from map(work, items)
        return
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        yield from pool.map(work, items)


def _run(opts: RunOptions) -> int:
    """Does the work; returns the number of failed images."""
    ext = _check_choices(opts)
    from clipsr_runtime.atomic import remove_stale_parts
    from clipsr_runtime.jobs import plan_jobs
    from clipsr_runtime.prompt_files import load_prompts

    per_image = load_prompts(opts.prompts) if opts.prompts else {}
    engine = _remote(opts) if opts.server is not None else _local(opts)
    suffix = f"_x{engine.scale}" if opts.suffix is None else opts.suffix
    jobs, skipped = plan_jobs(opts.input, opts.output, suffix, ext, opts.recursive, opts.existing)
    stale = remove_stale_parts([job.dst for job in jobs + skipped])
    if stale:
        _say("info", f"removed {stale} partial file(s) an interrupted run left next to these outputs")
    with engine.open() as upscaler:  # frees sessions, engines and GPU memory however the run ends
        if opts.prompt != "-":
            upscaler.encode_prompt(opts.prompt)  # an unusable prompt is one error, not one per image
        _say("info", f"model {upscaler.manifest.name} ({upscaler.manifest.root}), {upscaler.runs_on}")
        if skipped:
            _say("info", f"{len(skipped)} output(s) exist already, kept (--skip-existing)")
        folder = opts.input.is_dir()
        bars = _Bars(len(jobs) if folder else None, tile_bar=min(engine.in_flight, len(jobs)) == 1)

        def upscale(job: Job) -> bool:
            """One image; a failure is said here (as it happens) and the run goes on."""
            try:
                text = per_image.get(job.rel, per_image.get(job.src.name, opts.prompt))
                if text == "-":
                    raise ValueError(f"{job.src}: no prompt for it in {opts.prompts}")
                job.dst.parent.mkdir(parents=True, exist_ok=True)
                upscaler.upscale_file(job.src, job.dst, text, on_plan=lambda plan: bars.planned(job.rel, plan),
                                      progress=bars.tiles_done, overwrite=opts.existing == "overwrite")
            except (ValueError, OSError, RuntimeError) as exc:
                _say("error", str(exc) if str(job.src) in str(exc) else f"{job.src}: {exc}")
                return False
            return True

        written = failed = 0
        try:
            for job, ok in zip(jobs, _each(upscale, jobs, engine.in_flight)):
                written, failed = written + ok, failed + (not ok)
                if ok and not folder:
                    print(job.dst)
                bars.image_done()
        finally:
            bars.close()
        info = upscaler.prompt_cache_info()
        kept = f", {len(skipped)} kept" if skipped else ""
        _say("done", f"{written} written, {failed} failed{kept}, {info.misses} prompt(s) encoded "
                     f"({upscaler.runs_on})")
        return failed


def main() -> None:
    """Console-script entry point."""
    app(prog_name="clipsr-run")
