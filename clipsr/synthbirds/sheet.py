"""A contact sheet of birds (HR beside its bicubic LR brought back to 256 px) to eyeball the renderer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from clipsr.data.resize import bicubic_downsample, imresize
from clipsr.synthbirds.render import SIZE, render, sample_spec
from clipsr.synthbirds.splits import split_seeds


def contact_sheet(path: str | Path, count: int = 12, columns: int = 3, scale: int = 16, split: str = "val") -> Path:
    """Save `count` birds of `split` as HR | upsampled-LR pairs, `columns` pairs per row."""
    if count < 1 or columns < 1:
        raise ValueError(f"count ({count}) and columns ({columns}) must be positive")
    tiles = []
    for seed in split_seeds(split, count):
        hr, _ = render(sample_spec(seed))
        lr = bicubic_downsample(hr.astype(np.float32) / 255.0, scale)
        back_up = np.round(np.clip(imresize(lr, (SIZE, SIZE)), 0, 1) * 255).astype(np.uint8)
        tiles.append(np.concatenate([hr, back_up], axis=1))
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    path = Path(path)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path
