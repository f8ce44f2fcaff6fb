"""The built-in demo's whole training recipe as data: CLIP stage, its report, the part locator, SR stage, the
palette's text reader fitted on captions, no-text variant, proof.

Each stage is one command line; `run_recipe` runs those not yet done, in order, and marks each done in the
output folder. Like every command that writes a run, it never replaces one (`existing_output`): an existing
output folder is continued with `resume` (a training stage that saved a step resumes exactly, one that saved
none starts over with its partial folder set aside) or set aside whole with `restart`. Each stage's wall-clock
time goes to the run's `recipe_times.json`. The same recipe runs on a CPU (the malloc settings that halve its
step time are set) or on a GPU (`device="cuda"`: bf16 autocast and data-loading workers, since rendering birds
bounds a GPU run).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from clipsr.existing_output import claim_output
from clipsr.run_folder import CHECKPOINT_FILE, MANIFEST
from clipsr_runtime.atomic import atomic_write

CLIP_STEPS = 3000
LOCATOR_STEPS = 9000
SR_STEPS = 1500
PALETTE_STEPS = 4500
# glibc's malloc hands large activation buffers back to the kernel after every step and faults them in again
CPU_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}


@dataclass(frozen=True)
class Stage:
    name: str
    argv: tuple[str, ...]
    output: Path             # what it writes; every stage's command follows the rule (--resume/--restart)
    resumable: bool = False  # a training run folder: a saved step continues with --resume


def stages(out: Path, device: str = "cpu", workers: int = -1, clip_steps: int = CLIP_STEPS,
           locator_steps: int = LOCATOR_STEPS, sr_steps: int = SR_STEPS, palette_steps: int = PALETTE_STEPS,
           start: Path | None = None) -> list[Stage]:
    """The recipe's stages for output folder `out`; with `start`, the model of the locator and SR stages starts
    from that checkpoint's weights (all whose name and shape match) instead of a new model on the CLIP stage's
    weights."""
    train = (sys.executable, "-m", "clipsr.cli.train", "--device", device, "--num-workers", str(workers),
             "--seed", "0") + (("--amp", "bf16") if device == "cuda" else ())
    synthbirds = (sys.executable, "-m", "clipsr.synthbirds")
    clip = out / "clip" / "clip.safetensors"
    sr = ("--scale", "16", "--dataset", "synthbirds", "--batch-size", "16", "--lr-g", "1e-3", "--lr-d", "4e-4",
          "--lambda-adv", "0.01", "--perceptual", "off", "--ckpt-every", "250", "--log-every", "25",
          "--steps", str(sr_steps), "--data-opt", "mismatch_lr_prob=0.5")
    locator, notext_start = out / "locator.safetensors", out / "sr_notext_start.safetensors"
    no_text = ("--set", "generator.use_text=false")
    return [
        Stage("clip", train + ("--stage", "clip", "--out", str(out / "clip"), "--steps", str(clip_steps),
                               "--batch-size", "16", "--clip-lr", "1e-3", "--log-every", "50", "--data-opt",
                               "twins=true", "--data-opt", "attributes=true", "--attribute-loss", "1"),
              out / "clip", resumable=True),
        Stage("clip-report", synthbirds + ("clip-report", str(clip), "-o", str(out / "clip_report.json")),
              out / "clip_report.json"),
        Stage("locator", synthbirds + ("locator", "-o", str(locator), "--steps", str(locator_steps))
              + (("--start", str(start)) if start else ("--clip", str(clip))), locator),
        # the locator is frozen here: the part labels teach only the palette's colours and names
        Stage("sr", train + ("--preset", "synthbirds", "--out", str(out / "sr"), "--init", str(locator)) + sr
              + ("--data-opt", "part_labels=true", "--part-loss", "0"), out / "sr", resumable=True),
        Stage("fit-palette", synthbirds + ("fit-palette", str(out / "sr" / CHECKPOINT_FILE),
                                           "-o", str(out / "demo.safetensors"), "--steps", str(palette_steps)),
              out / "demo.safetensors"),
    ] + ([
        Stage("sr-no-text-start", synthbirds + ("warm-start", str(start), "-o", str(notext_start), "--preset", "tiny")
              + no_text, notext_start),
    ] if start else []) + [
        Stage("sr-no-text", train + ("--preset", "tiny", "--out", str(out / "sr_notext")) + sr
              + (("--init", str(notext_start)) if start else ("--set", f"clip.pretrained={clip}") + no_text),
              out / "sr_notext", resumable=True),
        Stage("proof", synthbirds + ("proof", str(out / "demo.safetensors"), "--no-text",
                                     str(out / "sr_notext" / CHECKPOINT_FILE), "-o", str(out / "proof")),
              out / "proof"),
    ]


def command(stage: Stage) -> list[str]:
    """The stage's command line now: a training run that saved a step resumes; any other output the stage
    left (a run killed before its first save, a file written before the stage was marked done) is set
    aside."""
    if not stage.output.exists():
        return list(stage.argv)
    resume = stage.resumable and (stage.output / MANIFEST).is_file()
    return list(stage.argv) + (["--resume"] if resume else ["--restart"])


def done_marker(out: Path, stage: Stage) -> Path:
    return out / f".done-{stage.name}"


TIMES_FILE = "recipe_times.json"


def add_stage_time(out: Path, stage: Stage, seconds: float) -> dict[str, float]:
    """Add a stage's wall-clock seconds to the run's `recipe_times.json` (summed over the runs that continued
    it), so that what the recipe cost, stage by stage, is a file beside its outputs."""
    path = out / TIMES_FILE
    times = json.loads(path.read_text()) if path.is_file() else {}
    times[stage.name] = round(times.get(stage.name, 0.0) + seconds, 1)
    text = json.dumps(times, indent=1) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))  # a recipe killed here must still resume
    return times


def run_recipe(out: Path, device: str = "cpu", workers: int = -1, only: tuple[str, ...] = (),
               echo=print, resume: bool = False, restart: bool = False, **steps) -> None:
    """Run the stages not yet done (or only those named), marking each done when its command succeeds and
    adding its wall-clock time to `recipe_times.json`. An existing `out` needs `resume` (continue it) or
    `restart` (move it aside first)."""
    set_aside = claim_output(out, resume=resume, restart=restart)
    if set_aside:
        echo(f"moved the earlier recipe run to {set_aside}")
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **(CPU_ENV if device == "cpu" else {}))
    for stage in stages(out, device, workers, **steps):
        if (only and stage.name not in only) or done_marker(out, stage).exists():
            continue
        argv = command(stage)
        echo(f"[{stage.name}] {' '.join(argv)}")
        started = time.monotonic()
        failed = subprocess.run(argv, env=env).returncode != 0
        times = add_stage_time(out, stage, time.monotonic() - started)
        if failed:
            raise RuntimeError(f"stage {stage.name} failed; run the recipe again with --resume to continue from it")
        done_marker(out, stage).touch()
        echo(f"[{stage.name}] done in {times[stage.name] / 60:.1f} min; all stages so far "
             f"{sum(times.values()) / 60:.1f} min ({out / TIMES_FILE})")
