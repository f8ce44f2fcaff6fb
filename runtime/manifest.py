"""Load and check a model folder's `model.json` (the contract in docs/model-folder.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "clipsr-model"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16")
_REQUIRED = ("format", "format_version", "name", "scale", "lr_size", "hr_size", "value_range",
             "tokenizer", "text_encoder", "generator", "files")
_STAGE_IO = {"text_encoder": (("tokens",), ("text_embedding",)),
             "generator": (("lr", "text_embedding"), ("sr",))}


@dataclass(frozen=True)
class Stage:
    """One ONNX graph of the model: its file per precision and its named inputs/outputs."""

    files: dict[str, str]
    inputs: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Manifest:
    """The parsed `model.json` of `root`."""

    root: Path
    name: str
    scale: int
    lr_size: int
    hr_size: int
    value_range: tuple[float, float]
    tokenizer: dict[str, Any]
    text_encoder: Stage
    generator: Stage
    files: dict[str, dict[str, Any]]

    def path(self, name: str) -> Path:
        return self.root / name

    def stage_file(self, stage: str, precision: str) -> Path:
        """Path of a stage's ONNX file at a precision; clear error when it was not exported."""
        files = getattr(self, stage).files
        if precision not in files:
            raise ValueError(f"model {self.root} has no {precision} {stage} "
                             f"(exported: {', '.join(sorted(files))})")
        return self.path(files[precision])

    def sha256(self, name: str) -> str:
        return self.files[name]["sha256"]


def _fail(root: Path, why: str) -> ValueError:
    return ValueError(f"invalid model folder {root}: {why}")


def _stage(root: Path, name: str, raw: Any) -> Stage:
    if not isinstance(raw, dict) or not {"files", "inputs", "outputs"} <= raw.keys():
        raise _fail(root, f"'{name}' needs 'files', 'inputs' and 'outputs'")
    inputs, outputs = _STAGE_IO[name]
    if set(raw["inputs"]) != set(inputs) or set(raw["outputs"]) != set(outputs):
        raise _fail(root, f"'{name}' must have inputs {list(inputs)} and outputs {list(outputs)}")
    if "fp32" not in raw["files"] or not set(raw["files"]) <= set(PRECISIONS):
        raise _fail(root, f"'{name}.files' must have 'fp32' and only {list(PRECISIONS)}")
    return Stage(dict(raw["files"]), dict(raw["inputs"]), dict(raw["outputs"]))


def load_manifest(model_dir: str | Path) -> Manifest:
    """Parse and validate `model_dir/model.json`; files must exist with the listed sizes."""
    root = Path(model_dir)
    path = root / "model.json"
    if not path.is_file():
        raise FileNotFoundError(f"model folder {root} has no model.json (pass --model DIR of a "
                                "folder written by clipsr-export)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(root, f"model.json is not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise _fail(root, f"model.json 'format' must be '{FORMAT}'")
    if raw.get("format_version") != FORMAT_VERSION:
        raise _fail(root, f"format_version {raw.get('format_version')!r} is not supported "
                          f"(this runtime reads {FORMAT_VERSION})")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise _fail(root, f"model.json lacks {', '.join(missing)}")
    tokenizer = raw["tokenizer"]
    if not isinstance(tokenizer, dict) or "vocab" not in tokenizer:
        raise _fail(root, "'tokenizer' needs 'vocab'")
    manifest = Manifest(
        root=root, name=str(raw["name"]), scale=int(raw["scale"]), lr_size=int(raw["lr_size"]),
        hr_size=int(raw["hr_size"]), value_range=tuple(map(float, raw["value_range"])),
        tokenizer=tokenizer, text_encoder=_stage(root, "text_encoder", raw["text_encoder"]),
        generator=_stage(root, "generator", raw["generator"]), files=dict(raw["files"]))
    if manifest.lr_size * manifest.scale != manifest.hr_size:
        raise _fail(root, f"lr_size {manifest.lr_size} x scale {manifest.scale} != hr_size {manifest.hr_size}")
    referenced = [tokenizer["vocab"], *manifest.text_encoder.files.values(), *manifest.generator.files.values()]
    unlisted = [n for n in referenced if n not in manifest.files]
    if unlisted:
        raise _fail(root, f"'files' has no sha256 for {', '.join(unlisted)}")
    for name, entry in manifest.files.items():
        file = root / name
        if not file.is_file():
            raise FileNotFoundError(f"model folder {root} is incomplete: {name} is missing")
        if "bytes" in entry and file.stat().st_size != entry["bytes"]:
            raise ValueError(f"model file {file} has {file.stat().st_size} bytes, model.json says "
                             f"{entry['bytes']}: truncated or tampered")
    return manifest


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(manifest: Manifest, names: list[str]) -> None:
    """Refuse files whose sha256 differs from the manifest (tampered or corrupted)."""
    for name in names:
        actual = file_sha256(manifest.path(name))
        if actual != manifest.sha256(name):
            raise ValueError(f"model file {manifest.path(name)} does not match its sha256 in "
                             f"model.json (tampered or corrupted): {actual[:12]}... != "
                             f"{manifest.sha256(name)[:12]}...")


def builtin_models_dir() -> Path:
    return Path(__file__).resolve().parent / "models"


def default_model_dir(models_dir: Path | None = None) -> Path:
    """The single built-in model folder (one under clipsr_runtime/models/ with a model.json)."""
    base = models_dir or builtin_models_dir()
    found = sorted(p.parent for p in base.glob("*/model.json"))
    if not found:
        raise FileNotFoundError(f"no built-in model in {base}: pass --model DIR (a folder written "
                                "by clipsr-export) or run clipsr-export")
    if len(found) > 1:
        raise ValueError(f"several built-in models in {base} ({', '.join(p.name for p in found)}): "
                         "pass --model DIR")
    return found[0]
