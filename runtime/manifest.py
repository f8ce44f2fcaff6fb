"""The model-folder contract (docs/model-folder.md): the names both sides share and the one schema
`model.json` is checked against.

The runtime owns the contract because it is the reader: `clipsr_export` imports these definitions to
write a folder, so the writer cannot drift from what is read. A model folder is a trust boundary, so
`load_manifest` checks every field's type and range, keeps every path inside the folder and checks
every listed file's sha256 before anything is run.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

FORMAT = "clipsr-model"
FORMAT_VERSION = 2
# Version 1 also stated `lr_size`, which version 2 derives (hr_size / scale); both are read.
READABLE_VERSIONS = (1, 2)
MANIFEST = "model.json"
ENGINES = "engines"
# Extend here: export's choices, the ONNX file names and the runtime's choices follow.
PRECISIONS = ("fp32", "fp16", "int8")
STAGES = ("text_encoder", "generator")
# stage -> "inputs"/"outputs" -> tensor name -> (dtype, rank): the graphs' names the backends feed.
STAGE_IO = {
    "text_encoder": {"inputs": {"tokens": ("int32", 2)}, "outputs": {"text_embedding": ("float32", 2)}},
    "generator": {"inputs": {"lr": ("float32", 4), "text_embedding": ("float32", 2)},
                  "outputs": {"sr": ("float32", 4)}},
}
DEFAULT_CONTEXT_LENGTH = 77
MIN_CONTEXT_LENGTH = 2  # start- and end-of-text tokens
# Upper bounds far above any CLIP-SR model, so a hostile folder cannot make the runtime allocate gigabytes.
MAX_CONTEXT_LENGTH = 4096
MAX_SCALE = 64
MAX_HR_SIZE = 8192
MAX_MANIFEST_BYTES = 1 << 24
# Optional model card fields that are text (docs/model-folder.md)
CARD_TEXT = ("architecture", "source", "checkpoint", "licence", "trained_on")
# value_range bounds: the runtime maps images into it in float32, where a wider range overflows and a
# narrower one loses the image to rounding.
MAX_VALUE = 1e6
MIN_SPAN = 1e-3
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(ValueError):
    """A model folder whose model.json does not follow the contract, or whose files do not match it."""


@dataclass(frozen=True)
class Stage:
    """One ONNX graph of the model: its file per precision and its named inputs/outputs
    (name -> {"shape": [int | str, ...], "dtype": str}; an int dimension is fixed, a string dynamic)."""

    files: dict[str, str]
    inputs: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Manifest:
    """The parsed, validated `model.json` of `root`."""

    root: Path
    format_version: int
    name: str
    scale: int
    hr_size: int
    value_range: tuple[float, float]
    tokenizer: dict[str, Any]  # vocab, context_length (always set), optional sot/eot tokens, lowercase
    text_encoder: Stage
    generator: Stage
    files: dict[str, dict[str, Any]]

    @property
    def lr_size(self) -> int:
        return self.hr_size // self.scale

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


class _Invalid(Exception):
    """A schema violation; `load_manifest` adds the folder to the message."""


# --- typed field access ---------------------------------------------------------------------------

def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _take(raw: dict, key: str, where: str, expected: type | tuple[type, ...], *, optional: bool = False) -> Any:
    """raw[key] of the expected JSON type (a boolean is not an integer here); None if optional and absent."""
    if key not in raw:
        if optional:
            return None
        raise _Invalid(f"{where}{key} is missing")
    value = raw[key]
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(_kind(k()) for k in kinds)
        raise _Invalid(f"{where}{key} must be {names}, got {_kind(value)}")
    return value


def _int(raw: dict, key: str, where: str, minimum: int, maximum: int | None = None, *,
         optional: bool = False) -> int | None:
    value = _take(raw, key, where, int, optional=optional)
    if value is not None and (value < minimum or maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise _Invalid(f"{where}{key} must be {bounds}, got {value}")
    return value


def _finite(value: Any) -> bool:
    """A JSON number that fits a float and is finite (a huge integer does not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _relative_path(value: Any, where: str) -> str:
    """A file name relative to the folder: no absolute path, no '..', no backslash, nothing empty."""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise _Invalid(f"{where} must be a non-empty file name, got {value!r}")
    if PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute() or PureWindowsPath(value).drive:
        raise _Invalid(f"{where} {value!r} is an absolute path: files must be inside the model folder")
    if "\\" in value or ".." in PurePosixPath(value).parts:
        raise _Invalid(f"{where} {value!r} leaves the model folder")
    return value


def _plain_name(value: Any, where: str) -> str:
    """The model name also names its engine cache folder: one path component, no separators."""
    if not isinstance(value, str) or not value.strip() or value in (".", "..") or re.search(r"[/\\\x00]", value):
        raise _Invalid(f"{where} must be a plain name (no '/', '\\' or '..'), got {value!r}")
    return value


def check_name(name: str) -> str:
    """A model name the contract accepts (the writer checks it before any work), else ValueError."""
    try:
        return _plain_name(name, "model name")
    except _Invalid as exc:
        raise ValueError(str(exc)) from None


# --- the schema -----------------------------------------------------------------------------------

def _tensor(raw: Any, where: str, dtype: str, rank: int) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _Invalid(f"{where} must be an object with 'shape' and 'dtype', got {_kind(raw)}")
    shape = _take(raw, "shape", f"{where}.", list)
    if len(shape) != rank:
        raise _Invalid(f"{where}.shape must have {rank} dimensions, got {len(shape)}")
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, (int, str)) or (isinstance(dim, int) and dim < 1) \
                or (isinstance(dim, str) and not dim):
            raise _Invalid(f"{where}.shape dimensions must be integers >= 1 or names, got {dim!r}")
    if _take(raw, "dtype", f"{where}.", str) != dtype:
        raise _Invalid(f"{where}.dtype must be {dtype!r}, got {raw['dtype']!r}")
    return {"shape": list(shape), "dtype": dtype}


def _stage(raw: Any, name: str) -> Stage:
    if not isinstance(raw, dict):
        raise _Invalid(f"{name} must be an object, got {_kind(raw)}")
    files = _take(raw, "files", f"{name}.", dict)
    if "fp32" not in files or not set(files) <= set(PRECISIONS):
        raise _Invalid(f"{name}.files must have 'fp32' and only {', '.join(PRECISIONS)}, got {sorted(files)}")
    files = {p: _relative_path(f, f"{name}.files.{p}") for p, f in files.items()}
    parts = {}
    for part, expected in STAGE_IO[name].items():
        given = _take(raw, part, f"{name}.", dict)
        if set(given) != set(expected):
            raise _Invalid(f"{name}.{part} must be exactly {sorted(expected)}, got {sorted(given)}")
        parts[part] = {t: _tensor(given[t], f"{name}.{part}.{t}", *expected[t]) for t in expected}
    return Stage(files, parts["inputs"], parts["outputs"])


def _tokenizer(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _Invalid(f"tokenizer must be an object, got {_kind(raw)}")
    tok = {"vocab": _relative_path(_take(raw, "vocab", "tokenizer.", str), "tokenizer.vocab"),
           "context_length": _int(raw, "context_length", "tokenizer.", MIN_CONTEXT_LENGTH, MAX_CONTEXT_LENGTH,
                                  optional=True) or DEFAULT_CONTEXT_LENGTH}
    for key in ("sot_token", "eot_token"):
        value = _int(raw, key, "tokenizer.", 0, optional=True)
        if value is not None:
            tok[key] = value
    if _take(raw, "lowercase", "tokenizer.", bool, optional=True) is not None:
        tok["lowercase"] = raw["lowercase"]
    return tok


def _value_range(raw: dict) -> tuple[float, float]:
    pair = _take(raw, "value_range", "", list)
    if len(pair) != 2 or not all(_finite(v) and abs(v) <= MAX_VALUE for v in pair) \
            or not pair[1] - pair[0] >= MIN_SPAN:
        raise _Invalid(f"value_range must be two finite numbers [low, high] within +-{MAX_VALUE:g}, high at "
                       f"least {MIN_SPAN:g} above low, got {json.dumps(pair)[:80]}")
    return float(pair[0]), float(pair[1])


def _files(raw: dict) -> dict[str, dict[str, Any]]:
    files = _take(raw, "files", "", dict)
    checked = {}
    for name, entry in files.items():
        _relative_path(name, "files:")
        if not isinstance(entry, dict):
            raise _Invalid(f"files.{name} must be an object with 'sha256', got {_kind(entry)}")
        digest = _take(entry, "sha256", f"files.{name}.", str)
        if not _SHA256.fullmatch(digest):
            raise _Invalid(f"files.{name}.sha256 must be 64 lowercase hex digits, got {digest!r}")
        size = _int(entry, "bytes", f"files.{name}.", 0, optional=True)
        checked[name] = {"sha256": digest} | ({} if size is None else {"bytes": size})
    return checked


def _check_shapes(m: Manifest) -> None:
    """The numbers the graphs state must agree with the scale, the sizes and the tokenizer."""
    tokens = m.text_encoder.inputs["tokens"]["shape"]
    if isinstance(tokens[1], int) and tokens[1] != m.tokenizer["context_length"]:
        raise _Invalid(f"tokenizer.context_length {m.tokenizer['context_length']} does not match the text "
                       f"encoder's tokens shape {tokens}")
    dims = {m.text_encoder.outputs["text_embedding"]["shape"][1], m.generator.inputs["text_embedding"]["shape"][1]}
    if len({d for d in dims if isinstance(d, int)}) > 1:
        raise _Invalid(f"text_embedding widths disagree between the stages: {sorted(dims, key=str)}")
    for tensor, size in (("lr", m.lr_size), ("sr", m.hr_size)):
        spec = (m.generator.inputs if tensor == "lr" else m.generator.outputs)[tensor]["shape"]
        if isinstance(spec[1], int) and spec[1] != 3:
            raise _Invalid(f"generator {tensor} must have 3 channels, shape is {spec}")
        if any(isinstance(d, int) and d != size for d in spec[2:]):
            raise _Invalid(f"generator {tensor} shape {spec} does not match {size} px "
                           f"(scale {m.scale}, hr_size {m.hr_size})")


def _model_card(raw: dict, m: Manifest) -> None:
    """The optional model card (where the weights came from, their licence, what they were trained on):
    text for people, but its scale and LR size, when stated, must be the folder's."""
    card = _take(raw, "model_card", "", dict, optional=True)
    if card is None:
        return
    for key in CARD_TEXT:
        _take(card, key, "model_card.", str, optional=True)
    for key, value in (("scale", m.scale), ("lr_size", m.lr_size)):
        stated = _int(card, key, "model_card.", 1, optional=True)
        if stated is not None and stated != value:
            raise _Invalid(f"model_card.{key} {stated} does not match the folder's {key} {value}")


def parse_manifest(root: Path, raw: Any) -> Manifest:
    """The one schema: `raw` (parsed JSON) -> Manifest, or ManifestError naming the first problem.
    Checks structure only; `load_manifest` also checks the files on disk."""
    try:
        return _parse(root, raw)
    except _Invalid as exc:
        raise ManifestError(f"invalid model folder {root}: {exc}") from None


def _parse(root: Path, raw: Any) -> Manifest:
    if not isinstance(raw, dict):
        raise _Invalid(f"model.json must hold an object, got {_kind(raw)}")
    if raw.get("format") != FORMAT:
        raise _Invalid(f"model.json 'format' must be '{FORMAT}'")
    version = raw.get("format_version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise _Invalid(f"format_version {version!r} is not supported (this runtime reads "
                       f"{', '.join(map(str, READABLE_VERSIONS))})")
    scale = _int(raw, "scale", "", 1, MAX_SCALE)
    hr_size = _int(raw, "hr_size", "", 1, MAX_HR_SIZE)
    if hr_size % scale:
        raise _Invalid(f"scale {scale} does not divide hr_size {hr_size}")
    lr_size = _int(raw, "lr_size", "", 1, optional=version >= 2)
    if lr_size is not None and lr_size * scale != hr_size:
        raise _Invalid(f"lr_size {lr_size} x scale {scale} != hr_size {hr_size}")
    manifest = Manifest(
        root=root, format_version=version, name=_plain_name(_take(raw, "name", "", str), "name"), scale=scale,
        hr_size=hr_size, value_range=_value_range(raw), tokenizer=_tokenizer(_take(raw, "tokenizer", "", dict)),
        text_encoder=_stage(_take(raw, "text_encoder", "", dict), "text_encoder"),
        generator=_stage(_take(raw, "generator", "", dict), "generator"), files=_files(raw))
    _check_shapes(manifest)
    for key, kind in (("preset", str), ("opset", int), ("parity", dict), ("source", dict), ("engines", list)):
        _take(raw, key, "", kind, optional=True)
    _model_card(raw, manifest)
    for i, engine in enumerate(raw.get("engines") or ()):
        if not isinstance(engine, dict):
            raise _Invalid(f"engines[{i}] must be an object, got {_kind(engine)}")
        _relative_path(_take(engine, "file", f"engines[{i}].", str), f"engines[{i}].file")
    referenced = [manifest.tokenizer["vocab"], *manifest.text_encoder.files.values(),
                  *manifest.generator.files.values()]
    unlisted = [n for n in referenced if n not in manifest.files]
    if unlisted:
        raise _Invalid(f"'files' has no sha256 for {', '.join(unlisted)}")
    return manifest


# --- the folder -----------------------------------------------------------------------------------

def load_manifest(model_dir: str | Path, verify: bool = True) -> Manifest:
    """Parse and validate `model_dir/model.json`; every listed file must exist inside the folder (no
    symlink out) with its size and, with `verify`, its sha256, whether this run uses it or not."""
    root = Path(model_dir)
    path = root / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"model folder {root} has no {MANIFEST} (pass --model DIR of a "
                                "folder written by clipsr-export)")
    inside = root.resolve()
    if not _inside(path, inside):
        raise ManifestError(f"invalid model folder {root}: {MANIFEST} resolves outside the folder (symlink)")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"invalid model folder {root}: {MANIFEST} is over {MAX_MANIFEST_BYTES} bytes")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # ValueError: also an integer over Python's digit limit
        why = exc if not isinstance(exc, RecursionError) else "nested too deeply"
        raise ManifestError(f"invalid model folder {root}: {path} is not valid JSON ({why})") from None
    manifest = parse_manifest(root, raw)
    for name, entry in manifest.files.items():
        file = root / name
        if not _inside(file, inside):
            raise ManifestError(f"invalid model folder {root}: {name} resolves outside the folder (symlink)")
        if not file.is_file():
            raise FileNotFoundError(f"model folder {root} is incomplete: {name} is missing")
        if "bytes" in entry and file.stat().st_size != entry["bytes"]:
            raise ManifestError(f"model file {file} has {file.stat().st_size} bytes, model.json says "
                                f"{entry['bytes']}: truncated or tampered")
    _refuse_unlisted(manifest)
    if verify:
        verify_files(manifest, list(manifest.files))
    return manifest


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder)
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _refuse_unlisted(manifest: Manifest) -> None:
    """Every file in the folder is listed (and so size- and hash-checked), except model.json and the
    engine cache: a graph may name more files (ONNX external data), which a backend would read
    unverified."""
    listed = set(manifest.files)
    for entry in sorted(manifest.root.rglob("*")):
        rel = entry.relative_to(manifest.root)
        if rel.parts[0] in (MANIFEST, ENGINES) or entry.is_dir() and not entry.is_symlink():
            continue
        if rel.as_posix() not in listed:
            raise ManifestError(f"invalid model folder {manifest.root}: {rel.as_posix()} is not listed in "
                                f"{MANIFEST} (a graph could read it unverified): remove it or export again")


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
            raise ManifestError(f"model file {manifest.path(name)} does not match its sha256 in "
                                f"model.json (tampered or corrupted): {actual[:12]}... != "
                                f"{manifest.sha256(name)[:12]}...")


def builtin_models_dir() -> Path:
    return Path(__file__).resolve().parent / "models"


def default_model_dir(models_dir: Path | None = None) -> Path:
    """The single built-in model folder (one under clipsr_runtime/models/ with a model.json)."""
    base = models_dir or builtin_models_dir()
    found = sorted(p.parent for p in base.glob(f"*/{MANIFEST}"))
    if not found:
        raise FileNotFoundError(f"no built-in model in {base}: pass --model DIR (a folder written "
                                "by clipsr-export) or run clipsr-export")
    if len(found) > 1:
        raise ValueError(f"several built-in models in {base} ({', '.join(p.name for p in found)}): "
                         "pass --model DIR")
    return found[0]
