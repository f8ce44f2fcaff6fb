"""PyTorch inference helpers shared by evaluation and benchmarks: batched SR and 8-bit conversion."""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from .model import CLIPSR


@torch.no_grad()
def super_resolve(model: CLIPSR, lr: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
    """LR batch in [-1, 1] + captions -> SR batch clamped to [-1, 1]."""
    device = next(model.generator.parameters()).device
    return model.generator(lr.to(device), model.encode_text(model.tokenize(captions).to(device))).clamp(-1, 1)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8, rounded as a saved image is."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return x.permute(0, 2, 3, 1).numpy().astype(np.uint8)


def batches(dataset, count: int, batch_size: int) -> Iterator[list[dict]]:
    """The first `count` items of a dataset in lists of `batch_size`."""
    count = min(count, len(dataset))
    for start in range(0, count, batch_size):
        yield [dataset[i] for i in range(start, min(count, start + batch_size))]
