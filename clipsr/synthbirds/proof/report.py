"""Report: the proof's numbers from the per-bird records (the Table IV analogue, editability, wordings),
the named measures a model card's goals refer to, the goal check, and the markdown of it all."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clipsr.synthbirds.proof.goals import Goal
from clipsr.synthbirds.proof.measure import PLAIN_CAPTION, Measurement
from clipsr.synthbirds.render import DESCRIBED_PARTS

# What a goal may name; the last two need the no-text model.
MEASURES = ("colour_named_random", "colour_crown_random", "colour_wing_random", "edits_followed",
            "edits_rest_vs_unedited_db", "psnr_minus_no_text_db", "psnr_minus_bicubic_db",
            "psnr_true_minus_shuffled_db", "plain_caption_vs_no_text_db_max", "wordings_crown", "wordings_wing")
REST_PSNR_CAP = 100.0  # dB: an edit that leaves the rest untouched (inf) counts as this in the mean
_ROWS = {"bicubic": "bicubic", "no_text": "no-text variant", "random": "full, random phrasing",
         "canonical": "full, canonical caption", "shuffled": "full, another bird's caption",
         "plain": f'full, "{PLAIN_CAPTION}"'}


def report(measurement: Measurement, goals: Sequence[Goal] = ()) -> dict:
    """proof.json: the numbers and, per goal whose measure was taken, {"goal", "measured", "met"}."""
    result, measured = summarise(measurement)
    return {**result, "goals": check_goals(measured, goals)}


def summarise(measurement: Measurement) -> tuple[dict, dict[str, float | None]]:
    """The proof's numbers ("n", "scale", "split", "table", "editability", "wordings") and the measures of
    MEASURES that were taken (those of the no-text model only with it)."""
    records = measurement.records
    table = {method: _method_row([r["methods"][method] for r in records]) for method in records[0]["methods"]}
    followed = np.array([r["edit"]["followed"] for r in records], dtype=float)
    parts = np.array([r["edit"]["part"] for r in records])
    rest_db = float(np.mean(np.minimum([r["edit"]["rest_vs_unedited"] for r in records], REST_PSNR_CAP)))
    wording_hits = {w: {p: [r["wordings"][w][p] for r in records if p in r["wordings"][w]] for p in DESCRIBED_PARTS}
                    for w in records[0]["wordings"]}
    psnr_of = {m: row["psnr_y"] for m, row in table.items()}
    measured = {
        "colour_named_random": table["random"]["colour_accuracy"],
        "colour_crown_random": table["random"]["colour_accuracy_per_part"]["crown"],
        "colour_wing_random": table["random"]["colour_accuracy_per_part"]["wing"],
        "edits_followed": float(followed.mean()),
        "edits_rest_vs_unedited_db": rest_db,
        "psnr_minus_bicubic_db": psnr_of["random"] - psnr_of["bicubic"],
        "psnr_true_minus_shuffled_db": psnr_of["random"] - psnr_of["shuffled"],
        "wordings_crown": _rate([hit for per_part in wording_hits.values() for hit in per_part["crown"]]),
        "wordings_wing": _rate([hit for per_part in wording_hits.values() for hit in per_part["wing"]]),
    }
    if "no_text" in psnr_of:
        measured["psnr_minus_no_text_db"] = psnr_of["random"] - psnr_of["no_text"]
        measured["plain_caption_vs_no_text_db_max"] = abs(psnr_of["plain"] - psnr_of["no_text"])
    result = {
        "n": len(records), "scale": measurement.scale, "split": "test",
        "table": table,
        "editability": {
            "followed": float(followed.mean()),
            "followed_per_part": {p: float(followed[parts == p].mean()) for p in DESCRIBED_PARTS if (parts == p).any()},
            "psnr_rest_vs_unedited_db": rest_db,
            "psnr_rest_vs_hr_db": float(np.mean([r["edit"]["rest_vs_hr"] for r in records])),
        },
        "wordings": {w: {p: _rate(h) for p, h in per_part.items() if h} for w, per_part in wording_hits.items()},
    }
    return result, measured


def check_goals(measured: dict[str, float | None], goals: Sequence[Goal]) -> dict[str, dict]:
    """Per goal whose measure was taken, in the card's order: {"goal": target, "measured", "met"}."""
    return {goal.name: {"goal": goal.target, "measured": measured[goal.name], "met": goal.met(measured[goal.name])}
            for goal in goals if goal.name in measured}


def to_markdown(result: dict, goals: Sequence[Goal] = ()) -> str:
    """proof.md: the method table, editability, wordings and, when there are goals, the goal table."""
    lines = [f"SynthBirds proof, {result['n']} test birds at {result['scale']}x (PSNR/SSIM: BasicSR Y, crop = scale; "
             "part colour over the parts the bird's random caption names, all four for the canonical caption)",
             "", "| method | PSNR (dB) | SSIM | part colour | " + " | ".join(DESCRIBED_PARTS) + " |",
             "|---|---|---|---|" + "---|" * len(DESCRIBED_PARTS)]
    for method in _ROWS:
        if method not in result["table"]:
            continue
        row = result["table"][method]
        per = " | ".join(_percent(row["colour_accuracy_per_part"][p]) for p in DESCRIBED_PARTS)
        lines.append(f"| {_ROWS[method]} | {row['psnr_y']:.2f} | {row['ssim_y']:.4f} | "
                     f"{_percent(row['colour_accuracy'])} | {per} |")
    ed = result["editability"]
    lines += ["", f"- editability: the edited part follows the new colour in {ed['followed']:.1%} ("
              + ", ".join(f"{p} {v:.0%}" for p, v in ed["followed_per_part"].items())
              + f"); rest of the image: {ed['psnr_rest_vs_unedited_db']:.2f} dB vs the unedited output, "
              f"{ed['psnr_rest_vs_hr_db']:.2f} dB vs HR"]
    for wording, per_part in result["wordings"].items():
        lines.append(f'- "{wording}": ' + ", ".join(f"{p} {v:.0%}" for p, v in per_part.items()))
    if result["goals"]:
        direction = {goal.name: goal.direction for goal in goals}
        lines += ["", "| goal | measured | target | met |", "|---|---|---|---|"]
        for name, goal in result["goals"].items():
            lines.append(f"| {name} | {_number(goal['measured'])} | {direction[name]} {goal['goal']} | "
                         f"{'yes' if goal['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def _method_row(scores: list[dict]) -> dict:
    per_part = {p: [s["colour"][p] for s in scores if p in s["colour"]] for p in DESCRIBED_PARTS}
    return {"psnr_y": float(np.mean([s["psnr"] for s in scores])),
            "ssim_y": float(np.mean([s["ssim"] for s in scores])),
            "colour_accuracy": _rate([hit for hits in per_part.values() for hit in hits]),
            "colour_accuracy_per_part": {p: _rate(h) for p, h in per_part.items()}}


def _rate(hits: list) -> float | None:
    return float(np.mean(hits)) if hits else None


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
