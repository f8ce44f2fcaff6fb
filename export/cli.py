"""`clipsr-export`: a trained model (checkpoint; the built-in demo by default) -> a model folder for the
torch-free runtime (ONNX, FP16, TensorRT engines, model.json), checked against PyTorch.

Heavy imports (torch, onnx) happen inside the command, so `--help` is instant. Every error is one
line on stderr (exit status 2 for usage, 1 for failures), with nothing written.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from clipsr_runtime.cli_errors import OneLineErrorsCommand
from clipsr_runtime.errors import OptionError
from clipsr_runtime.manifest import PRECISIONS

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Export a CLIP-SR model to ONNX / FP16 / TensorRT with a model.json manifest.")
_err = Console(stderr=True, highlight=False, soft_wrap=True)


@app.command(cls=OneLineErrorsCommand)
def export(
    scale: Optional[int] = typer.Option(None, help="4 | 8 | 16 (LR 64/32/16 px -> 256 px). Without --checkpoint: "
                                                   "the built-in demo of that scale (default 16); with one: only "
                                                   "checked (the checkpoint records its scale)."),
    checkpoint: Optional[Path] = typer.Option(None, help="A clipsr checkpoint, or the authors' CLIP-SR checkpoint "
                                                         "(state_epoch_220.pth, with --clip-weights) (default: the "
                                                         "built-in demo)."),
    clip_weights: Optional[str] = typer.Option(None, help="CLIP weights for the authors' checkpoint (it holds none): "
                                                          "an open_clip tag ('openai') or a local OpenAI/open_clip "
                                                          "state dict (.pt or .safetensors)."),
    preset: Optional[str] = typer.Option(None, help="tiny | synthbirds | paper-b32 | cub-reference: checked against "
                                                    "the checkpoint, or the preset of a --random model."),
    random: bool = typer.Option(False, "--random", help="Untrained model of --preset (benchmarks, tests)."),
    out: Optional[Path] = typer.Option(None, help="Model folder to write (default: ./<name>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the model folder --out if it exists."),
    name: Optional[str] = typer.Option(None, help="Model name in model.json (default: the checkpoint's stem, or "
                                                  "a training run's folder name)."),
    precision: str = typer.Option("fp32,fp16", help=f"Comma-separated, from {' | '.join(PRECISIONS)}; fp32 is "
                                                    "required; int8 (CPU) is written only if it passes its gate."),
    trt: bool = typer.Option(False, "--trt", help="Also build TensorRT engines (needs TensorRT and a GPU)."),
    batch_max: int = typer.Option(4, help="Largest batch of the TensorRT profiles (the runtime's --batch)."),
    opset: int = typer.Option(18, help="ONNX opset."),
) -> None:
    """Write the model folder; fails (exit 1, nothing written) when ONNX and PyTorch disagree."""
    _export(scale, checkpoint, clip_weights, preset, random, out, overwrite, name, precision, trt, batch_max, opset)


def _export(scale: int | None, checkpoint: Path | None, clip_weights: str | None, preset: str | None, random: bool,
            out: Path | None, overwrite: bool, name: str | None, precision: str, trt: bool, batch_max: int,
            opset: int) -> None:
    from clipsr.config import check_scale
    from clipsr_export.pipeline import ExportOptions, default_name, export_model, load_model
    from clipsr_export.writer import check_destination

    # Every check that can fail fast runs before the model loads: options, TensorRT, the destination.
    # A value no export could use is a usage error (exit 2); what follows from the files is a failure (1).
    try:
        if random and checkpoint is not None:
            raise ValueError("--random and --checkpoint exclude each other")
        if scale is not None:
            check_scale(scale)
        options = ExportOptions(precisions=tuple(dict.fromkeys(p.strip() for p in precision.split(",") if p.strip())),
                                opset=opset, trt=trt, batch_max=batch_max, overwrite=overwrite,
                                name=name or default_name(checkpoint, preset, scale, random))
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    if trt:
        from clipsr_export.tensorrt import require_tensorrt

        require_tensorrt()
    folder = out or Path(options.name)
    check_destination(folder, overwrite)
    model, source = load_model(checkpoint, preset, scale, random, clip_weights)
    steps = options.steps()
    with Progress(TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=_err, transient=True) as progress:
        task = progress.add_task("export", total=len(steps))

        def on_step(step: str) -> None:
            progress.update(task, description=step, completed=steps.index(step))

        result = export_model(model, folder, options, source=source, on_step=on_step)
        progress.update(task, completed=len(steps))
    for step, seconds in result.seconds.items():
        _err.print(f"  {step:<32} {seconds:7.2f} s", markup=False)
    for prec, figures in result.manifest["parity"].items():
        _err.print(f"  parity {prec}: " + ", ".join(f"{k} {v:.7g}" if k == "text_cosine" else f"{k} {v:.3g}" for k, v in figures.items()), markup=False)
    _err.print(f"wrote {result.folder} ({result.manifest['name']}, {result.manifest['scale']}x, "
               f"{', '.join(options.precisions)}{', TensorRT' if trt else ''})", markup=False)


def main() -> None:
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that a CLIP built for loading has no weights yet
    app()
