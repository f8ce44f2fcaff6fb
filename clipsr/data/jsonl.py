"""A generic captioned image list for user data: one JSON object a line,
`{"image": "<path relative to the jsonl file>", "captions": ["...", ...], "key": optional}`.
`root` is the .jsonl file itself or a folder holding `<split>.jsonl`."""
from __future__ import annotations

import json
from pathlib import Path

from clipsr.data.sample import CaptionedImageDataset, Record


def jsonl_dataset(root: str | Path, split: str, scale: int, train: bool, **options) -> CaptionedImageDataset:
    """Build a dataset from a JSONL list (see the module docstring for the format)."""
    path = Path(root)
    if path.is_dir():
        path = path / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"JSONL list not found: {path}")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            records.append(_parse_line(line, path, number))
    return CaptionedImageDataset(records, scale, train, source=f"JSONL {path}", **options)


def _parse_line(line: str, path: Path, number: int) -> Record:
    where = f"{path}:{number}"
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: invalid JSON ({error.msg})") from None
    if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
        raise ValueError(f"{where}: expected an object with an 'image' path")
    captions = entry.get("captions")
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise ValueError(f"{where}: 'captions' must be a list of strings")
    captions = tuple(c.strip() for c in captions if c.strip())
    if not captions:
        raise ValueError(f"{where}: no non-empty caption for {entry['image']}")
    return Record(str(entry.get("key", entry["image"])), path.parent / entry["image"], captions)
