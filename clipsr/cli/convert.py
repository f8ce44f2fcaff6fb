"""clipsr-convert: a checkpoint of another layout (the authors' CLIP-SR `state_epoch_220.pth`) -> a
clipsr checkpoint (safetensors, config and CLIP included), written once, so that training (`--init`),
evaluation and export then use it like any other. The layout is recognised from the file's keys."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from clipsr_runtime.cli_errors import OneLineErrorsCommand
from clipsr_runtime.errors import OptionError

from .common import run_app

app = typer.Typer(add_completion=False, help=__doc__)


@app.command(cls=OneLineErrorsCommand)
def convert(
    checkpoint: Path = typer.Argument(..., metavar="CHECKPOINT",
                                      help="The checkpoint to convert (e.g. state_epoch_220.pth)."),
    out: Path = typer.Option(..., "--out", "-o", help="The clipsr checkpoint to write (.safetensors)."),
    clip_weights: Optional[str] = typer.Option(
        None, help="The frozen CLIP's weights (their checkpoint has none): an open_clip tag ('openai', from "
                   "open_clip's cache or downloaded) or a local OpenAI/open_clip state dict (.pt or .safetensors)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
) -> None:
    """Write OUT from CHECKPOINT; nothing is written when the checkpoint is refused."""
    if out.suffix != ".safetensors":
        raise OptionError(f"--out must end in .safetensors, got {out}")
    if out.exists() and not overwrite:
        raise OptionError(f"{out} exists (pass --overwrite to replace it)")
    from ..checkpoint import save_checkpoint
    from ..factory import create_model

    model = create_model(checkpoint, clip_weights=clip_weights)
    save_checkpoint(model, out, converted_from=checkpoint.name)
    card = model.card or {}
    dead = card.get("parameters", {}).get("checkpoint_dead")
    typer.echo(f"wrote {out} ({model.config.preset}, {model.scale}x"
               + (f"; {dead:,} parameters of modules that never reach the output left out" if dead else "") + ")",
               err=True)


def main() -> None:
    run_app(app)
