"""GALIP's CLIP-based discriminator: frozen CLIP visual taps -> D-blocks -> text head, plus the CLIP
image embedding for the text-image similarity term. Normalises the image once (the reference did it
twice) and resizes it antialiased (the reference used nearest)."""
from __future__ import annotations

import torch
from torch import nn

from .clip import CLIPVisual
from .config import DiscriminatorConfig


class DBlock(nn.Module):
    """x + gamma * conv_r(x) [+ beta * clip_feat], gamma and beta scalars starting at 0."""

    def __init__(self, in_ch: int, out_ch: int, takes_clip: bool):
        super().__init__()
        self.conv_r = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.LeakyReLU(0.2))
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.gamma = nn.Parameter(torch.zeros(1))
        self.beta = nn.Parameter(torch.zeros(1)) if takes_clip else None

    def forward(self, x: torch.Tensor, clip_feat: torch.Tensor | None = None) -> torch.Tensor:
        out = self.shortcut(x) + self.gamma * self.conv_r(x)
        if self.beta is not None:
            out = out + self.beta * clip_feat
        return out


class TextHead(nn.Module):
    """Tile the sentence vector over the grid, concatenate, two 4x4 convs down to one logit."""

    def __init__(self, in_ch: int, text_dim: int, width: int, grid: int):
        super().__init__()
        if grid != 7:
            raise ValueError(f"the text head expects CLIP's 7x7 patch grid, got {grid}x{grid}")
        self.net = nn.Sequential(
            nn.Conv2d(in_ch + text_dim, width, 4), nn.LeakyReLU(0.2), nn.Conv2d(width, 1, 4))

    def forward(self, feat: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        tiled = text[:, :, None, None].expand(-1, -1, *feat.shape[-2:])
        return self.net(torch.cat([feat, tiled], dim=1)).flatten()


class Discriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig, clip_visual: CLIPVisual, text_dim: int):
        super().__init__()
        if max(cfg.taps) >= len(clip_visual.blocks):
            raise ValueError(f"discriminator taps {cfg.taps} exceed the {len(clip_visual.blocks)} CLIP blocks")
        self.cfg = cfg
        self.clip_visual = clip_visual
        width = clip_visual.width
        # One D-block per tap after the first (each adds that tap), and a last one to out_width.
        self.blocks = nn.ModuleList(DBlock(width, width, takes_clip=True) for _ in cfg.taps[1:])
        self.blocks.append(DBlock(width, cfg.out_width, takes_clip=False))
        self.head = TextHead(cfg.out_width, text_dim, cfg.head_width, clip_visual.grid)

    def features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image in [-1, 1] -> (tapped CLIP features (B, T, W, 7, 7), CLIP image embedding (B, D))."""
        return self.clip_visual.image_features(image, self.cfg.taps)

    def forward(self, feats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Tapped features + sentence vector -> one real/matching logit per image."""
        x = feats[:, 0]
        for i, block in enumerate(self.blocks):
            x = block(x, feats[:, i + 1] if i + 1 < feats.shape[1] else None)
        return self.head(x, text)
