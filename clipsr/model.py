"""The CLIP-SR model as one module, built from a ModelConfig (`clipsr.factory.create_model` is the one
way to get one: preset, checkpoint or the authors' checkpoint).

The frozen CLIP is loaded once and shared: its text tower encodes captions, its visual tower serves both
the generator's CLIP-ViT branch and the discriminator. The generator is ours or, for the architecture
"reference", the authors' released one (`clipsr.reference`)."""
from __future__ import annotations

from typing import Any, Sequence

import open_clip
import torch
from torch import nn

from .clip import CLIPText, CLIPVisual, load_clip
from .config import ModelConfig
from .discriminator import Discriminator
from .generator import Generator
from .reference.generator import ReferenceGenerator


class CLIPSR(nn.Module):
    def __init__(self, config: ModelConfig, clip: open_clip.CLIP | None = None):
        super().__init__()
        clip = clip if clip is not None else load_clip(config.clip)
        self.config = config
        self.text_encoder = CLIPText(clip)
        self.clip_visual = CLIPVisual(clip)
        text_dim = self.text_encoder.embed_dim
        if config.architecture == "reference":
            self.generator = ReferenceGenerator(config.generator, text_dim)
        else:
            self.generator = Generator(config.generator, self.clip_visual, text_dim)
        self.discriminator = Discriminator(config.discriminator, self.clip_visual, text_dim)
        self.tokenizer = open_clip.get_tokenizer(config.clip.arch)
        # Where the weights came from, for a model folder's model card (an imported checkpoint sets it;
        # checkpoints carry it along)
        self.card: dict[str, Any] | None = None

    @property
    def scale(self) -> int:
        return self.config.generator.scale

    def tokenize(self, captions: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(captions))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pooled sentence embedding F_T (B, D); the frozen tower never needs a graph."""
        with torch.no_grad():
            return self.text_encoder(tokens)[0]

    def forward(self, lr: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.generator(lr, self.encode_text(tokens))

    def trainable_parameters(self, part: str) -> list[nn.Parameter]:
        """Parameters of "generator" or "discriminator" that train (the shared CLIP is frozen)."""
        return [p for p in getattr(self, part).parameters() if p.requires_grad]

