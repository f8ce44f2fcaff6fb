"""Stage "clip": contrastive pre-training of a small CLIP (open_clip architecture and loss) on a
captioned dataset, for worlds such as SynthBirds where no pretrained CLIP knows the vocabulary.
The result is an open_clip state dict that CLIP-SR then loads frozen (`clip.pretrained=PATH`).

A dataset that labels its captions with attributes (SynthBirds `attributes=true`: each described part's
colour, or none) adds an auxiliary objective: a linear head reads every attribute from the sentence vector
F_T. A real CLIP learned from millions of captions that "a red crown" and "red-crowned" say the same; a
small one trained on a few thousand birds does not, and F_T (all the SR generator reads of the text) then
loses a part's colour in most phrasings. The head is dropped after training; only the CLIP is saved."""
from __future__ import annotations

import math
from pathlib import Path

import open_clip
import safetensors.torch
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torch.utils.data import DataLoader
from tqdm import tqdm

from clipsr_runtime.atomic import atomic_write

from . import distributed
from .clip import clip_preprocess
from .factory import get_config
from .datasets import build_dataset
from .metrics_logger import MetricsLogger
from .sampling import SeededItems, StepBatchSampler
from .train_config import TrainConfig

CLIP_FILE = "clip.safetensors"


def train_clip(cfg: TrainConfig) -> Path:
    device = distributed.pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    clip_cfg = get_config(cfg.preset, cfg.scale, **cfg.model).clip
    model = open_clip.create_model(clip_cfg.arch, pretrained=None, force_quick_gelu=clip_cfg.quick_gelu).to(device)
    tokenizer = open_clip.get_tokenizer(clip_cfg.arch)
    image_size = model.visual.image_size[0]
    dataset = build_dataset(cfg.dataset, cfg.data_root, "train", cfg.scale, True, **cfg.data_options)
    head = attribute_head(dataset, open_clip.get_model_config(clip_cfg.arch)["embed_dim"], cfg.attribute_loss)
    groups = [{"params": model.parameters()}]
    if head is not None:
        groups.append({"params": head.to(device).parameters(), "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=cfg.clip_lr, weight_decay=0.1, betas=(0.9, 0.98))
    warmup = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    loss_fn = ClipLoss()
    loader = DataLoader(SeededItems(dataset), batch_sampler=StepBatchSampler(len(dataset), cfg.batch_size,
                        cfg.seed, 0, cfg.steps), collate_fn=collate_captioned, num_workers=max(cfg.num_workers, 0))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out)
    model.train()
    logger = MetricsLogger(out, enabled=True, append=False)
    with tqdm(total=cfg.steps, unit="step", dynamic_ncols=True) as bar:
        for step, (images, captions, attributes) in enumerate(loader, start=1):
            texts = captions + (attributes[0] if head is not None and attributes is not None else [])
            text_features = model.encode_text(tokenizer(texts).to(device))  # one pass for both objectives
            image_emb = model.encode_image(clip_preprocess(images.to(device), image_size), normalize=True)
            text_emb = F.normalize(text_features[:len(captions)], dim=-1)
            loss = loss_fn(image_emb, text_emb, model.logit_scale.exp())
            logs = {"clip_loss": loss.item()}
            if len(texts) > len(captions):
                labels = attributes[1].to(device)
                logits = head(text_features[len(captions):])
                attribute = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
                loss = loss + cfg.attribute_loss * attribute
                logs["attribute_loss"] = attribute.item()
                logs["attribute_accuracy"] = (logits.argmax(-1) == labels).float().mean().item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            bar.update()
            if step % cfg.log_every == 0 or step == cfg.steps:
                bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()})
                logger.log(step, logs)
    logger.close()
    return save_clip(model, out / CLIP_FILE)


def save_clip(model: torch.nn.Module, path: Path) -> Path:
    """An open_clip state dict that `open_clip.create_model(arch, pretrained=path)` loads."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: safetensors.torch.save_file(state, str(tmp)))


class AttributeHead(torch.nn.Module):
    """Linear read-out of (attributes x classes) logits from the sentence vector."""

    def __init__(self, text_dim: int, attributes: int, classes: int):
        super().__init__()
        self.shape = (attributes, classes)
        self.linear = torch.nn.Linear(text_dim, attributes * classes)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.linear(text).view(-1, *self.shape)


def attribute_head(dataset, text_dim: int, weight: float) -> AttributeHead | None:
    """The auxiliary head when asked for (weight > 0) and the dataset labels attributes (`attribute_shape`)."""
    shape = getattr(dataset, "attribute_shape", None)
    if weight > 0 and shape is None:
        raise ValueError("--attribute-loss needs a dataset that labels caption attributes "
                         "(synthbirds: --data-opt attributes=true), or --attribute-loss 0")
    return AttributeHead(text_dim, *shape) if weight > 0 else None


def collate_captioned(items: list[dict]) -> tuple[torch.Tensor, list[str], tuple[list[str], torch.Tensor] | None]:
    """Images and captions; twins (SynthBirds `twins=true`) join the batch as hard negatives; every
    labelled caption of each item (SynthBirds `attributes=true`) for the attribute head, or None."""
    twins = [i for i in items if "twin_hr" in i]
    images = [i["hr"] for i in items] + [i["twin_hr"] for i in twins]
    captions = [i["caption"] for i in items] + [i["twin_caption"] for i in twins]
    attributes = None
    if all("attribute_labels" in i for i in items):
        attributes = ([text for i in items for text in i["attribute_captions"]],
                      torch.cat([i["attribute_labels"] for i in items]))
    return torch.stack(images), captions, attributes
