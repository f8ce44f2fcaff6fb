"""Stage "sr", CLIP-SR itself (docs/architecture.md): one D step, one G step, per batch, in the loop of
`training_run` (what a run guarantees is written there).

D: hinge on (real, text) vs (fake, text) and (real, mismatched text), plus MA-GP on the real pair.
G: L1 + VGG perceptual + lambda_adv * (-D(fake, text) - alpha * cos(CLIP(fake), text)).
A dataset may add what a text palette is taught directly ("part_labels", "palette_colours", "palette_named":
see `losses.palette_losses`); SynthBirds does on request.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from clipsr_runtime.atomic import atomic_write

from .checkpoint import load_weights, save_checkpoint
from .factory import create_model
from .losses import VGGPerceptualLoss, generator_adv_loss, hinge_d_loss, ma_gp, palette_losses
from .model import CLIPSR
from .run_folder import CHECKPOINT_FILE
from .train_config import SRConfig
from .training_run import TrainingRun

PALETTE_KEYS = ("part_labels", "palette_colours", "palette_named")  # batch keys a text palette is taught from
ADAM_BETAS = (0.0, 0.9)  # the paper's, for G and D
# Without the ImageNet VGG weights (offline, nothing in the torch hub cache) the perceptual term is dropped
# with a warning rather than failing the run; `--perceptual off` says so up front.
PERCEPTUAL_FALLBACK = "off"


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


class SRTrainer(TrainingRun):
    """One D step and one G step per batch in the shared loop; saves the CLIP-SR checkpoint."""
    cfg: SRConfig
    product = CHECKPOINT_FILE
    collate = staticmethod(collate)

    def build(self) -> None:
        cfg = self.cfg
        # The preset's model, or with `init` a checkpoint's own model and weights: fine-tuning starts there.
        self.model: CLIPSR = create_model(cfg.init or cfg.preset, scale=cfg.scale, preset=cfg.preset,
                                          **cfg.model).to(self.device)
        m = self.model
        self.use_d = cfg.lambda_adv > 0
        self.opt_g = torch.optim.Adam(m.trainable_parameters("generator"), lr=cfg.lr_g, betas=ADAM_BETAS)
        self.opt_d = torch.optim.Adam(m.trainable_parameters("discriminator"), lr=cfg.lr_d, betas=ADAM_BETAS)
        self.perceptual = VGGPerceptualLoss(cfg.perceptual, fallback=PERCEPTUAL_FALLBACK).to(self.device)
        self.g, self.d = Rendering(m.generator), m.discriminator
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            if self.device.type == "cuda":  # text standardisation on the global batch (SyncBatchNorm is
                m.generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(m.generator)  # CUDA-only)
            self.g = DDP(Rendering(m.generator), device_ids=ids)
            self.d = DDP(m.discriminator, device_ids=ids)

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def start(self) -> None:
        atomic_write(self.out / "model_config.json", lambda tmp: tmp.write_text(self.model.config.to_json() + "\n"))

    def files(self, step: int) -> dict:
        return {CHECKPOINT_FILE: lambda path: save_checkpoint(self.model, path, step=str(step))}

    def load(self) -> None:
        load_weights(self.model, self.out / CHECKPOINT_FILE)

    def step(self, batch: dict) -> dict[str, float]:
        m = self.model
        lr, hr = batch["lr"].to(self.device), batch["hr"].to(self.device)
        text = m.encode_text(m.tokenize(batch["caption"]).to(self.device))
        logs = self.d_step(lr, hr, text) if self.use_d else {}
        palette = (tuple(batch[k].to(self.device) for k in PALETTE_KEYS)
                   if all(k in batch for k in PALETTE_KEYS) else None)
        logs.update(self.g_step(lr, hr, text, palette))
        return logs

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
        self.backward(loss + gp, self.opt_d)
        return {"d_hinge": loss.item(), "d_magp": gp.item(), "d_real": real.mean().item(),
                "d_fake": fake_logit.mean().item()}

    def g_step(self, lr, hr, text, palette=None) -> dict[str, float]:
        m, cfg = self.model, self.cfg
        with self.autocast():
            output = self.g(lr, text)
            fake = output.image
            l1 = F.l1_loss(fake, hr)
            per = self.perceptual(fake, hr) if self.perceptual.mode != "off" else fake.new_zeros(())
            loss = cfg.l1_weight * l1 + per
            logs = {"g_l1": l1.item(), "g_per": per.item()}
            if palette is not None:
                taught = palette_losses(output, *palette)
                loss = loss + cfg.part_loss * taught["choice"] + taught["colour"] + taught["named"]
                logs.update({f"g_palette_{k}": v.item() for k, v in taught.items()})
            if self.use_d:
                feats, img_emb = m.discriminator.features(fake)
                adv = generator_adv_loss(self.d(feats, text), img_emb, text, alpha=cfg.alpha)
                loss = loss + cfg.lambda_adv * adv
                logs["g_adv"] = adv.item()
        self.backward(loss, self.opt_g)
        return logs
