"""Per-image prompts from a .csv (columns image,prompt) or a .jsonl file ({"image": ..., "prompt": ...}).

Strict on purpose: a prompt that is missing, null, a number or a list would otherwise become a caption
like "None" or "3" and quietly steer the model; every error names the file and the row.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from clipsr_runtime.errors import OptionError


def load_prompts(path: Path) -> dict[str, str]:
    """image (path relative to the input folder, or file name) -> prompt."""
    if not path.is_file():
        raise OptionError(f"prompt file {path}: no such file")
    kind = path.suffix.lower()
    if kind not in (".csv", ".jsonl"):
        raise OptionError(f"prompt file {path}: use a .csv or .jsonl file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the header
    except UnicodeDecodeError as exc:
        raise ValueError(f"prompt file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    rows = _csv_rows(path, text) if kind == ".csv" else _jsonl_rows(path, text)
    prompts: dict[str, str] = {}
    for where, image, prompt in rows:
        image = _text(path, where, "image", image).replace("\\", "/")
        prompt = _text(path, where, "prompt", prompt)
        if prompts.get(image, prompt) != prompt:
            raise ValueError(f"prompt file {path}, {where}: {image} is listed twice with different prompts")
        prompts[image] = prompt
    if not prompts:
        raise ValueError(f"prompt file {path}: no rows")
    return prompts


def _text(path: Path, where: str, key: str, value: object) -> str:
    """A non-empty string, else an error naming the row (None, numbers, lists, objects refused)."""
    if value is None:
        raise ValueError(f"prompt file {path}, {where}: no {key}")
    if not isinstance(value, str):
        raise ValueError(f"prompt file {path}, {where}: {key} must be text, got {type(value).__name__} "
                         f"{json.dumps(value)[:40]}")
    if not value.strip():
        raise ValueError(f"prompt file {path}, {where}: empty {key}")
    return value.strip()


def _csv_rows(path: Path, text: str) -> list[tuple[str, object, object]]:
    reader = csv.reader(io.StringIO(text, newline=""))  # quoted fields may span lines
    try:
        header = [name.strip() for name in next(reader, [])]
        if "image" not in header or "prompt" not in header:
            raise ValueError(f"prompt file {path}: needs the header columns 'image,prompt'")
        image_col, prompt_col = header.index("image"), header.index("prompt")
        rows, line = [], reader.line_num
        for fields in reader:
            where, line = f"line {line + 1}", reader.line_num
            if not any(field.strip() for field in fields):
                continue
            if len(fields) != len(header):
                raise ValueError(f"prompt file {path}, {where}: {len(fields)} fields, the header has "
                                 f"{len(header)} (quote a prompt that contains commas)")
            rows.append((where, fields[image_col], fields[prompt_col]))
    except csv.Error as exc:
        raise ValueError(f"prompt file {path}, line {reader.line_num}: {exc}") from None
    return rows


def _jsonl_rows(path: Path, text: str) -> list[tuple[str, object, object]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except RecursionError:
            raise ValueError(f"prompt file {path}, line {number}: invalid JSON (nested too deeply)") from None
        except ValueError as exc:  # also an integer over Python's digit limit
            raise ValueError(f"prompt file {path}, line {number}: invalid JSON "
                             f"({getattr(exc, 'msg', exc)})") from None
        if not isinstance(row, dict) or not {"image", "prompt"} <= row.keys():
            raise ValueError(f"prompt file {path}, line {number}: needs keys 'image' and 'prompt'")
        rows.append((f"line {number}", row["image"], row["prompt"]))
    return rows
