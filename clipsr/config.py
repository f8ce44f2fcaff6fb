"""Model configuration: small frozen dataclasses. The named presets are data files in `model_configs/`,
read by `clipsr.factory` (as open_clip's model configs): every variant is the same code with other
numbers, and a field a preset leaves out keeps its default here, which is the paper's.
The CLIP architecture itself is an open_clip model config name (`ViT-B-32`, or our `clipsr-tiny` in
`clip_configs/`), so open_clip stays the one place that knows how to build a CLIP.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

SCALES = (4, 8, 16)
HR_SIZE = 256
FEATURE_SIZE = 8  # the encoder always ends at 8x8; the CLIP-ViT branch maps 8x8 to CLIP's 7x7 grid


@dataclass(frozen=True)
class CLIPConfig:
    """Which frozen CLIP: an open_clip architecture and where its weights come from."""

    arch: str = "ViT-B-32"
    # open_clip tag ("openai"), a local checkpoint path, or None for random weights (tests only).
    pretrained: str | None = "openai"
    quick_gelu: bool = True  # OpenAI's CLIP was trained with QuickGELU


@dataclass(frozen=True)
class GeneratorConfig:
    """Widths and switches of the generator (docs/architecture.md)."""

    scale: int = 16
    lr_res_width: int = 256          # global skip conv and R1 width, at LR resolution
    enc_width: int = 512             # width of every stride-2 level down to 8x8
    refine_channels: tuple[int, ...] = (512, 512, 512, 256)  # one G-block per entry (n_iter = 4)
    mapper_width: int = 32           # bottleneck of the TBlock before the CLIP-ViT branch
    n_prompts: int = 8               # prompt tokens, injected before CLIP visual blocks 1..n_prompts
    prompt_heads: int = 8
    up_width: int = 64
    text_reweight: str = "softmax"   # "softmax" (paper) or "none" (reference code)
    clip_branch: bool = True         # Table IV ablation: without the CLIP-ViT branch
    use_text: bool = True            # Table IV ablation: text replaced by zeros
    branch_gate_init: float = 0.1    # learnable gate of the CLIP-ViT branch; non-zero so it learns at once
    # "bicubic": the output is bicubic(LR) + the network's residual (ours, for short CPU training);
    # "none": the network draws the whole image (the paper)
    global_skip: str = "none"
    # "batch": standardise F_T per dimension (BatchNorm, running statistics at inference). A frozen CLIP's
    # sentence vectors share a large common part (caption-to-caption spread ~7% of their size), which
    # the affine MLPs are slow to see past; "none": F_T as it comes (the paper)
    text_norm: str = "none"
    # > 0: clamp the standardised text to +-text_clamp. A model trained on one phrasing has tiny per-dimension
    # spreads, so another phrasing standardises to hundreds of sigmas; the clamp keeps its output bounded
    text_clamp: float = 0.0
    # True: a TIF block in every upsampling stage (ours): the parts a caption names at 16x are thinner than
    # an LR pixel and are drawn at 32-256 px, where the paper's upsampler no longer sees the text
    up_text: bool = False
    # hidden width of a residual MLP on F_T shared by all text-conditioned blocks (ours); 0: none (the paper)
    text_mapper: int = 0
    # K > 0: a text palette at the output (ours, blocks.TextPalette): the text gives a colour for each of K
    # parts and whether it names them, a part locator reading the LR (clipsr.locator) chooses per pixel between
    # the SR value and a part
    text_palette: int = 0
    # True: the upsampler's output conv does the last x2 (RGB x 4 at half size + PixelShuffle, ESPCN's last
    # layer) in place of a last text-conditioned stage and a conv at full size, which took half the CPU time
    # of a 16x generator (ours, for the built-in demo); False: log2(scale) stages, then RGB (the paper)
    rgb_shuffle: bool = False

    @property
    def lr_size(self) -> int:
        return HR_SIZE // self.scale

    @property
    def refine_sizes(self) -> tuple[int, ...]:
        """Sizes of the G-blocks: doubling from 8x8 up to the LR size, then staying there."""
        return tuple(min(FEATURE_SIZE * 2**i, self.lr_size) for i in range(len(self.refine_channels)))

    @property
    def n_down(self) -> int:
        return int(math.log2(self.lr_size // FEATURE_SIZE))


@dataclass(frozen=True)
class ReferenceGeneratorConfig:
    """The widths of the authors' released generator (clipsr.reference), all it reads: their code fixes the
    rest (4x, LR 64; four G-blocks at 8, 16, 32 and 64 px with enc, enc, enc and body channels)."""

    scale: int = 4
    lr_res_width: int = 256          # body width: head, c1, the last G-block, conv_after_body
    enc_width: int = 512             # c2..c4 and the first three G-blocks
    up_width: int = 64               # conv_before_upsample and the PixelShuffle stages

    def __post_init__(self) -> None:
        if self.scale != 4:
            raise ValueError(f"the reference generator is 4x (LR 64 -> 256 px), got scale {self.scale}")

    @property
    def lr_size(self) -> int:
        return HR_SIZE // self.scale

    @property
    def refine_channels(self) -> tuple[int, ...]:
        return (self.enc_width,) * 3 + (self.lr_res_width,)

    @property
    def refine_sizes(self) -> tuple[int, ...]:
        return tuple(FEATURE_SIZE * 2**i for i in range(len(self.refine_channels)))


# "clipsr": our generator (clipsr.generator); "reference": the authors' released generator as their code
# computes it (clipsr.reference), so their checkpoint can be imported. Each reads its own config.
GENERATOR_CONFIGS: dict[str, type] = {"clipsr": GeneratorConfig, "reference": ReferenceGeneratorConfig}
ARCHITECTURES = tuple(GENERATOR_CONFIGS)
# A reference config written as a full GeneratorConfig (checkpoints converted before the reference had its
# own) also holds our generator's fields: switches at their "off" value, and widths of parts the reference
# does not have, which never mattered. Anything else would describe a generator it cannot build.
_REFERENCE_OFF = {"clip_branch": False, "global_skip": "none", "text_norm": "none", "text_clamp": 0.0,
                  "up_text": False, "text_mapper": 0, "text_palette": 0, "use_text": True, "text_reweight": "none",
                  "rgb_shuffle": False}
_REFERENCE_UNUSED = ("mapper_width", "n_prompts", "prompt_heads", "branch_gate_init")


@dataclass(frozen=True)
class DiscriminatorConfig:
    """GALIP's CLIP-based discriminator: taps of the frozen CLIP visual tower and the D-block widths."""

    taps: tuple[int, ...] = (1, 4, 8)     # patch tokens taken after these visual blocks (0-based)
    out_width: int = 512                  # width of the last D-block, before the text head
    head_width: int = 128


@dataclass(frozen=True)
class ModelConfig:
    preset: str = "paper-b32"
    architecture: str = "clipsr"
    clip: CLIPConfig = field(default_factory=CLIPConfig)
    generator: GeneratorConfig | ReferenceGeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if type(self.generator) is not GENERATOR_CONFIGS[self.architecture]:
            raise ValueError(f"architecture {self.architecture!r} reads a "
                             f"{GENERATOR_CONFIGS[self.architecture].__name__}, got {type(self.generator).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        architecture = data.get("architecture", "clipsr")  # an unknown one is refused by __post_init__
        generator = dict(data.get("generator", {}))
        if architecture == "reference":
            generator_config = _reference_generator(generator)
        else:
            if generator.get("skip_mismatch") == "project":  # saved when there was a choice; now the only way
                del generator["skip_mismatch"]
            generator_config = _build(GeneratorConfig, generator)
        return cls(
            preset=data.get("preset", "custom"),
            architecture=architecture,
            clip=_build(CLIPConfig, data.get("clip", {})),
            generator=generator_config,
            discriminator=_build(DiscriminatorConfig, data.get("discriminator", {})),
        )


def _build(kind: type, values: dict[str, Any]) -> Any:
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {kind.__name__} fields: {sorted(unknown)}")
    return kind(**values)


def _reference_generator(values: dict[str, Any]) -> ReferenceGeneratorConfig:
    """A reference generator's config, from its own fields or from a full GeneratorConfig of one
    (`_REFERENCE_OFF`); an error names what the reference has no part for."""
    on = [f"{name}={values[name]!r}" for name, off in _REFERENCE_OFF.items() if values.get(name, off) != off]
    if on:
        raise ValueError(f"the reference generator has no part for {', '.join(on)}")
    channels = values.get("refine_channels")
    config = _build(ReferenceGeneratorConfig, {k: v for k, v in values.items() if k != "refine_channels"
                                               and k not in _REFERENCE_OFF and k not in _REFERENCE_UNUSED})
    if channels is not None and tuple(channels) != config.refine_channels:
        raise ValueError(f"the reference generator's G-blocks are {config.refine_channels} (enc_width x 3, "
                         f"lr_res_width), got refine_channels {tuple(channels)}")
    return config


def apply_overrides(config: ModelConfig, overrides: dict[str, Any]) -> ModelConfig:
    """Set `clip.pretrained`, `generator.text_reweight`, ... on a frozen config."""
    data = config.to_dict()
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        section = section or "generator"
        if section not in ("clip", "generator", "discriminator"):
            raise ValueError(f"unknown config key {key!r}; sections: clip, generator, discriminator")
        if name not in data[section]:
            raise ValueError(f"unknown config key {key!r}; the {config.architecture} {section} has "
                             f"{', '.join(data[section])}")
        data[section][name] = value
    result = ModelConfig.from_dict(data)
    check_scale(result.generator.scale)
    return result


def check_scale(scale: int) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES} (LR 64/32/16 px -> 256 px), got {scale!r}")
