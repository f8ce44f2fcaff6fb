"""The built-in demo's whole training recipe as data: CLIP stage, its report, the part locator, SR stage, the
palette's text reader fitted on captions, no-text variant, proof.

Each stage is one command line; `run_recipe` runs those not yet done, in order, and marks each done in the
output folder, so an interrupted recipe continues where it stopped (an SR stage that started resumes
exactly). The same recipe runs on a CPU (the malloc settings that halve its step time are set) or on a GPU
(`device="cuda"`: bf16 autocast and data-loading workers, since rendering birds bounds a GPU run).
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CLIP_STEPS = 1500
SR_STEPS = 1500
# glibc's malloc hands large activation buffers back to the kernel after every step and faults them in again
CPU_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}


@dataclass(frozen=True)
class Stage:
    name: str
    argv: tuple[str, ...]
    resumable: bool = False  # an SR run folder: continue it with --resume


def stages(out: Path, device: str = "cpu", workers: int = -1, clip_steps: int = CLIP_STEPS,
           sr_steps: int = SR_STEPS, start: Path | None = None) -> list[Stage]:
    """The recipe's stages for output folder `out`; with `start`, the model of the locator and SR stages starts
    from that checkpoint's weights (all whose name and shape match) instead of a new model on the CLIP stage's
    weights."""
    train = (sys.executable, "-m", "clipsr.cli.train", "--device", device, "--num-workers", str(workers),
             "--seed", "0") + (("--amp", "bf16") if device == "cuda" else ())
    synthbirds = (sys.executable, "-m", "clipsr.synthbirds")
    clip = out / "clip" / "clip.safetensors"
    sr = ("--scale", "16", "--dataset", "synthbirds", "--batch-size", "16", "--lr-g", "1e-3", "--lr-d", "4e-4",
          "--lambda-adv", "0.01", "--perceptual", "off", "--ckpt-every", "250", "--log-every", "25",
          "--steps", str(sr_steps), "--data-opt", "mismatch_lr_prob=0.5", "--data-opt", "captions=random")
    locator, notext_start = out / "locator.safetensors", out / "sr_notext_start.safetensors"
    no_text = ("--set", "generator.use_text=false")
    return [
        Stage("clip", train + ("--stage", "clip", "--out", str(out / "clip"), "--steps", str(clip_steps),
                               "--batch-size", "16", "--clip-lr", "1e-3", "--log-every", "50", "--data-opt",
                               "twins=true", "--data-opt", "attributes=true", "--attribute-loss", "1")),
        Stage("clip-report", synthbirds + ("clip-report", str(clip), "-o", str(out / "clip_report.json"))),
        Stage("locator", synthbirds + ("locator", "-o", str(locator))
              + (("--start", str(start)) if start else ("--clip", str(clip)))),
        # the locator is frozen here: the part labels teach only the palette's colours and names
        Stage("sr", train + ("--preset", "synthbirds", "--out", str(out / "sr"), "--init", str(locator)) + sr
              + ("--data-opt", "part_labels=true", "--part-loss", "0"), resumable=True),
        Stage("palette-text", synthbirds + ("fit-palette", str(out / "sr" / "checkpoint.safetensors"),
                                            "-o", str(out / "demo.safetensors"))),
    ] + ([
        Stage("sr-no-text-start", synthbirds + ("warm-start", str(start), "-o", str(notext_start), "--preset", "tiny")
              + no_text),
    ] if start else []) + [
        Stage("sr-no-text", train + ("--preset", "tiny", "--out", str(out / "sr_notext")) + sr
              + (("--init", str(notext_start)) if start else ("--set", f"clip.pretrained={clip}") + no_text),
              resumable=True),
        Stage("proof", synthbirds + ("proof", str(out / "demo.safetensors"), "--no-text",
                                     str(out / "sr_notext" / "checkpoint.safetensors"), "-o", str(out / "proof"))),
    ]


def command(stage: Stage, out: Path) -> list[str]:
    """The stage's command line now: an SR stage whose run folder exists resumes it."""
    resume = stage.resumable and (Path(stage.argv[stage.argv.index("--out") + 1]) / "train_config.json").is_file()
    return list(stage.argv) + (["--resume"] if resume else [])


def done_marker(out: Path, stage: Stage) -> Path:
    return out / f".done-{stage.name}"


def run_recipe(out: Path, device: str = "cpu", workers: int = -1, only: tuple[str, ...] = (),
               echo=print, **steps) -> None:
    """Run the stages not yet done (or only those named), marking each done when its command succeeds."""
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **(CPU_ENV if device == "cpu" else {}))
    for stage in stages(out, device, workers, **steps):
        if (only and stage.name not in only) or done_marker(out, stage).exists():
            continue
        argv = command(stage, out)
        echo(f"[{stage.name}] {' '.join(argv)}")
        if subprocess.run(argv, env=env).returncode != 0:
            raise RuntimeError(f"stage {stage.name} failed; run the recipe again to continue from it")
        done_marker(out, stage).touch()
