"""Stage "clip": contrastive pre-training of a small CLIP (open_clip architecture and loss) on a
captioned dataset, for worlds such as SynthBirds where no pretrained CLIP knows the vocabulary.
The result is an open_clip state dict that CLIP-SR then loads frozen (`clip.pretrained=PATH`)."""
from __future__ import annotations

import math
from pathlib import Path

import open_clip
import safetensors.torch
import torch
from open_clip.loss import ClipLoss
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import distributed
from .atomic import atomic_write
from .clip import clip_preprocess
from .config import get_config
from .data.registry import build_dataset
from .sampling import SeededItems, StepBatchSampler
from .train_config import TrainConfig
from .trainer import MetricsLogger

CLIP_FILE = "clip.safetensors"


def train_clip(cfg: TrainConfig) -> Path:
    device = distributed.pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    clip_cfg = get_config(cfg.preset, cfg.scale, **cfg.model).clip
    model = open_clip.create_model(clip_cfg.arch, pretrained=None, force_quick_gelu=clip_cfg.quick_gelu).to(device)
    tokenizer = open_clip.get_tokenizer(clip_cfg.arch)
    image_size = model.visual.image_size[0]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.clip_lr, weight_decay=0.1, betas=(0.9, 0.98))
    warmup = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    loss_fn = ClipLoss()
    dataset = build_dataset(cfg.dataset, cfg.data_root, "train", cfg.scale, True, **cfg.data_options)
    loader = DataLoader(SeededItems(dataset), batch_sampler=StepBatchSampler(len(dataset), cfg.batch_size,
                        cfg.seed, 0, cfg.steps), collate_fn=collate_captioned, num_workers=max(cfg.num_workers, 0))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out)
    model.train()
    logger = MetricsLogger(out, enabled=True, append=False)
    with tqdm(total=cfg.steps, unit="step", dynamic_ncols=True) as bar:
        for step, (images, captions) in enumerate(loader, start=1):
            image_emb = model.encode_image(clip_preprocess(images.to(device), image_size), normalize=True)
            text_emb = model.encode_text(tokenizer(captions).to(device), normalize=True)
            loss = loss_fn(image_emb, text_emb, model.logit_scale.exp())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            bar.update()
            if step % cfg.log_every == 0 or step == cfg.steps:
                bar.set_postfix(loss=f"{loss.item():.3f}")
                logger.log(step, {"clip_loss": loss.item()})
    logger.close()
    return save_clip(model, out / CLIP_FILE)


def save_clip(model: torch.nn.Module, path: Path) -> Path:
    """An open_clip state dict that `open_clip.create_model(arch, pretrained=path)` loads."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: safetensors.torch.save_file(state, str(tmp)))


def collate_captioned(items: list[dict]) -> tuple[torch.Tensor, list[str]]:
    """Images and captions; twins (SynthBirds `twins=true`) join the batch as hard negatives."""
    twins = [i for i in items if "twin_hr" in i]
    images = [i["hr"] for i in items] + [i["twin_hr"] for i in twins]
    return torch.stack(images), [i["caption"] for i in items] + [i["twin_caption"] for i in twins]
