"""Training configurations: what every run needs (`RunConfig`, read by the loop in `training_run`) and what
each stage adds (`SRConfig`, `CLIPStageConfig`). Every field is read by its stage and settable from
`clipsr-train` (the flag is the field's name, `--set` for `model`, `--data-opt` for `data_options`); the
config is saved beside the checkpoints, and a resumed run keeps it."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from clipsr_runtime.errors import OptionError

from clipsr_runtime.atomic import atomic_write

CONFIG_FILE = "train_config.json"
AMP = ("off", "bf16", "fp16")
RESUMABLE = ("out", "steps", "device", "num_workers")  # where and how long a run trains, never what
FLAGS = {"model": "--set", "data_options": "--data-opt"}
# keys of run folders saved by earlier versions, when one config served both stages: the other stage's
# fields (never read) and settings no command line could change (always these values)
LEGACY_KEYS = {"sr": ("clip_lr", "attribute_loss", "betas", "perceptual_fallback"),
               "clip": ("init", "lr_g", "lr_d", "betas", "lambda_adv", "alpha", "ma_gp_k", "ma_gp_p",
                        "l1_weight", "part_loss", "perceptual", "perceptual_fallback")}
# dataset options since removed, saved with the value that is now the only behaviour (the demo recipe passed it)
LEGACY_DATA_OPTIONS = {"captions": "random"}


@dataclass
class RunConfig:
    """What the training loop reads, whatever the stage."""
    stage: ClassVar[str]
    preset: str = "tiny"
    scale: int = 16
    model: dict[str, Any] = field(default_factory=dict)        # ModelConfig overrides, "section.field"
    dataset: str = "synthbirds"
    data_root: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)  # passed to the dataset
    out: str = "runs/clipsr"
    steps: int = 1000
    batch_size: int = 16               # global batch, split over the processes of a torchrun job
    seed: int = 0
    device: str = "auto"
    amp: str = "off"                   # "bf16" or "fp16" autocast on CUDA
    num_workers: int = -1              # -1: 0 on CPU, 4 on CUDA
    log_every: int = 10
    ckpt_every: int = 200

    def check(self) -> None:
        """OptionError naming the flag of a value no run can use."""
        for name in ("steps", "batch_size", "log_every", "ckpt_every"):
            if getattr(self, name) < 1:
                raise OptionError(f"{flag(name)} must be at least 1, got {getattr(self, name)}")
        if self.amp not in AMP:
            raise OptionError(f"--amp must be off, bf16 or fp16, got {self.amp!r}")
        if self.num_workers < -1:
            raise OptionError(f"--num-workers must be -1 (automatic) or more, got {self.num_workers}")

    def to_json(self) -> str:
        return json.dumps({"stage": self.stage, **dataclasses.asdict(self)}, indent=2, sort_keys=True)

    def save(self, out_dir: Path) -> Path:
        return atomic_write(out_dir / CONFIG_FILE, lambda tmp: tmp.write_text(self.to_json() + "\n"))


@dataclass
class SRConfig(RunConfig):
    """Stage "sr": CLIP-SR itself, with the paper's losses and their weights."""
    stage: ClassVar[str] = "sr"
    init: str | None = None            # fine-tune: start from this checkpoint's model and weights (fresh optimisers)
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    lambda_adv: float = 0.01           # 0 turns the discriminator off (Table IV ablation "no D")
    alpha: float = 4.0                 # text-image similarity weight in the generator's adversarial loss
    ma_gp_k: float = 2.0               # MA-GP: k * mean(|grad|^p)
    ma_gp_p: float = 6.0
    l1_weight: float = 1.0
    part_loss: float = 1.0             # cross-entropy of the text palette's choice, when batches carry part labels
    perceptual: str | None = "imagenet"  # "imagenet", a weights file, "random" or None

    def check(self) -> None:
        super().check()
        if self.perceptual not in (None, "imagenet", "random") and not Path(self.perceptual).is_file():
            raise OptionError(f"--perceptual must be imagenet, random, off or a VGG-19 weights file; "
                              f"{self.perceptual!r} is none of these")


@dataclass
class CLIPStageConfig(RunConfig):
    """Stage "clip": contrastive pre-training of the preset's CLIP architecture."""
    stage: ClassVar[str] = "clip"
    clip_lr: float = 5e-4              # AdamW learning rate
    attribute_loss: float = 0.0        # weight of the caption-attribute head (datasets that label them)


STAGES: dict[str, type[RunConfig]] = {"sr": SRConfig, "clip": CLIPStageConfig}


def flag(name: str) -> str:
    """The clipsr-train option that sets config field `name`."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def config_from_json(text: str) -> RunConfig:
    """The config of the stage the text names (a run folder saved by an earlier version loads too)."""
    data = json.loads(text)
    stage = data.pop("stage", None) if isinstance(data, dict) else None
    if stage not in STAGES:
        raise KeyError(f"stage must be one of {sorted(STAGES)}, got {stage!r}")
    for key in LEGACY_KEYS[stage]:
        data.pop(key, None)
    options = data.get("data_options")
    for key, value in LEGACY_DATA_OPTIONS.items():
        if isinstance(options, dict) and options.get(key) == value:
            del options[key]
    return STAGES[stage](**data)


def load_config(path: Path) -> RunConfig:
    """A saved config, or a ValueError naming the file when it is not one."""
    try:
        return config_from_json(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError) as err:
        raise ValueError(f"{path} is not a clipsr training config ({type(err).__name__}: {err})") from err


def check_resume(saved: RunConfig, cfg: RunConfig) -> None:
    """A resumed run trains what it started with: OptionError naming every setting of `cfg` that differs
    from the run's own, where it may run and for how long aside."""
    if type(saved) is not type(cfg):
        raise OptionError(f"{cfg.out} holds a stage {saved.stage} run, not stage {cfg.stage}")
    changed = [f"{flag(f.name)} {getattr(cfg, f.name)!r} (the run's: {getattr(saved, f.name)!r})"
               for f in dataclasses.fields(cfg)
               if f.name not in RESUMABLE and getattr(cfg, f.name) != getattr(saved, f.name)]
    if changed:
        raise OptionError(f"a resumed run keeps its settings; {', '.join(changed)} "
                          f"{'differs' if len(changed) == 1 else 'differ'} (only "
                          f"{', '.join(flag(n) for n in RESUMABLE[1:])} may change; --restart starts over)")


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
