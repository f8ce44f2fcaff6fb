"""The CLIP-SR training loop (docs/architecture.md): one D step, one G step, per batch.

D: hinge on (real, text) vs (fake, text) and (real, mismatched text), plus MA-GP on the real pair.
G: L1 + VGG perceptual + lambda_adv * (-D(fake, text) - alpha * cos(CLIP(fake), text)).
A dataset may add per-pixel L1 weights ("loss_weight") and what a text palette is taught directly ("part_labels",
"palette_colours", "palette_named": see `losses.palette_losses`); SynthBirds does on request.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm

from clipsr_runtime.atomic import atomic_write

from . import distributed
from .checkpoint import load_weights, save_checkpoint
from .datasets import build_dataset
from .factory import create_model
from .losses import VGGPerceptualLoss, generator_adv_loss, hinge_d_loss, ma_gp, palette_losses, weighted_l1
from .metrics_logger import MetricsLogger, truncate_metrics
from .model import CLIPSR
from .run_folder import RunFolderError, recover, save_step
from .sampling import SeededItems, StepBatchSampler
from .train_config import TrainConfig
from .train_state import STATE_FILE, load_train_state, save_train_state

CHECKPOINT_FILE = "checkpoint.safetensors"
PALETTE_KEYS = ("part_labels", "palette_colours", "palette_named")  # batch keys a text palette is taught from


def collate(items: list[dict]) -> dict:
    """Tensors of one shape stacked, everything else (captions, keys, ragged tensors) as lists, whatever
    the dataset adds."""
    batch = {}
    for key in items[0]:
        values = [item[key] for item in items]
        stackable = all(isinstance(v, torch.Tensor) and v.shape == values[0].shape for v in values)
        batch[key] = torch.stack(values) if stackable else values
    return batch


class Rendering(torch.nn.Module):
    """The generator with all it renders (image, palette choice and reads) as its forward: DDP synchronises
    gradients only through a module's forward."""

    def __init__(self, generator: torch.nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, lr: torch.Tensor, text: torch.Tensor):
        return self.generator.render(lr, text)


class SRTrainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg = cfg
        self.device = distributed.pick_device(cfg.device)
        self.dist = distributed.setup(self.device)
        self.out = Path(cfg.out)
        torch.manual_seed(cfg.seed)
        # The preset's model, or with `init` a checkpoint's own model and weights: fine-tuning starts there.
        self.model: CLIPSR = create_model(cfg.init or cfg.preset, scale=cfg.scale, preset=cfg.preset,
                                          **cfg.model).to(self.device)
        m = self.model
        self.use_d = cfg.lambda_adv > 0
        self.opt_g = torch.optim.Adam(m.trainable_parameters("generator"), lr=cfg.lr_g, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(m.trainable_parameters("discriminator"), lr=cfg.lr_d, betas=cfg.betas)
        self.perceptual = VGGPerceptualLoss(cfg.perceptual, fallback=cfg.perceptual_fallback).to(self.device)
        self.g, self.d = Rendering(m.generator), m.discriminator
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            if self.device.type == "cuda":  # text standardisation on the global batch (SyncBatchNorm is
                m.generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(m.generator)  # CUDA-only)
            self.g = DDP(Rendering(m.generator), device_ids=ids)
            self.d = DDP(m.discriminator, device_ids=ids)
        self.start_step = self._resume() if resume else 0
        self.scaler = torch.amp.GradScaler(enabled=cfg.amp == "fp16" and self.device.type == "cuda")

    def _resume(self) -> int:
        """The saved step, after finishing or discarding an interrupted save and checking every file."""
        saved = recover(self.out) if self.dist.main else None
        if self.dist.world > 1:
            torch.distributed.barrier()
        load_weights(self.model, self.out / CHECKPOINT_FILE)
        step = load_train_state(self.out / STATE_FILE, self.optimizers)
        if self.dist.main:
            if step != saved:
                raise RunFolderError(f"{self.out / STATE_FILE} holds step {step}, the run manifest step {saved}")
            truncate_metrics(self.out, step)
        return step

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def autocast(self):
        if self.cfg.amp == "off" or self.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16)

    def loader(self) -> DataLoader:
        cfg = self.cfg
        dataset = build_dataset(cfg.dataset, cfg.data_root, "train", cfg.scale, True, **cfg.data_options)
        sampler = StepBatchSampler(len(dataset), cfg.batch_size, cfg.seed, self.start_step, cfg.steps,
                                   self.dist.rank, self.dist.world)
        workers = cfg.num_workers if cfg.num_workers >= 0 else (4 if self.device.type == "cuda" else 0)
        return DataLoader(SeededItems(dataset), batch_sampler=sampler, num_workers=workers,
                          collate_fn=collate, pin_memory=self.device.type == "cuda",
                          persistent_workers=workers > 0)

    def d_step(self, lr, hr, text) -> dict[str, float]:
        m = self.model
        with torch.no_grad(), self.autocast():
            fake = self.g(lr, text).image
            real_feats, _ = m.discriminator.features(hr)
            fake_feats, _ = m.discriminator.features(fake)
        real_feats = real_feats.float().requires_grad_()
        text_in = text.detach().clone().requires_grad_()
        # One D call for the three pairs (DDP wants one forward per backward).
        with self.autocast():
            logits = self.d(torch.cat([real_feats, fake_feats.float(), real_feats]),
                            torch.cat([text_in, text, text.roll(1, 0)]))
            real, fake_logit, mismatch = logits.float().chunk(3)
            loss = hinge_d_loss(real, fake_logit, mismatch)
        gp = ma_gp(real, (real_feats, text_in), k=self.cfg.ma_gp_k, p=self.cfg.ma_gp_p)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(loss + gp).backward()
        self.scaler.step(self.opt_d)
        return {"d_hinge": loss.item(), "d_magp": gp.item(), "d_real": real.mean().item(),
                "d_fake": fake_logit.mean().item()}

    def g_step(self, lr, hr, text, weight=None, palette=None) -> dict[str, float]:
        m, cfg = self.model, self.cfg
        with self.autocast():
            output = self.g(lr, text)
            fake = output.image
            l1 = weighted_l1(fake, hr, weight)
            per = self.perceptual(fake, hr) if self.perceptual.mode != "off" else fake.new_zeros(())
            loss = cfg.l1_weight * l1 + per
            logs = {"g_l1": l1.item(), "g_per": per.item()}
            if palette is not None:
                taught = palette_losses(output, *palette, weight)
                loss = loss + cfg.part_loss * taught["choice"] + taught["colour"] + taught["named"]
                logs.update({f"g_palette_{k}": v.item() for k, v in taught.items()})
            if self.use_d:
                feats, img_emb = m.discriminator.features(fake)
                adv = generator_adv_loss(self.d(feats, text), img_emb, text, alpha=cfg.alpha)
                loss = loss + cfg.lambda_adv * adv
                logs["g_adv"] = adv.item()
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt_g)
        return logs

    def train(self) -> Path:
        cfg, m = self.cfg, self.model
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            cfg.save(self.out)
            atomic_write(self.out / "model_config.json", lambda tmp: tmp.write_text(m.config.to_json() + "\n"))
        logger = MetricsLogger(self.out, enabled=self.dist.main, append=self.start_step > 0)
        bar = tqdm(total=cfg.steps, initial=self.start_step, disable=not self.dist.main, unit="step",
                   dynamic_ncols=True)
        step, tick = self.start_step, time.perf_counter()
        for batch in self.loader():
            lr, hr = batch["lr"].to(self.device), batch["hr"].to(self.device)
            text = m.encode_text(m.tokenize(batch["caption"]).to(self.device))
            logs = self.d_step(lr, hr, text) if self.use_d else {}
            weight = batch["loss_weight"].to(self.device) if "loss_weight" in batch else None
            palette = (tuple(batch[k].to(self.device) for k in PALETTE_KEYS)
                       if all(k in batch for k in PALETTE_KEYS) else None)
            logs.update(self.g_step(lr, hr, text, weight, palette))
            self.scaler.update()
            step += 1
            bar.update()
            if step % cfg.log_every == 0 or step == cfg.steps:
                elapsed, tick = time.perf_counter() - tick, time.perf_counter()
                if not all(math.isfinite(v) for v in logs.values()):
                    raise FloatingPointError(f"non-finite loss at step {step}: {logs}")
                logs["img_per_s"] = cfg.log_every * cfg.batch_size / elapsed
                bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items()})
                logger.log(step, logs)
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                self.save(step)
        bar.close()
        logger.close()
        distributed.teardown(self.dist)
        return self.out / CHECKPOINT_FILE

    def save(self, step: int) -> None:
        if self.dist.main:
            save_step(self.out, step, {
                CHECKPOINT_FILE: lambda path: save_checkpoint(self.model, path, step=str(step)),
                STATE_FILE: lambda path: save_train_state(path, step, self.optimizers)})
