"""What a training run guarantees, whatever it trains. One loop (nanoGPT's shape): a stage (`SRTrainer` in
trainer.py, `CLIPTrainer` in train_clip.py) brings its model, optimisers, files and one optimisation step;
this file owns the rest, so both stages keep the same promises:

- Nothing is replaced. A new run needs a run folder that does not exist or is empty; `resume` continues
  the run there and `restart` first moves it aside to OUT.old-<time> (`existing_output`).
- Its settings are kept. The config is checked before anything is built and saved as train_config.json
  before the first step. A resume refuses every setting that differs from the saved one, except where it
  runs and for how long (`--steps`, `--device`, `--num-workers`).
- Saves are whole. Every `ckpt_every` steps and at the last one, the stage's files and the training state
  (optimisers, fp16 loss scale, step) are committed as one step of the run manifest (`run_folder`): a kill
  at any point leaves the previous step or the new one, and a resume checks every file's digest first.
- Resume is exact. Batches and their augmentations are a function of (seed, step) (`sampling`), so a run
  killed and resumed ends bit for bit where the uninterrupted run ends; metrics.jsonl keeps the lines up
  to the saved step and continues.
- One process or a torchrun job, the same command: the global batch is split over the processes, DDP
  averages the gradients of what each stage wraps, and only rank 0 writes.
- AMP as asked: bf16 or fp16 autocast on CUDA (fp16 with a loss scaler); refused on a CPU, never dropped.
- A non-finite loss stops the run at that step, before a save could keep it.
"""
from __future__ import annotations

import contextlib
import functools
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from clipsr_runtime.errors import OptionError
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from . import distributed
from .datasets import build_dataset
from .existing_output import check_output, claim_output
from .metrics_logger import MetricsLogger, truncate_metrics
from .run_folder import RunFolderError, recover, save_step
from .sampling import SeededItems, StepBatchSampler
from .train_config import CONFIG_FILE, RunConfig, check_resume, load_config
from .train_state import STATE_FILE, load_train_state, save_train_state


class TrainingRun:
    """The loop and its guarantees. A stage subclass sets `product` (the file `train` returns) and
    `collate` (a staticmethod making a batch of items), and implements `build`, `step`, `files` and `load`."""

    product: str
    collate: Callable[[list[dict]], object]

    def __init__(self, cfg: RunConfig, resume: bool = False, restart: bool = False):
        """Check the config and the folder, build the stage, and with `resume` restore the saved step.
        With `restart`, `train` moves an earlier run in `cfg.out` aside before it writes."""
        cfg.check()
        self.cfg, self.out = cfg, Path(cfg.out)
        self.dist, self.device = distributed.setup(cfg.device)
        if cfg.amp != "off" and self.device.type != "cuda":
            raise OptionError(f"--amp {cfg.amp} needs a CUDA device; this run would train on {self.device.type}")
        self.restart = restart
        if self.dist.main:
            self._check_folder(resume)
        distributed.barrier(self.dist)
        torch.manual_seed(cfg.seed)
        self.build()
        self.scaler = torch.amp.GradScaler(enabled=cfg.amp == "fp16")
        self.completed = self._resume() if resume else 0  # optimisation steps done so far

    # what a stage implements

    def build(self) -> None:
        """Create the models (on `self.device`, wrapped in DDP when `self.dist.world > 1`) and optimisers."""
        raise NotImplementedError

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def step(self, batch) -> dict[str, float]:
        """One optimisation step (`self.backward` for each optimiser); the values to log."""
        raise NotImplementedError

    def files(self, step: int) -> dict[str, Callable[[Path], object]]:
        """The stage's files of a save: name -> function writing it to the path given."""
        raise NotImplementedError

    def load(self) -> None:
        """Restore the models from the files of the run folder's saved step."""
        raise NotImplementedError

    def start(self) -> None:
        """Files written once before the first step, beside the config (rank 0)."""

    # the loop

    @functools.cached_property
    def dataset(self) -> Dataset:
        cfg = self.cfg
        return build_dataset(cfg.dataset, cfg.data_root, "train", cfg.scale, True, **cfg.data_options)

    def autocast(self):
        if self.cfg.amp == "off":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16)

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)

    def loader(self) -> DataLoader:
        cfg = self.cfg
        sampler = StepBatchSampler(len(self.dataset), cfg.batch_size, cfg.seed, self.completed, cfg.steps,
                                   self.dist.rank, self.dist.world)
        workers = cfg.num_workers if cfg.num_workers >= 0 else (4 if self.device.type == "cuda" else 0)
        return DataLoader(SeededItems(self.dataset), batch_sampler=sampler, num_workers=workers,
                          collate_fn=self.collate, pin_memory=self.device.type == "cuda",
                          persistent_workers=workers > 0)

    def train(self) -> Path:
        cfg = self.cfg
        if self.dist.main:
            if self.restart and (set_aside := claim_output(self.out, restart=True)):
                tqdm.write(f"moved the earlier run to {set_aside}", file=sys.stderr)
            self.out.mkdir(parents=True, exist_ok=True)
            cfg.save(self.out)
            self.start()
        logger = MetricsLogger(self.out, enabled=self.dist.main, append=self.completed > 0)
        bar = tqdm(total=cfg.steps, initial=self.completed, disable=not self.dist.main, unit="step",
                   dynamic_ncols=True)
        tick = time.perf_counter()
        for batch in self.loader():
            logs = self.step(batch)
            self.scaler.update()
            self.completed += 1
            bar.update()
            if not all(math.isfinite(v) for v in logs.values()):
                raise FloatingPointError(f"non-finite loss at step {self.completed}: {logs}")
            if self.completed % cfg.log_every == 0 or self.completed == cfg.steps:
                elapsed, tick = time.perf_counter() - tick, time.perf_counter()
                logs["img_per_s"] = cfg.log_every * cfg.batch_size / elapsed
                bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items()})
                logger.log(self.completed, logs)
            if self.completed % cfg.ckpt_every == 0 or self.completed == cfg.steps:
                self.save(self.completed)
        bar.close()
        logger.close()
        distributed.teardown(self.dist)
        return self.out / self.product

    def save(self, step: int) -> None:
        if self.dist.main:
            save_step(self.out, step, {**self.files(step), STATE_FILE: lambda path: save_train_state(
                path, step, self.optimizers, self.scaler)})

    def _check_folder(self, resume: bool) -> None:
        check_output(self.out, resume=resume, restart=self.restart)
        if resume:
            if not (self.out / CONFIG_FILE).is_file():
                raise RunFolderError(f"nothing to resume in {self.out}: no {CONFIG_FILE}")
            check_resume(load_config(self.out / CONFIG_FILE), self.cfg)

    def _resume(self) -> int:
        """The saved step, after finishing or discarding an interrupted save and checking every file."""
        saved = recover(self.out) if self.dist.main else None
        distributed.barrier(self.dist)
        self.load()
        step = load_train_state(self.out / STATE_FILE, self.optimizers, self.scaler)
        if self.dist.main:
            if step != saved:
                raise RunFolderError(f"{self.out / STATE_FILE} holds step {step}, the run manifest step {saved}")
            truncate_metrics(self.out, step)
        return step
