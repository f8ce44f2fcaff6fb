"""Safe checkpoints: safetensors weights with the model config in the header metadata. Nothing is ever
unpickled; the file is written to a temporary name and renamed, so a crash leaves no half file."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from clipsr_runtime.atomic import atomic_write

from .config import ModelConfig, check_scale
from .model import CLIPSR

FORMAT = "clipsr-checkpoint"
# The built-in demo model, trained on SynthBirds (clipsr/demo/MODEL_CARD.md); `clipsr-export` uses it
# when given no checkpoint.
DEMO_CHECKPOINT = Path(__file__).parent / "demo" / "synthbirds-tiny-x16.safetensors"
VERSION = "1"
MODEL_CARD = "model_card"  # metadata key: where the weights came from (JSON), when known


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged or not what was asked for."""


def save_checkpoint(model: CLIPSR, path: str | Path, *, dtype: torch.dtype | None = None,
                    **metadata: str) -> Path:
    """Weights (optionally stored as `dtype`, e.g. float16 to halve a shipped file) + config."""
    if dtype is not None:
        model = copy.deepcopy(model).to(dtype)
    meta = {"format": FORMAT, "version": VERSION, "config": model.config.to_json(), **metadata}
    if model.card is not None:
        meta[MODEL_CARD] = json.dumps(model.card, sort_keys=True)
    return atomic_write(path, lambda tmp: safetensors.torch.save_model(model, str(tmp), metadata=meta))


def read_metadata(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} is damaged or not a safetensors file ({err})") from err
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a clipsr checkpoint (no '{FORMAT}' metadata)")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} is a clipsr checkpoint of format version {meta.get('version')!r}; this "
                              f"clipsr reads version {VERSION}")
    return meta


def read_config(path: str | Path) -> ModelConfig:
    """The model config a checkpoint records, checked as far as building a model from it relies on."""
    meta = read_metadata(path)
    try:
        config = ModelConfig.from_dict(json.loads(meta["config"]))
        check_scale(config.generator.scale)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: the model config in its metadata is unusable ({err})") from err
    return config


def read_card(path: str | Path) -> dict | None:
    """The model card a checkpoint carries (an imported model's origin), or None."""
    card = read_metadata(path).get(MODEL_CARD)
    try:
        return None if card is None else json.loads(card)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: the model card in its metadata is unreadable ({err})") from err


def load_weights(model: CLIPSR, path: str | Path, map_location: str | torch.device = "cpu") -> CLIPSR:
    """Load a checkpoint's weights into a model built from the same config, in place."""
    if read_config(path).to_dict() != model.config.to_dict():
        raise CheckpointError(f"checkpoint {path} was made with another model config")
    try:
        missing, unexpected = safetensors.torch.load_model(model, str(path), strict=False, device=str(map_location))
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} does not load: {err}") from err
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path} does not match its config: missing {sorted(missing)[:5]}, "
                              f"unexpected {sorted(unexpected)[:5]}")
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"checkpoint {path} holds non-finite weights ({name})")
    return model
