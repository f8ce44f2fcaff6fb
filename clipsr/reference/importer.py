"""Reading the authors' checkpoint (`state_epoch_220.pth`) safely, and only what their forward uses.

Their training script saves `torch.save({'model': {'netG', 'netD', 'netC'}, 'optimizers': {...},
'epoch': n})`, with `module.` before every netG key when trained on several GPUs. It is read with
`torch.load(weights_only=True)` only: tensors, dicts, numbers; a file whose pickle needs any other object
is refused, never unpickled. The layout is recognised from netG's keys, with no flag. netG keys of
modules that never reach the output are counted and left out; any other key that does not fit the
reference generator is an error that names it."""
from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import CheckpointError
from .generator import ReferenceGenerator, rename_state_key

MULTI_GPU_PREFIX = "module."
# Their netG keys and shapes, derived by reading their code (tests build checkpoints in this layout)
NETG_KEYS = Path(__file__).parent / "netG_keys.json"
# netG modules whose results are overwritten (`mapping` with its CLIP visual copy, `TBlocks`, `fc_code`)
# or never computed (G-blocks 5 and 6, `to_rgb`) in their forward.
DEAD_PREFIXES = ("mapping.", "TBlocks.", "fc_code.", "GBlocks.4.", "GBlocks.5.", "to_rgb.")
# Keys that only the reference generator has: enough to tell its state dict from any other.
# The input of the first G-block's first affine MLP: the width of the sentence embedding they were trained on.
TEXT_WIDTH_KEY = "GBlocks.0.fuse1.affine0.fc_gamma.linear1.weight"
SIGNATURE = ("head.0.weight", "c1.weight", "R.weight", "conv_before_upsample.0.weight", TEXT_WIDTH_KEY)


class ReferenceCheckpointError(CheckpointError):
    """The file is not a readable CLIP-SR reference checkpoint, or does not fit the reference generator."""


@dataclass(frozen=True)
class ReferenceWeights:
    """The live generator weights (our key names, float32) and the parameters left out, per module."""

    generator: dict[str, torch.Tensor]
    dead: dict[str, int]

    @property
    def dead_parameters(self) -> int:
        return sum(self.dead.values())


def load_pickle(path: str | Path) -> object:
    """`torch.load(weights_only=True)` with its failures as one ReferenceCheckpointError each."""
    path = Path(path)
    if not path.is_file():
        raise ReferenceCheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        needs = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        raise ReferenceCheckpointError(
            f"{path} needs more than plain weights to unpickle{f' ({needs[1]})' if needs else ''}: refused "
            f"(only torch.load(weights_only=True) files are read; nothing in it was run)") from None
    except Exception as err:  # torch.load raises many kinds for a file it cannot read; one line says it
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ReferenceCheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or another "
                                       f"format): {why}") from None


def netg_state(data: object) -> dict[str, torch.Tensor] | None:
    """Their netG state dict from a loaded checkpoint (`{'model': {'netG': ...}}` or a bare netG state
    dict), `module.` stripped; None when the keys are not the reference generator's."""
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"].get("netG")
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        return None
    if data and all(k.startswith(MULTI_GPU_PREFIX) for k in data):
        data = {k[len(MULTI_GPU_PREFIX):]: v for k, v in data.items()}
    if not all(key in data for key in SIGNATURE):
        return None
    return data


def split_weights(state: dict[str, torch.Tensor], generator: ReferenceGenerator, path: str | Path) -> ReferenceWeights:
    """Their netG state -> the live weights in `generator`'s names, checked key by key and shape by shape."""
    live, dead = {}, {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ReferenceCheckpointError(f"{path}: netG entry {key} is not a tensor")
        prefix = next((p for p in DEAD_PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            dead[prefix.rstrip(".")] = dead.get(prefix.rstrip("."), 0) + value.numel()
        else:
            live[rename_state_key(key)] = (key, value)
    expected = generator.state_dict()
    missing = [k for k in expected if k not in live]
    extra = [live[k][0] for k in live if k not in expected]
    if missing or extra:
        raise ReferenceCheckpointError(
            f"{path} does not fit the reference generator: missing {', '.join(missing) or 'none'}; "
            f"unexpected {', '.join(extra) or 'none'}")
    wrong = [f"{live[k][0]} {tuple(live[k][1].shape)} (expected {tuple(t.shape)})"
             for k, t in expected.items() if live[k][1].shape != t.shape]
    if wrong:
        raise ReferenceCheckpointError(f"{path}: shapes do not fit the reference generator: {', '.join(wrong)}")
    weights = {k: live[k][1].float() for k in expected}
    bad = [live[k][0] for k, t in weights.items() if not torch.isfinite(t).all()]
    if bad:
        raise ReferenceCheckpointError(f"{path} holds non-finite weights ({', '.join(bad)})")
    return ReferenceWeights(weights, dead)
