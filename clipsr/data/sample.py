"""The one dataset class every loader feeds: a list of captioned images turned into HR/LR training pairs.

Loaders only find files and captions (`Record`s); cropping, resizing, LR degradation and the item
format live here once, so every dataset yields exactly the same kind of item.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from clipsr.data.resize import bicubic_downsample

# DF-GAN/GALIP resize the shorter side to 76/64 of the crop (304 for 256) before cropping.
LOAD_RATIO = 76 / 64


@dataclass(frozen=True)
class Record:
    """One image on disk with its captions and an optional (left, top, right, bottom) pre-crop box,
    clipped to the image when applied."""

    key: str
    image: Path
    captions: tuple[str, ...]
    box: tuple[int, int, int, int] | None = None


class CaptionedImageDataset(Dataset):
    """HR crop + bicubic LR + caption per item; random crop/flip/caption in training, centre crop and
    first caption in evaluation.

    Items: {"hr": (3, S, S), "lr": (3, S/scale, S/scale)} float tensors in [-1, 1], "caption", "key".
    The LR is quantised to 8 bits, as a user's LR image would be. With `skip_bad`, an image that cannot
    be decoded is replaced by the next readable one and counted in `bad_images` with a warning; without
    it, it raises naming the file.
    """

    def __init__(self, records: list[Record], scale: int, train: bool, *, hr_size: int = 256,
                 skip_bad: bool = False, source: str = "dataset") -> None:
        if not records:
            raise ValueError(f"{source}: no images found")
        if scale < 1 or hr_size % scale:
            raise ValueError(f"scale {scale} must divide the HR size {hr_size}")
        missing = [r.image for r in records if not r.image.is_file()]
        if missing and not skip_bad:
            raise FileNotFoundError(f"{source}: image not found: {missing[0]} ({len(missing)} missing in all)")
        if missing:
            warnings.warn(f"{source}: skipped {len(missing)} missing images (first: {missing[0]})", stacklevel=2)
            records = [r for r in records if r.image.is_file()]
            if not records:
                raise ValueError(f"{source}: none of the listed images exist")
        self.records = records
        self.scale = scale
        self.train = train
        self.hr_size = hr_size
        self.skip_bad = skip_bad
        self.bad_images: set[Path] = set()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        for offset in range(len(self.records)):
            record = self.records[(index + offset) % len(self.records)]
            if record.image in self.bad_images:
                continue
            try:
                image = _read_rgb(record.image)
            except ValueError:
                if not self.skip_bad:
                    raise
                self.bad_images.add(record.image)
                warnings.warn(f"skipping unreadable image {record.image} "
                              f"({len(self.bad_images)} skipped so far)", stacklevel=2)
                continue
            return self._make_item(record, image)
        raise ValueError("no readable image left in the dataset")

    def _make_item(self, record: Record, image: Image.Image) -> dict:
        if record.box is not None:
            left, top, right, bottom = record.box
            w, h = image.size
            image = image.crop((max(0, left), max(0, top), min(w, right), min(h, bottom)))
        hr = _resize_shorter(image, round(self.hr_size * LOAD_RATIO))
        w, h = hr.size
        if self.train:
            left = int(torch.randint(0, w - self.hr_size + 1, ()).item())
            top = int(torch.randint(0, h - self.hr_size + 1, ()).item())
        else:
            left, top = (w - self.hr_size) // 2, (h - self.hr_size) // 2
        hr = hr.crop((left, top, left + self.hr_size, top + self.hr_size))
        if self.train and torch.rand(()).item() < 0.5:
            hr = hr.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        hr01 = np.asarray(hr, dtype=np.float32) / 255.0
        lr01 = np.round(np.clip(bicubic_downsample(hr01, self.scale), 0.0, 1.0) * 255.0) / 255.0
        pick = int(torch.randint(0, len(record.captions), ()).item()) if self.train else 0
        return {"hr": _to_tensor(hr01), "lr": _to_tensor(lr01), "caption": record.captions[pick],
                "key": record.key}


def _read_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error


def _resize_shorter(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    ratio = size / min(w, h)
    new = (max(size, round(w * ratio)), max(size, round(h * ratio)))
    return image.resize(new, Image.Resampling.BICUBIC)


def _to_tensor(image01: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image01.transpose(2, 0, 1))).float() * 2.0 - 1.0
