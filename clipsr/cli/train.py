"""clipsr-train: train CLIP-SR (stage "sr") or a small CLIP for it (stage "clip")."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer
from clipsr_runtime.cli_errors import OneLineErrorsCommand
from clipsr_runtime.errors import OptionError

from ..train_config import CONFIG_FILE, TrainConfig, parse_assignments
from .common import run_app

app = typer.Typer(add_completion=False, help=__doc__)


@app.command(cls=OneLineErrorsCommand)
def train(
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
    lr_g: float = typer.Option(1e-4), lr_d: float = typer.Option(4e-4),
    clip_lr: float = typer.Option(5e-4, help="stage clip: AdamW learning rate"),
    attribute_loss: float = typer.Option(0.0, help="stage clip: weight of a head reading each caption attribute "
                                                   "from F_T (synthbirds: --data-opt attributes=true)"),
    lambda_adv: float = typer.Option(0.01, help="adversarial weight; 0 trains without the discriminator"),
    perceptual: str = typer.Option("imagenet", help="VGG-19 weights: imagenet, a file, random or off"),
    part_loss: float = typer.Option(1.0, help="weight of the text palette's part-choice loss (batches with part labels)"),
    seed: int = typer.Option(0), device: str = typer.Option("auto", help="auto, cpu, cuda"),
    amp: str = typer.Option("off", help="off, bf16 or fp16 (CUDA only)"),
    num_workers: int = typer.Option(-1, help="data loader workers (-1: 0 on CPU, 4 on CUDA)"),
    ckpt_every: int = typer.Option(200), log_every: int = typer.Option(10),
    set_: list[str] = typer.Option([], "--set", help="model override, e.g. generator.use_text=false, clip.pretrained=PATH"),
    data_opt: list[str] = typer.Option([], "--data-opt", help="dataset option, e.g. mismatch_lr_prob=0.5"),
    init: Optional[Path] = typer.Option(None, help="fine-tune: start from this checkpoint's model and weights "
                                                   "(fresh optimisers, step 0; --preset/--scale must match, no --set)"),
    resume: bool = typer.Option(False, help="continue the run in --out from its last checkpoint, with its saved "
                                            "config (only --steps, --device and --num-workers apply)"),
) -> None:
    """Train; writes checkpoint.safetensors, train_state.safetensors, run_manifest.json, configs and
    metrics.jsonl to --out."""
    if stage not in ("sr", "clip"):
        raise OptionError(f"--stage must be sr or clip, got {stage!r}")
    if amp not in ("off", "bf16", "fp16"):
        raise OptionError(f"--amp must be off, bf16 or fp16, got {amp!r}")
    cfg = TrainConfig(
        stage=stage, preset=preset, scale=scale, model=parse_assignments(set_), init=str(init) if init else None,
        dataset=dataset,
        data_root=str(data_root) if data_root else None, data_options=parse_assignments(data_opt), out=str(out),
        steps=steps, batch_size=batch_size, lr_g=lr_g, lr_d=lr_d, clip_lr=clip_lr, attribute_loss=attribute_loss,
        lambda_adv=lambda_adv,
        part_loss=part_loss, perceptual=None if perceptual == "off" else perceptual, seed=seed, device=device, amp=amp,
        num_workers=num_workers, ckpt_every=ckpt_every, log_every=log_every)
    if resume:
        cfg = _resumed_config(cfg)
    if stage == "clip":
        from ..train_clip import train_clip
        path = train_clip(cfg)
    else:
        from ..trainer import SRTrainer
        path = SRTrainer(cfg, resume=resume).train()
    typer.echo(f"wrote {path}")


def _resumed_config(cfg: TrainConfig) -> TrainConfig:
    """A resumed run keeps its saved config; only the step target, where it runs and the folder it
    writes (a copied run folder continues in the copy) may change."""
    saved_path = Path(cfg.out) / CONFIG_FILE
    if not saved_path.is_file():
        raise FileNotFoundError(f"nothing to resume in {cfg.out}: {saved_path.name} is missing")
    saved = TrainConfig.load(saved_path)
    if saved.stage != "sr":
        raise ValueError("--resume continues stage sr runs only")
    return dataclasses.replace(saved, out=cfg.out, steps=cfg.steps, device=cfg.device, num_workers=cfg.num_workers)


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
