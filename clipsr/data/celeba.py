"""CelebA-HQ with per-image captions, MM-CelebA-HQ layout: `<root>/images/<id>.jpg` (or .png),
`<root>/text/<id>.txt` (one caption a line) and a split list, either `<root>/<split>/filenames.pickle`
(DF-GAN style) or `<root>/<split>.txt` (one id a line)."""
from __future__ import annotations

from pathlib import Path

from clipsr.data.captions import read_caption_file, read_name_list
from clipsr.data.sample import CaptionedImageDataset, Record

SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg")


def celeba_dataset(root: str | Path, split: str, scale: int, train: bool, *, image_dir: str = "images",
                   text_dir: str = "text", **options) -> CaptionedImageDataset:
    """Build CelebA-HQ for `split`; `image_dir`/`text_dir` rename the sub-folders (e.g. celeba-caption)."""
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"CelebA split must be one of {SPLITS}, got {split!r}")
    candidates = [root / split / "filenames.pickle", root / f"{split}.txt"]
    split_file = next((c for c in candidates if c.is_file()), None)
    if split_file is None:
        raise FileNotFoundError(f"CelebA split list not found: tried {candidates[0]} and {candidates[1]}")
    records = [Record(name, _find_image(root / image_dir, name), read_caption_file(root / text_dir / f"{name}.txt"))
               for name in read_name_list(split_file)]
    return CaptionedImageDataset(records, scale, train, source=f"CelebA {split} ({root})", **options)


def _find_image(folder: Path, name: str) -> Path:
    """The image file for an id, whatever its suffix; the .jpg path (reported missing later) if none."""
    return next((folder / f"{name}{s}" for s in IMAGE_SUFFIXES if (folder / f"{name}{s}").is_file()),
                folder / f"{name}.jpg")
