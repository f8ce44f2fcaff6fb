"""Training state beside the model checkpoint: optimiser moments and the step, in safetensors (tensors)
with the rest as JSON metadata, so resuming never unpickles anything."""
from __future__ import annotations

import json
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from .atomic import atomic_write
from .checkpoint import CheckpointError

STATE_FILE = "train_state.safetensors"


def save_train_state(path: Path, step: int, optimizers: dict[str, torch.optim.Optimizer]) -> Path:
    tensors: dict[str, torch.Tensor] = {}
    groups: dict[str, list] = {}
    for name, opt in optimizers.items():
        state = opt.state_dict()
        groups[name] = state["param_groups"]
        for index, slots in state["state"].items():
            for slot, value in slots.items():
                tensors[f"{name}.{index}.{slot}"] = value.detach().cpu().contiguous()
    meta = {"format": "clipsr-train-state", "step": str(step), "param_groups": json.dumps(groups)}
    return atomic_write(path, lambda tmp: safetensors.torch.save_file(tensors, str(tmp), metadata=meta))


def load_train_state(path: Path, optimizers: dict[str, torch.optim.Optimizer]) -> int:
    """Restore the optimisers in place; returns the step to continue from."""
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
    groups = json.loads(meta["param_groups"])
    for name, opt in optimizers.items():
        state: dict[int, dict[str, torch.Tensor]] = {}
        prefix = f"{name}."
        for key, value in tensors.items():
            if key.startswith(prefix):
                index, slot = key[len(prefix):].split(".", 1)
                state.setdefault(int(index), {})[slot] = value
        for group in groups[name]:
            if "betas" in group:
                group["betas"] = tuple(group["betas"])
        opt.load_state_dict({"state": state, "param_groups": groups[name]})
    return int(meta["step"])
