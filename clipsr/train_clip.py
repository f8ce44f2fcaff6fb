"""Stage "clip": contrastive pre-training of a small CLIP (open_clip architecture and loss) on a
captioned dataset, for worlds such as SynthBirds where no pretrained CLIP knows the vocabulary.
The result is an open_clip state dict that CLIP-SR then loads frozen (`clip.pretrained=PATH`).

A dataset that labels its captions with attributes (SynthBirds `attributes=true`: each described part's
colour, or none) adds an auxiliary objective: a linear head reads every attribute from the sentence vector
F_T. A real CLIP learned from millions of captions that "a red crown" and "red-crowned" say the same; a
small one trained on a few thousand birds does not, and F_T (all the SR generator reads of the text) then
loses a part's colour in most phrasings. The head is dropped after training: the SR stage reads only the CLIP.

The loop, its run folder and what it guarantees are `training_run`'s, as for the SR stage."""
from __future__ import annotations

import math
from pathlib import Path

import open_clip
import safetensors.torch
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torch.nn.parallel import DistributedDataParallel as DDP

from clipsr_runtime.atomic import atomic_write

from .clip import clip_preprocess
from .factory import get_config
from .train_config import CLIPStageConfig
from .training_run import TrainingRun

CLIP_FILE = "clip.safetensors"
HEAD_FILE = "attribute_head.safetensors"  # kept for an exact resume; the SR stage never reads it
# open_clip's training recipe: AdamW with these betas and decay (none on the head), a linear warm-up over
# the first 1/WARMUP_DIVISOR of the steps, then a cosine decay
BETAS, WEIGHT_DECAY, WARMUP_DIVISOR = (0.9, 0.98), 0.1, 20


def learning_rate_factor(completed: int, steps: int) -> float:
    """The learning rate's share of `clip_lr` for the step after `completed` steps. A function of the step,
    so a resume continues the schedule exactly; a resume to more `steps` follows the longer schedule from
    where it stands."""
    warmup = max(1, steps // WARMUP_DIVISOR)
    return min(1.0, (completed + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(completed, steps) / steps))


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


class CLIPTrainer(TrainingRun):
    """Contrastive steps (and the attribute head's) in the shared loop; saves the CLIP as open_clip loads it."""
    cfg: CLIPStageConfig
    product = CLIP_FILE
    collate = staticmethod(collate_captioned)

    def build(self) -> None:
        cfg = self.cfg
        clip_cfg = get_config(cfg.preset, cfg.scale, **cfg.model).clip
        self.clip = open_clip.create_model(clip_cfg.arch, pretrained=None, force_quick_gelu=clip_cfg.quick_gelu)
        self.tokenizer = open_clip.get_tokenizer(clip_cfg.arch)
        self.image_size = self.clip.visual.image_size[0]
        text_dim = open_clip.get_model_config(clip_cfg.arch)["embed_dim"]
        self.head = attribute_head(self.dataset, text_dim, cfg.attribute_loss)
        self.pair = Contrastive(self.clip, self.head).to(self.device).train()
        groups = [{"params": self.clip.parameters()}]
        if self.head is not None:
            groups.append({"params": self.head.parameters(), "weight_decay": 0.0})
        self.opt = torch.optim.AdamW(groups, lr=cfg.clip_lr, weight_decay=WEIGHT_DECAY, betas=BETAS)
        # the contrastive loss over the global batch: each process gathers the others' embeddings
        self.loss_fn = ClipLoss(gather_with_grad=self.dist.world > 1, rank=self.dist.rank, world_size=self.dist.world)
        self.forward = self.pair
        if self.dist.world > 1:
            self.forward = DDP(self.pair, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"clip": self.opt}

    def files(self, step: int) -> dict:
        files = {CLIP_FILE: lambda path: save_clip(self.clip, path)}
        if self.head is not None:
            files[HEAD_FILE] = lambda path: save_clip(self.head, path)
        return files

    def load(self) -> None:
        self.clip.load_state_dict(safetensors.torch.load_file(str(self.out / CLIP_FILE), device=str(self.device)))
        if self.head is not None:
            self.head.load_state_dict(safetensors.torch.load_file(str(self.out / HEAD_FILE), device=str(self.device)))

    def step(self, batch) -> dict[str, float]:
        images, captions, attributes = batch
        cfg = self.cfg
        for group in self.opt.param_groups:
            group["lr"] = cfg.clip_lr * learning_rate_factor(self.completed, cfg.steps)
        texts = captions + (attributes[0] if self.head is not None else [])
        with self.autocast():
            image_emb, text_emb, attribute_logits, logit_scale = self.forward(
                clip_preprocess(images.to(self.device), self.image_size),
                self.tokenizer(texts).to(self.device), len(captions))
            loss = self.loss_fn(image_emb.float(), text_emb.float(), logit_scale.exp())
            logs = {"clip_loss": loss.item()}
            if attribute_logits is not None:
                labels = attributes[1].to(self.device)
                attribute = F.cross_entropy(attribute_logits.float().flatten(0, 1), labels.flatten())
                loss = loss + cfg.attribute_loss * attribute
                logs["attribute_loss"] = attribute.item()
                logs["attribute_accuracy"] = (attribute_logits.argmax(-1) == labels).float().mean().item()
        self.backward(loss, self.opt)
        with torch.no_grad():
            self.clip.logit_scale.clamp_(0, math.log(100))
        return logs


class Contrastive(torch.nn.Module):
    """The CLIP and its attribute head with all a step needs as one forward (DDP synchronises gradients
    only through a module's forward): normalised image and caption embeddings, the head's logits on the
    attribute captions after the first `n_captions` texts (None without a head), and the logit scale."""

    def __init__(self, clip: torch.nn.Module, head: AttributeHead | None):
        super().__init__()
        self.clip, self.head = clip, head

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, n_captions: int):
        text_features = self.clip.encode_text(tokens)  # one pass for both objectives
        image_emb = self.clip.encode_image(images, normalize=True)
        text_emb = F.normalize(text_features[:n_captions], dim=-1)
        logits = self.head(text_features[n_captions:]) if self.head is not None else None
        return image_emb, text_emb, logits, self.clip.logit_scale


def save_clip(model: torch.nn.Module, path: Path) -> Path:
    """A module's state dict in safetensors: for the CLIP, what `open_clip.create_model(arch,
    pretrained=path)` loads."""
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
