"""Where the described parts are, read from the LR alone: the text palette's per-pixel choice.

A part thinner than an LR pixel still leaves a trace in the LR (a head tinted at its top, a wing edge), and
a small CNN that sees the whole 16x16 LR with its coordinates learns where such a part sits from many birds
in minutes, with cross-entropy on part masks. Learnt inside the SR stage as a 1x1 conv on the upsampler's
features, the same choice never became sure enough to paint, so it is trained on its own first
(`clipsr.synthbirds.locator_stage`) and stays frozen in the SR stage.
"""
from __future__ import annotations

import torch
from torch import nn

from .upsample import MatrixUpsample

UPSCALE = 4  # logits at 4x the LR size (64x64 at 16x): a part's thin dimension spans 2-3 logit cells


class _Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PartLocator(nn.Module):
    """LR (B, 3, S, S) in [-1, 1] -> logits (B, parts + 1, 4S, 4S) over "no described part" and each part.

    The x/y coordinates enter as two extra channels: where a bird's head is says where its crown can be."""

    def __init__(self, lr_size: int, parts: int, scale: int = 16, width: int = 32, blocks: int = 3):
        super().__init__()
        if scale % UPSCALE:
            raise ValueError(f"the part locator needs a scale that is a multiple of {UPSCALE}, got {scale}")
        # bilinear to the SR size as two matrix products: ONNX Runtime's Resize kernel is slow on a CPU
        self.to_sr_size = MatrixUpsample(lr_size * UPSCALE, scale // UPSCALE, "bilinear")
        axis = torch.linspace(-1.0, 1.0, lr_size)
        self.register_buffer("coords", torch.stack(torch.meshgrid(axis, axis, indexing="xy"))[None], persistent=False)
        self.stem = nn.Sequential(nn.Conv2d(5, width, 3, padding=1), nn.LeakyReLU(0.2))
        self.blocks = nn.Sequential(*(_Residual(width) for _ in range(blocks)))
        self.up = nn.Sequential(*(layer for _ in range(UPSCALE.bit_length() - 1) for layer in (
            nn.Conv2d(width, width * 4, 3, padding=1), nn.PixelShuffle(2), nn.LeakyReLU(0.2))))
        self.out = nn.Conv2d(width, parts + 1, 3, padding=1)
        for conv in self.modules():  # He init for LeakyReLU(0.2): PyTorch's default fades the signal ~0.4x a conv
            if isinstance(conv, nn.Conv2d):
                nn.init.kaiming_normal_(conv.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(conv.bias)
        for block in self.blocks:  # residual branches start small, so the stack starts near its stem
            block.body[-1].weight.data.mul_(0.1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = torch.cat([lr, self.coords.expand(lr.shape[0], -1, -1, -1)], dim=1)
        return self.out(self.up(self.blocks(self.stem(x))))

    def choice(self, lr: torch.Tensor) -> torch.Tensor:
        """Logits upsampled (bilinear) to the SR size."""
        return self.to_sr_size(self(lr))
