"""Where a model is built: `create_model(name_or_path)` (open_clip's pattern). Three sources, told apart
by what they are, never by a flag:

- a preset name: the data file `model_configs/<name>.json` (fields it leaves out keep the dataclass
  defaults, the paper's), at a scale, with `section.field=value` overrides;
- a clipsr checkpoint (`.safetensors` with clipsr metadata): its own config and weights, CLIP included;
- the authors' CLIP-SR checkpoint (a `torch.save` pickle whose netG keys are their generator's): the
  `cub-reference` preset with their generator weights and the CLIP weights given as `clip_weights`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from .checkpoint import CheckpointError, load_weights, read_card, read_config, read_metadata
from .config import ModelConfig, apply_overrides, check_scale
from .model import CLIPSR
from .params import count
from .reference import importer
from .reference.generator import ReferenceGenerator
from .run_folder import verify_listed

MODEL_CONFIGS = Path(__file__).parent / "model_configs"
REFERENCE_PRESET = "cub-reference"
REFERENCE_SOURCE = "https://github.com/Bingwen-Hu/CLIP-SR (README: Download the pretrained models)"


def list_presets() -> list[str]:
    return sorted(p.stem for p in MODEL_CONFIGS.glob("*.json"))


def get_config(preset: str, scale: int | None = None, **overrides: Any) -> ModelConfig:
    """A preset at a scale (default: the preset's own), with overrides given as `section.field=value` or
    plain generator fields."""
    path = MODEL_CONFIGS / f"{preset}.json"
    if not path.is_file():
        raise ValueError(f"unknown preset {preset!r}; choose one of {list_presets()}")
    config = ModelConfig.from_dict({**json.loads(path.read_text(encoding="utf-8")), "preset": preset})
    if scale is not None:
        check_scale(scale)
        overrides = {"generator.scale": scale, **overrides}
    return apply_overrides(config, overrides)


def create_model(name_or_path: str | Path = "tiny", *, scale: int | None = None, preset: str | None = None,
                 clip_weights: str | None = None, **overrides: Any) -> CLIPSR:
    """The model named by a preset, or stored in a checkpoint file (see the module's docstring).

    For a file, `scale` and `preset` are checks against what it holds; a clipsr checkpoint takes no
    overrides (it carries its config). `clip_weights` (an open_clip tag such as "openai", or a local
    `.pt`/`.safetensors` CLIP state dict) sets `clip.pretrained`; the authors' checkpoint needs it, since
    it holds no text encoder."""
    if clip_weights is not None:
        overrides = {**overrides, "clip.pretrained": clip_weights}
    path = Path(name_or_path)
    if not path.is_file():
        if isinstance(name_or_path, Path) or str(name_or_path).endswith((".safetensors", ".pth", ".pt")):
            raise CheckpointError(f"checkpoint not found: {path}")
        if preset is not None and preset != name_or_path:
            raise ValueError(f"preset {preset!r} and model {name_or_path!r} disagree")
        return CLIPSR(get_config(str(name_or_path), scale, **overrides))
    try:
        read_metadata(path)
    except CheckpointError as err:
        if path.suffix == ".safetensors" or _is_safetensors(path):
            raise err
        return _from_reference(path, scale, preset, overrides)
    if overrides:
        raise ValueError(f"{path} carries its model config; {sorted(overrides)} do not apply")
    return _from_checkpoint(path, scale, preset)


def warm_start_model(start: str | Path, preset: str | None = None, *, scale: int | None = None,
                     **overrides: Any) -> tuple[CLIPSR, list[str]]:
    """A new model holding every weight of clipsr checkpoint `start` whose name and shape match, and the names
    of its weights that were not there (they keep their fresh initialisation): how a stage continues from a
    model trained before a part existed or with another shape, which `create_model` (a strict load) refuses.
    The config is `preset`'s at `scale` with `overrides`, or without a preset the one `start` carries."""
    path = Path(start)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if preset is None:
        if scale is not None or overrides:
            raise ValueError("a warm start from the checkpoint's own config takes no scale or overrides")
        model = _unloaded_model(read_config(path))
    else:
        model = create_model(preset, scale=scale, **overrides)
    state = load_file(str(path))
    own = model.state_dict()
    taken = {k: v.to(own[k].dtype) for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(taken, strict=False)
    loaded = {own[k].data_ptr() for k in taken}  # a module shared under several names is saved under one
    return model, sorted(k for k in own if k not in taken and own[k].data_ptr() not in loaded)


def _unloaded_model(config: ModelConfig) -> CLIPSR:
    """A model of a checkpoint's config before its weights are read: the checkpoint carries the frozen CLIP
    too, so it is built empty instead of fetched; `config` (the CLIP's source included) stays the model's."""
    model = CLIPSR(dataclasses.replace(config, clip=dataclasses.replace(config.clip, pretrained=None)))
    model.config = config
    return model


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with its header length and `{`; anything else may be a torch pickle."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _check(path: Path, config: ModelConfig, scale: int | None, preset: str | None) -> None:
    if preset is not None and preset != config.preset:
        raise CheckpointError(f"{path} holds preset {config.preset!r}, not {preset!r}")
    if scale is not None and scale != config.generator.scale:
        raise CheckpointError(f"{path} holds a {config.generator.scale}x model, not {scale}x")


def _from_checkpoint(path: Path, scale: int | None, preset: str | None) -> CLIPSR:
    """Rebuild the model from the checkpoint's own config (CLIP weights included, nothing fetched); in a
    run folder, the file must match the digest its manifest records."""
    verify_listed(path)
    config = read_config(path)
    _check(path, config, scale, preset)
    model = _unloaded_model(config)
    model.card = read_card(path)
    return load_weights(model, path)


def _from_reference(path: Path, scale: int | None, preset: str | None, overrides: dict[str, Any]) -> CLIPSR:
    """The authors' checkpoint: their live generator weights into the reference preset's model."""
    state = importer.netg_state(importer.load_pickle(path))
    if state is None:
        raise CheckpointError(f"{path} is neither a clipsr checkpoint nor the authors' CLIP-SR checkpoint "
                              f"(no netG with their generator's keys)")
    if overrides.get("clip.pretrained") is None:
        raise ValueError(f"{path} is the authors' CLIP-SR checkpoint, which holds no text encoder: pass the "
                         f"CLIP weights (clip_weights / --clip-weights: 'openai' or a local file)")
    config = get_config(REFERENCE_PRESET, **overrides)
    _check(path, config, scale, preset)
    # Check the weights against an empty generator before the CLIP weights load (slow, maybe online).
    text_dim = int(state[importer.TEXT_WIDTH_KEY].shape[1])
    weights = importer.split_weights(state, ReferenceGenerator(config.generator, text_dim), path)
    model = CLIPSR(config)
    if model.text_encoder.embed_dim != text_dim:
        raise CheckpointError(f"{path}: its G-blocks read a {text_dim}-wide text embedding, CLIP "
                              f"{config.clip.arch} gives {model.text_encoder.embed_dim}")
    model.generator.load_state_dict(weights.generator)
    model.card = {"architecture": "clip-sr-reference", "source": REFERENCE_SOURCE, "checkpoint": path.name,
                  "licence": "unknown (the authors' repository states none)", "trained_on": "CUB-200-2011",
                  "scale": config.generator.scale, "lr_size": config.generator.lr_size,
                  "parameters": {"generator": count(model.generator), "checkpoint_dead": weights.dead_parameters,
                                 "checkpoint_dead_per_module": weights.dead}}
    return model

