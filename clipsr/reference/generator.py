"""The generator of the authors' released CLIP-SR checkpoint, as their `NetG.forward` computes it, so
their trained weights give their images here (and through export, in the runtime).

What reaches their output, in order: LR resized (nearest) to the LR size; `head` (conv) = the LR
residual; `c1`, then three stride-2 convs `c2`..`c4`, each after one shared single-slope PReLU `R`;
four G-blocks (8, 16, 32, 64 px), each followed by the encoder feature of its size (c4, c3, c2, c1 out);
`conv_after_body` + the LR residual; `conv_before_upsample` (LeakyReLU at PyTorch's default slope
0.01); conv + PixelShuffle(2) twice, no activation; `tail`; no output activation. Their checkpoint
holds more modules (the CLIP mapper with a copy of the CLIP visual tower, `TBlocks`, `fc_code`,
G-blocks 5-6, `to_rgb`) whose results are overwritten or never computed: they are not built here.

Module names follow their state dict (`head.0`, `c1`, `R`, `conv_after_body.0`, `upsample.2`, ...) so
those load by name; the G-blocks are ours (`blocks.GBlock`, the same computation) and their keys are
renamed by `STATE_RENAMES`."""
from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import GBlock, PaletteOutput
from ..config import ReferenceGeneratorConfig

# Their G-block key names -> ours (`blocks.GBlock` / `TIFBlock` / `Affine`), applied in order.
STATE_RENAMES = (
    (r"^GBlocks\.(\d+)\.c1\.", r"GBlocks.\1.conv1."),
    (r"^GBlocks\.(\d+)\.c2\.", r"GBlocks.\1.conv2."),
    (r"^GBlocks\.(\d+)\.c_sc\.", r"GBlocks.\1.shortcut."),
    (r"\.affine1\.", ".affine2."),
    (r"\.affine0\.", ".affine1."),
    (r"\.fc_(gamma|beta)\.linear1\.", r".\1.0."),
    (r"\.fc_(gamma|beta)\.linear2\.", r".\1.2."),
)


def rename_state_key(key: str) -> str:
    """A key of their netG state dict -> the same tensor's key in ReferenceGenerator."""
    for pattern, replacement in STATE_RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


def _conv(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)


class ReferenceGenerator(nn.Module):
    """(LR in [-1, 1] of any size, CLIP sentence embedding) -> SR (B, 3, 256, 256) at 4x.

    Its widths come from a ReferenceGeneratorConfig (lr_res_width = head, c1 and body width, enc_width,
    up_width)."""

    def __init__(self, cfg: ReferenceGeneratorConfig, text_dim: int):
        super().__init__()
        self.cfg, self.text_dim = cfg, text_dim
        enc, body = cfg.enc_width, cfg.lr_res_width
        self.head = nn.Sequential(_conv(3, body))
        self.c1 = _conv(3, body)
        self.R = nn.PReLU()  # one slope shared by the three activations of the encoder
        self.c2 = _conv(body, enc, stride=2)
        self.c3 = _conv(enc, enc, stride=2)
        self.c4 = _conv(enc, enc, stride=2)
        channels = (enc,) + cfg.refine_channels
        self.GBlocks = nn.ModuleList(GBlock(text_dim, channels[i], channels[i + 1], size, "none")
                                     for i, size in enumerate(cfg.refine_sizes))
        quarter = body // 4
        self.conv_after_body = nn.Sequential(
            _conv(body, quarter), nn.LeakyReLU(0.2), nn.Conv2d(quarter, quarter, 1), nn.LeakyReLU(0.2),
            _conv(quarter, body))
        self.conv_before_upsample = nn.Sequential(_conv(body, cfg.up_width), nn.LeakyReLU(0.01))
        stages = []
        for _ in range(int(math.log2(cfg.scale))):
            stages += [_conv(cfg.up_width, 4 * cfg.up_width), nn.PixelShuffle(2)]
        self.upsample = nn.Sequential(*stages)
        self.tail = nn.Sequential(_conv(cfg.up_width, 3))

    def forward(self, lr: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise ValueError(f"LR image must have shape (B, 3, h, w), got {tuple(lr.shape)}")
        if text.dim() != 2 or text.shape[1] != self.text_dim or text.shape[0] != lr.shape[0]:
            raise ValueError(f"text embedding must have shape ({lr.shape[0]}, {self.text_dim}), "
                             f"got {tuple(text.shape)}")
        size = self.cfg.lr_size
        lr = F.interpolate(lr, size=(size, size), mode="nearest")
        residual = self.head(lr)
        r1 = self.c1(lr)
        r2 = self.c2(self.R(r1))
        r3 = self.c3(self.R(r2))
        r4 = self.c4(self.R(r3))
        h = r4
        for block, skip in zip(self.GBlocks, (r4, r3, r2, r1)):
            h = block(h, text) + skip
        h = self.conv_before_upsample(self.conv_after_body(h) + residual)
        return self.tail(self.upsample(h))

    def render(self, lr: torch.Tensor, text: torch.Tensor) -> PaletteOutput:
        """The trainer's entry point (the reference has no text palette: the image only)."""
        return PaletteOutput(self(lr, text))
