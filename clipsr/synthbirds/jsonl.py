"""Write a SynthBirds split as PNGs plus `<split>.jsonl` in the generic captioned-folder layout.

Lines follow clipsr.data.jsonl: `{"image": "<split>/<key>.png", "captions": [...], "key": ...}`, with the
bicubic LR PNG ("lr", 8-bit) and the described part colours ("colours") as extra fields.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from clipsr.data.resize import bicubic_downsample
from clipsr.synthbirds.captions import bird_captions
from clipsr.synthbirds.render import DESCRIBED_PARTS, SIZE, render, sample_spec
from clipsr.synthbirds.splits import bird_key, split_seeds


def export_jsonl(out_dir: str | Path, split: str = "train", count: int | None = None, scale: int = 16,
                 seed_offset: int = 0) -> Path:
    """Render `count` birds of `split` into `out_dir`; returns the path of the written .jsonl file."""
    if scale < 1 or SIZE % scale:
        raise ValueError(f"scale {scale} must divide the image size {SIZE}")
    seeds = split_seeds(split, count, seed_offset)
    out_dir = Path(out_dir)
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    (out_dir / f"{split}_lr_x{scale}").mkdir(exist_ok=True)
    lines = []
    for seed in seeds:
        spec, key = sample_spec(seed), bird_key(split, seed)
        hr, _ = render(spec)
        image, lr_image = f"{split}/{key}.png", f"{split}_lr_x{scale}/{key}.png"
        Image.fromarray(hr).save(out_dir / image)
        Image.fromarray(lr_uint8(hr, scale)).save(out_dir / lr_image)
        lines.append(json.dumps({"image": image, "captions": bird_captions(spec), "key": key, "lr": lr_image,
                                 "colours": {part: getattr(spec, part) for part in DESCRIBED_PARTS}}))
    path = out_dir / f"{split}.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)  # the index appears only once every image is written
    return path


def lr_uint8(hr: np.ndarray, scale: int) -> np.ndarray:
    """The 8-bit bicubic LR of a uint8 HR render, as its PNG holds it (what a user's LR file looks like)."""
    lr = bicubic_downsample(hr.astype(np.float32) / 255.0, scale)
    return np.round(np.clip(lr, 0, 1) * 255).astype(np.uint8)
