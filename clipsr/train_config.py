"""Training configuration: one dataclass, every knob with its paper default, saved beside checkpoints."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipsr_runtime.atomic import atomic_write

CONFIG_FILE = "train_config.json"


@dataclass
class TrainConfig:
    stage: str = "sr"                  # "sr": CLIP-SR itself; "clip": contrastive pre-training of a CLIP
    preset: str = "tiny"
    scale: int = 16
    model: dict[str, Any] = field(default_factory=dict)        # ModelConfig overrides, "section.field"
    init: str | None = None            # fine-tune: start from this checkpoint's model and weights (fresh optimisers)
    dataset: str = "synthbirds"
    data_root: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)  # passed to the dataset
    out: str = "runs/clipsr"
    steps: int = 1000
    batch_size: int = 16               # global batch, split over the processes of a torchrun job
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.9)
    lambda_adv: float = 0.01           # 0 turns the discriminator off (Table IV ablation "no D")
    alpha: float = 4.0                 # text-image similarity weight in the generator's adversarial loss
    ma_gp_k: float = 2.0
    ma_gp_p: float = 6.0
    l1_weight: float = 1.0
    part_loss: float = 1.0             # cross-entropy of the text palette's choice, when batches carry part labels
    perceptual: str | None = "imagenet"  # "imagenet", a weights file, "random" or None
    perceptual_fallback: str = "off"     # when the VGG weights are missing: "off", "random" or "raise"
    clip_lr: float = 5e-4              # stage "clip": AdamW learning rate
    attribute_loss: float = 0.0        # stage "clip": weight of the caption-attribute head (datasets that label them)
    seed: int = 0
    device: str = "auto"
    amp: str = "off"                   # "bf16" or "fp16" autocast on CUDA
    num_workers: int = -1              # -1: 0 on CPU, 4 on CUDA
    log_every: int = 10
    ckpt_every: int = 200

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        data = json.loads(text)
        data["betas"] = tuple(data["betas"])
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        """A saved config, or a ValueError naming the file when it is not one."""
        try:
            return cls.from_json(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError) as err:
            raise ValueError(f"{path} is not a clipsr training config ({type(err).__name__}: {err})") from err

    def save(self, out_dir: Path) -> Path:
        return atomic_write(out_dir / CONFIG_FILE, lambda tmp: tmp.write_text(self.to_json() + "\n"))


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """["generator.use_text=false", "mismatch_lr_prob=0.5"] -> typed dict (JSON values where they parse)."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {item!r}")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result
