"""Text-conditioned building blocks of the generator (DF-GAN / GALIP style)."""
from __future__ import annotations

from dataclasses import dataclass

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


class TextPalette(nn.Module):
    """Paint the parts a caption names in the colours it gives them: out = p_keep * image + sum_k p_k * colour_k.

    From the text, per part k: a colour and whether the caption names the part at all (a logit); from a part
    locator (`clipsr.locator`), per pixel: logits over "keep the SR value" and the K parts. A part the caption
    does not name cannot be chosen (its logit is shifted by log sigmoid(named_k)), so "a bird" leaves the SR
    image as it is. "Where" and "which colour" are learnt apart: FiLM alone must learn text x location as one
    product inside its channels, which short training does not. Each output can be taught directly
    (SynthBirds part labels): the choice from the part masks, the colours and names from the caption."""

    def __init__(self, text_dim: int, parts: int, hidden: int = 128):
        super().__init__()
        self.parts = parts
        self.text = nn.Sequential(nn.Linear(text_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, parts * 4))

    def read(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the text says of each part, without an image: colours (B, K, 3) in [-1, 1] and named logits
        (B, K), as `forward` reads them (a palette's text reader can be taught from captions alone)."""
        read = self.text(text).view(-1, self.parts, 4)
        return read[..., :3], read[..., 3]

    def forward(self, image: torch.Tensor, choice: torch.Tensor, text: torch.Tensor,
                to_image_size: nn.Module | None = None) -> PaletteOutput:
        """`choice`: the locator's logits (B, K + 1, h, w), at the image's size or, with `to_image_size` (a
        linear upsampling whose weights sum to 1, such as bilinear), at a smaller one. The per-part shift and the
        softmax's per-pixel maximum are then taken before upsampling, on 16x fewer pixels: upsampling commutes
        with a per-channel shift, and the softmax ignores a per-pixel one (the upsampled logits stay <= 0, since
        the weights are convex, so `exp` cannot overflow)."""
        colours, named = self.read(text)                                          # (B, K, 3), (B, K)
        # ONNX writes logsigmoid as Log(Sigmoid), -inf for a clearly unnamed part, and the upsampling's zero
        # weights would turn that into NaN; exp(-1e4) is 0 in float32 as exp(-inf) is
        shift = F.logsigmoid(named).clamp(min=-1e4)
        choice = torch.cat([choice[:, :1], choice[:, 1:] + shift[:, :, None, None]], dim=1)
        choice = choice - choice.amax(dim=1, keepdim=True)
        if to_image_size is not None:
            choice = to_image_size(choice)
        # softmax written out, its division left to the end on 3 channels: exported as is, ONNX Runtime's CPU
        # Softmax over a non-last axis of a (B, 5, 256, 256) tensor transposes it and takes ~6x longer
        e = torch.exp(choice)
        b, k, h, w = e[:, 1:].shape
        painted = (colours.transpose(1, 2) @ e[:, 1:].reshape(b, k, h * w)).view(b, 3, h, w)
        return PaletteOutput((e[:, :1] * image + painted) * torch.reciprocal(e.sum(dim=1, keepdim=True)),
                             choice, colours, named)


@dataclass
class PaletteOutput:
    """The painted image, the per-pixel choice logits (B, K + 1, H, W; 0 = keep the SR value), and what the
    palette read from the text: colours (B, K, 3) in [-1, 1] and named logits (B, K). Without a palette,
    only the image."""

    image: torch.Tensor
    choice: torch.Tensor | None = None
    colours: torch.Tensor | None = None
    named: torch.Tensor | None = None
