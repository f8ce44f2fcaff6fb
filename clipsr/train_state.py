"""Training state beside the model checkpoint: optimiser moments, the step and the fp16 loss scale, in
safetensors (tensors) with the rest as JSON metadata, so resuming never unpickles anything."""
from __future__ import annotations

import json
import re
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from clipsr_runtime.atomic import atomic_write

from .checkpoint import CheckpointError

STATE_FILE = "train_state.safetensors"


def save_train_state(path: Path, step: int, optimizers: dict[str, torch.optim.Optimizer],
                     scaler: torch.amp.GradScaler) -> Path:
    tensors: dict[str, torch.Tensor] = {}
    groups: dict[str, list] = {}
    for name, opt in optimizers.items():
        state = opt.state_dict()
        groups[name] = state["param_groups"]
        for index, slots in state["state"].items():
            for slot, value in slots.items():
                tensors[f"{name}.{index}.{slot}"] = value.detach().cpu().contiguous()
    meta = {"format": "clipsr-train-state", "step": str(step), "param_groups": json.dumps(groups),
            "grad_scaler": json.dumps(scaler.state_dict())}
    return atomic_write(path, lambda tmp: safetensors.torch.save_file(tensors, str(tmp), metadata=meta))


def load_train_state(path: Path, optimizers: dict[str, torch.optim.Optimizer], scaler: torch.amp.GradScaler) -> int:
    """Restore the optimisers and the loss scaler in place; returns the step to continue from. The step
    must be an integer and every moment fit its parameter (shape, finite values), so a bad file fails
    before any training step."""
    if not path.is_file():
        raise CheckpointError(f"no training state to resume from: {path}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:
        raise CheckpointError(f"training state {path} is damaged ({err})") from err
    if meta.get("format") != "clipsr-train-state":
        raise CheckpointError(f"{path} is not a clipsr training state")
    if not re.fullmatch(r"[0-9]+", meta.get("step", "")):
        raise CheckpointError(f"{path}: the step must be a non-negative integer, got {meta.get('step')!r}")
    try:
        groups = json.loads(meta["param_groups"])
        states = {name: _optimizer_state(name, opt, tensors) for name, opt in optimizers.items()}
        for name, opt in optimizers.items():
            for group in groups[name]:
                if "betas" in group:
                    group["betas"] = tuple(group["betas"])
            opt.load_state_dict({"state": states[name], "param_groups": groups[name]})
        if scaler.is_enabled():  # a state saved without a scale (an older run, or fp32) starts a fresh one
            scaler.load_state_dict(json.loads(meta.get("grad_scaler", "{}")) or scaler.state_dict())
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"training state {path} does not fit this model's optimisers ({err})") from err
    return int(meta["step"])


def _optimizer_state(name: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> dict:
    """The saved moments of one optimiser, by parameter index, each checked against its parameter."""
    params = [p for group in opt.param_groups for p in group["params"]]
    state: dict[int, dict[str, torch.Tensor]] = {}
    prefix = f"{name}."
    for key, value in tensors.items():
        if not key.startswith(prefix):
            continue
        index, slot = key[len(prefix):].split(".", 1)
        index = int(index)
        if not 0 <= index < len(params):
            raise ValueError(f"{key}: no parameter {index} (the optimiser has {len(params)})")
        if slot != "step" and value.shape != params[index].shape:
            raise ValueError(f"{key} has shape {tuple(value.shape)}, its parameter {tuple(params[index].shape)}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"{key} holds non-finite values")
        state.setdefault(index, {})[slot] = value
    return state
