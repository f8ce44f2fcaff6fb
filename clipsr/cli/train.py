"""clipsr-train: train CLIP-SR (stage "sr") or a small CLIP for it (stage "clip"). What a run guarantees
(its folder never replaced, exact resume, DDP, AMP) is clipsr/training_run.py's."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import typer
from clipsr_runtime.cli_errors import OneLineErrorsCommand
from clipsr_runtime.errors import OptionError

from ..existing_output import check_output
from ..train_config import CONFIG_FILE, STAGES, RunConfig, flag, load_config, parse_assignments
from .common import run_app

app = typer.Typer(add_completion=False, help=__doc__)
CHOICES = ("stage", "resume", "restart")  # how to run, not what: no config field
FIELDS = {"set_": "model", "data_opt": "data_options"}


@app.command(cls=OneLineErrorsCommand)
def train(
    ctx: typer.Context,
    stage: str = typer.Option("sr", help="sr: CLIP-SR; clip: contrastive pre-training of the preset's CLIP"),
    preset: str = typer.Option("tiny", help="model preset (clipsr/model_configs): tiny, synthbirds (tiny + the text "
                                            "palette of the demo), paper-b32 or cub-reference (the authors' released "
                                            "generator, 4x)"),
    scale: int = typer.Option(16, help="4, 8 or 16"),
    dataset: str = typer.Option("synthbirds", help="synthbirds, cub, coco, celeba or jsonl"),
    data_root: Optional[Path] = typer.Option(None, help="dataset folder (or .jsonl file)"),
    out: Path = typer.Option(Path("runs/clipsr"), "--out", "-o", help="run folder: checkpoints, config, metrics"),
    steps: int = typer.Option(1000, help="optimisation steps in all (a resumed run continues to this)"),
    batch_size: int = typer.Option(16, help="global batch (split over torchrun processes)"),
    lr_g: float = typer.Option(1e-4, help="stage sr: generator learning rate"),
    lr_d: float = typer.Option(4e-4, help="stage sr: discriminator learning rate"),
    lambda_adv: float = typer.Option(0.01, help="stage sr: adversarial weight; 0 trains without the discriminator"),
    alpha: float = typer.Option(4.0, help="stage sr: weight of the text-image similarity in G's adversarial loss"),
    ma_gp_k: float = typer.Option(2.0, help="stage sr: MA-GP weight k (k * mean |grad|^p)"),
    ma_gp_p: float = typer.Option(6.0, help="stage sr: MA-GP power p"),
    l1_weight: float = typer.Option(1.0, help="stage sr: weight of the L1 term"),
    perceptual: str = typer.Option("imagenet", help="stage sr: VGG-19 weights: imagenet, a file, random or off "
                                                    "(or none)"),
    part_loss: float = typer.Option(1.0, help="stage sr: weight of the text palette's part-choice loss (batches "
                                              "with part labels)"),
    init: Optional[Path] = typer.Option(None, help="stage sr: fine-tune from this checkpoint's model and weights "
                                                   "(fresh optimisers, step 0; --preset/--scale must match, no --set)"),
    clip_lr: float = typer.Option(5e-4, help="stage clip: AdamW learning rate"),
    attribute_loss: float = typer.Option(0.0, help="stage clip: weight of a head reading each caption attribute "
                                                   "from F_T (synthbirds: --data-opt attributes=true)"),
    seed: int = typer.Option(0), device: str = typer.Option("auto", help="auto, cpu, cuda"),
    amp: str = typer.Option("off", help="off, bf16 or fp16 (CUDA only)"),
    num_workers: int = typer.Option(-1, help="data loader workers (-1: 0 on CPU, 4 on CUDA)"),
    ckpt_every: int = typer.Option(200), log_every: int = typer.Option(10),
    set_: list[str] = typer.Option([], "--set", help="model override, e.g. generator.use_text=false, clip.pretrained=PATH"),
    data_opt: list[str] = typer.Option([], "--data-opt", help="dataset option, e.g. mismatch_lr_prob=0.5"),
    resume: bool = typer.Option(False, help="continue the run in --out from its last save with its saved settings "
                                            "(only --steps, --device and --num-workers may differ)"),
    restart: bool = typer.Option(False, help="start over: move the run in --out aside to OUT.old-<time> first"),
) -> None:
    """Train; writes checkpoint.safetensors (stage clip: clip.safetensors), train_state.safetensors,
    run_manifest.json, configs and metrics.jsonl to --out, which must be new or empty unless --resume or
    --restart says what to do with the run there."""
    check_output(ctx.params["out"], resume=resume, restart=restart)
    cfg = _config(ctx, resume)
    if cfg.stage == "clip":
        from ..train_clip import CLIPTrainer as Trainer
    else:
        from ..trainer import SRTrainer as Trainer
    typer.echo(f"wrote {Trainer(cfg, resume=resume, restart=restart).train()}")


def _config(ctx: typer.Context, resume: bool) -> RunConfig:
    """The stage's config from the options; a resume starts from the run's saved config and takes only the
    options given (the trainer refuses those that would change what the run trains). An option of the
    other stage is refused, not ignored."""
    given = {FIELDS.get(name, name) for name in ctx.params if name not in CHOICES and _given(ctx, name)}
    values = {FIELDS.get(name, name): _field_value(name, value) for name, value in ctx.params.items()
              if name not in CHOICES}
    stage = ctx.params["stage"]
    if stage not in STAGES:
        raise OptionError(f"--stage must be {' or '.join(STAGES)}, got {stage!r}")
    if resume:
        saved = _saved_config(Path(ctx.params["out"]))
        if not _given(ctx, "stage"):
            stage = saved.stage
    cls = STAGES[stage]
    fields = {f.name for f in dataclasses.fields(cls)}
    stray = sorted(given - fields)
    if stray:
        raise OptionError(f"{flag(stray[0])} does not apply to stage {stage}")
    if not resume:
        return cls(**{name: value for name, value in values.items() if name in fields})
    base = saved if type(saved) is cls else cls()  # another stage's run: the trainer says so
    return dataclasses.replace(base, **{name: values[name] for name in given | {"out"}})


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the command line gave the option (by name: typer ships its own copy of click's enum)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _field_value(name: str, value: Any) -> Any:
    """An option's value as its config field holds it."""
    if name in FIELDS:
        return parse_assignments(value)
    if name == "perceptual":
        return None if value in ("off", "none") else value
    return str(value) if isinstance(value, Path) else value


def _saved_config(out: Path) -> RunConfig:
    if not (out / CONFIG_FILE).is_file():
        raise OptionError(f"nothing to resume in {out}: no {CONFIG_FILE}")
    return load_config(out / CONFIG_FILE)


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
