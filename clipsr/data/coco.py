"""COCO captions from the official annotation JSON: `<root>/annotations/captions_<split><year>.json`
and images in `<root>/<split><year>/`. Split "test" means val (COCO's test captions are not public;
text-to-image papers evaluate on val)."""
from __future__ import annotations

import json
import warnings
from collections import defaultdict
from pathlib import Path

from clipsr.data.sample import CaptionedImageDataset, Record

SPLITS = {"train": "train", "val": "val", "test": "val"}


def coco_dataset(root: str | Path, split: str, scale: int, train: bool, *, year: str = "2017",
                 **options) -> CaptionedImageDataset:
    """Build COCO for `split` ("train", "val" or "test" = val) of the given `year` ("2017", "2014")."""
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"COCO split must be one of {tuple(SPLITS)}, got {split!r}")
    folder = f"{SPLITS[split]}{year}"
    path = root / "annotations" / f"captions_{folder}.json"
    if not path.is_file():
        raise FileNotFoundError(f"COCO caption file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = {entry["id"]: entry["file_name"] for entry in data["images"]}
        annotations = data["annotations"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a COCO caption file: {error!r}") from error
    captions: dict[int, list[str]] = defaultdict(list)
    for entry in annotations:
        text = str(entry.get("caption", "")).strip()
        if not text:
            raise ValueError(f"{path}: annotation {entry.get('id')} has an empty caption")
        captions[entry["image_id"]].append(text)
    uncaptioned = [i for i in images if not captions.get(i)]
    if uncaptioned:
        warnings.warn(f"{path}: skipped {len(uncaptioned)} images without captions", stacklevel=2)
    records = [Record(Path(images[i]).stem, root / folder / images[i], tuple(captions[i]))
               for i in sorted(images) if captions.get(i)]
    return CaptionedImageDataset(records, scale, train, source=f"COCO {folder} ({path})", **options)
