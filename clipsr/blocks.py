"""Text-conditioned building blocks of the generator (DF-GAN / GALIP style)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

TEXT_REWEIGHTS = ("softmax", "none")


def reweight_text(text: torch.Tensor, mode: str) -> torch.Tensor:
    """The paper passes the sentence vector through a Softmax before the affine MLPs; rescaled by the
    width so the weights average 1 and the affine layers see values of the usual size."""
    if mode == "softmax":
        return torch.softmax(text, dim=-1) * text.shape[-1]
    if mode == "none":
        return text
    raise ValueError(f"text_reweight must be one of {TEXT_REWEIGHTS}, got {mode!r}")


class Affine(nn.Module):
    """gamma(t) * x + beta(t), per channel; starts as the identity (gamma = 1, beta = 0)."""

    def __init__(self, text_dim: int, channels: int):
        super().__init__()
        self.gamma = nn.Sequential(nn.Linear(text_dim, channels), nn.ReLU(), nn.Linear(channels, channels))
        self.beta = nn.Sequential(nn.Linear(text_dim, channels), nn.ReLU(), nn.Linear(channels, channels))
        for mlp, bias in ((self.gamma, 1.0), (self.beta, 0.0)):
            nn.init.zeros_(mlp[-1].weight)
            nn.init.constant_(mlp[-1].bias, bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.gamma(text)[:, :, None, None] * x + self.beta(text)[:, :, None, None]


class TextMapper(nn.Module):
    """Residual MLP on the sentence vector, shared by every text-conditioned block (ours, as StyleGAN's
    mapping network): one decoder of what the caption says, trained by the gradients of all blocks, in
    place of every small affine MLP learning it alone. Starts as the identity."""

    def __init__(self, text_dim: int, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(text_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, text_dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return text + self.mlp(text)


class TIFBlock(nn.Module):
    """Text-image fusion: Affine -> LReLU -> Affine -> LReLU, on a re-weighted sentence vector."""

    def __init__(self, text_dim: int, channels: int, text_reweight: str = "softmax"):
        super().__init__()
        reweight_text(torch.zeros(1, 1), text_reweight)  # validate the mode at construction
        self.text_reweight = text_reweight
        self.affine1 = Affine(text_dim, channels)
        self.affine2 = Affine(text_dim, channels)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        text = reweight_text(text, self.text_reweight)
        x = self.act(self.affine1(x, text))
        return self.act(self.affine2(x, text))


class GBlock(nn.Module):
    """One refinement iteration: resize to `size`, then shortcut + [TIF -> conv -> TIF -> conv]."""

    def __init__(self, text_dim: int, in_ch: int, out_ch: int, size: int, text_reweight: str):
        super().__init__()
        self.size = size
        self.fuse1 = TIFBlock(text_dim, in_ch, text_reweight)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.fuse2 = TIFBlock(text_dim, out_ch, text_reweight)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, h: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        if h.shape[-1] != self.size:
            h = F.interpolate(h, size=(self.size, self.size), mode="nearest")
        residual = self.conv2(self.fuse2(self.conv1(self.fuse1(h, text)), text))
        return self.shortcut(h) + residual


class TBlock(nn.Module):
    """GALIP's mapper block before the CLIP-ViT branch: conv down -> TIF -> conv up -> TIF, residual."""

    def __init__(self, text_dim: int, channels: int, bottleneck: int, text_reweight: str):
        super().__init__()
        self.down = nn.Conv2d(channels, bottleneck, 3, padding=1)
        self.fuse1 = TIFBlock(text_dim, bottleneck, text_reweight)
        self.up = nn.Conv2d(bottleneck, channels, 3, padding=1)
        self.fuse2 = TIFBlock(text_dim, channels, text_reweight)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return x + self.fuse2(self.up(self.fuse1(self.down(x), text)), text)


class WordColours(nn.Module):
    """K colours read from a caption's words: query k attends over the tokens, each seen with its
    neighbours (a part's colour word sits beside its noun: "a red crown", "crown is red")."""

    def __init__(self, width: int, colours: int, hidden: int = 64, window: tuple[int, ...] = (-1, 0, 1, 2)):
        super().__init__()
        self.window = window
        self.key = nn.Linear(width * len(window), hidden)
        self.value = nn.Linear(width * len(window), hidden)
        self.queries = nn.Parameter(torch.randn(colours, hidden) / math.sqrt(hidden))
        self.out = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(hidden, 3))

    def forward(self, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """words (B, L, W) and mask (B, L), True on real tokens -> colours (B, K, 3)."""
        context = torch.cat([torch.roll(words, -offset, dims=1) for offset in self.window], dim=-1)
        scores = torch.einsum("kh,blh->bkl", self.queries, self.key(context)) / math.sqrt(self.queries.shape[1])
        attention = scores.masked_fill(~mask[:, None], float("-inf")).softmax(dim=-1)
        return self.out(torch.einsum("bkl,blh->bkh", attention, self.value(context)))


class TextPalette(nn.Module):
    """Blend the SR image with K colours read from the text, where the image features ask for them:
    out = a_0 * image + sum_k a_k * colour_k(text), a = softmax over K + 1 per-pixel logits. Starts close
    to the SR image (a_0 = 0.9 everywhere); the logits can be taught from part labels (`with_choice`)."""

    def __init__(self, text_dim: int, channels: int, colours: int, hidden: int = 128, word_width: int = 0):
        super().__init__()
        self.reads_words = word_width > 0
        self.colours = (WordColours(word_width, colours) if self.reads_words else
                        nn.Sequential(nn.Linear(text_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, colours * 3)))
        self.where = nn.Conv2d(channels, colours + 1, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Small random choices, the SR value favoured: a_0 = 0.9 and every colour 0.1 / K at the start."""
        k = self.where.out_channels - 1
        nn.init.normal_(self.where.weight, std=0.01)
        with torch.no_grad():
            self.where.bias.copy_(torch.tensor([math.log(9.0 * k)] + [0.0] * k))

    def forward(self, image: torch.Tensor, features: torch.Tensor, text: torch.Tensor,
                words: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The blended image and the per-pixel choice logits (B, K + 1, H, W; 0 = keep the SR value)."""
        logits = self.where(features)
        weights = torch.softmax(logits, dim=1)
        colours = self.colours(*words) if self.reads_words else self.colours(text)
        colours = colours.reshape(text.shape[0], -1, 3, 1, 1)                     # (B, K, 3, 1, 1)
        return weights[:, :1] * image + (weights[:, 1:, None] * colours).sum(dim=1), logits
