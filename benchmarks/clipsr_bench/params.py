"""Parameter counts per preset and scale (clipsr.params.parameter_report), with random CLIP weights:
counting needs no download. One CLIP is built per preset and shared by all scales (it dominates the
build time)."""
from __future__ import annotations

import logging
from collections.abc import Iterable

from clipsr.clip import load_clip
from clipsr.factory import get_config
from clipsr.model import CLIPSR
from clipsr.params import parameter_report

from clipsr_bench.paper import PAPER_CLIPSR_PARAMS

REPORTED = ("paper_convention", "unique_total", "trainable", "frozen", "deploy", "clip_text", "clip_visual",
            "generator", "generator_with_clip_trunk", "discriminator")


def preset_counts(preset: str, scales: Iterable[int]) -> dict[str, dict[str, int]]:
    """{scale: {count name: parameters}} for one preset."""
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns on purpose about random weights
    configs = {s: get_config(preset, s, **{"clip.pretrained": None}) for s in scales}
    clip = load_clip(next(iter(configs.values())).clip)
    counts = {}
    for scale, config in configs.items():
        report = parameter_report(CLIPSR(config, clip=clip))
        counts[str(scale)] = {key: int(report[key]) for key in REPORTED}
    return counts


def parameter_section(presets: Iterable[str], scales: Iterable[int], scale: int) -> dict:
    """The JSON `params` section: per preset and scale, and paper-b32's paper-convention count at `scale`
    beside the paper's 632.2M (a ratio of 1.0 is an exact reproduction)."""
    scales = sorted(set(scales) | {scale})
    per_preset = {p: preset_counts(p, scales) for p in dict.fromkeys(["paper-b32", *presets])}
    paper = per_preset["paper-b32"][str(scale)]["paper_convention"]
    return {"paper_convention": paper, "paper_convention_scale": scale, "paper_quoted": PAPER_CLIPSR_PARAMS,
            "paper_convention_ratio": paper / PAPER_CLIPSR_PARAMS, "per_preset": per_preset}
