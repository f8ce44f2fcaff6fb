"""Proof that the caption changes the picture, as numbers and a figure (the paper's Table IV and Fig. 8 on
SynthBirds).

On held-out birds (the test seeds, never used in training) at the model's scale, each bird captioned by one of
its phrasings drawn at random (seeded), as users write them, with the canonical caption as a second column:
- Table IV analogue: bicubic, a no-text model (optional), the full model: PSNR/SSIM (BasicSR convention) and
  part-colour accuracy over the parts the caption names (is each part's colour in the output nearest the
  caption's?).
- Text matters: the full model with the true caption vs another bird's caption, and vs a caption that names
  no colour ("a bird"), which should cost nothing against the no-text model.
- Editability (Fig. 8): the same LR with the caption changed in one part it names; how often that part follows
  the new colour, and how close the rest of the image stays to the unedited output.
- Wordings outside most training phrasings ("a bird with red crown", "red-crowned bird with blue wings",
  "crown: red"): crown and wing accuracy.
- A figure: LR | bicubic | SR (caption A) | SR (caption B, one part recoloured) | HR.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from clipsr.inference import batches, super_resolve, to_uint8
from clipsr.metrics.fidelity import psnr, ssim
from clipsr.metrics.report import bicubic_upsample, image_grid
from clipsr.model import CLIPSR
from clipsr.synthbirds.captions import bird_captions, caption_colours, edit
from clipsr.synthbirds.colours import NAMES, colour_index
from clipsr.synthbirds.dataset import SynthBirdsDataset
from clipsr.synthbirds.measure import part_colours
from clipsr.synthbirds.render import DESCRIBED_PARTS, BirdSpec, render, sample_spec

PLAIN_CAPTION = "a bird"
# Wordings users type; "{crown}" and "{wing}" become the bird's colours. Which parts each one names is parsed.
WORDINGS = ("a bird with {crown} crown", "{crown}-crowned bird with {wing} wings", "crown: {crown}")
_ASKED = {w: [p for p in DESCRIBED_PARTS if p in caption_colours(w.format(crown="red", wing="red"))]
          for w in WORDINGS}
GOALS = {  # what the demo is measured against, each compared with >= unless named "_max" (<=)
    "colour_named_random": 0.7, "colour_crown_random": 0.8, "colour_wing_random": 0.8,
    "edits_followed": 0.7, "edits_rest_vs_unedited_db": 40.0,
    "psnr_minus_no_text_db": 0.0, "psnr_minus_bicubic_db": 0.5, "psnr_true_minus_shuffled_db": 0.5,
    "plain_caption_vs_no_text_db_max": 0.3, "wordings_crown": 0.6, "wordings_wing": 0.6,
}


def run_proof(full: CLIPSR, out_dir: str | Path, *, no_text: CLIPSR | None = None, n: int = 200,
              batch_size: int = 25, figure_rows: int = 6, seed: int = 0) -> dict:
    """Measure everything above on `n` test birds; writes proof.json, proof.md and proof.png."""
    out = Path(out_dir)
    data = SynthBirdsDataset(split="test", scale=full.scale, train=False, count=n)
    rng = np.random.default_rng(seed)
    methods = ["bicubic", "random", "canonical", "shuffled", "plain"] + (["no_text"] if no_text is not None else [])
    scores = {m: {"psnr": [], "ssim": [], "colour": {p: [] for p in DESCRIBED_PARTS}} for m in methods}
    edits = {"followed": [], "part": [], "rest_vs_unedited": [], "rest_vs_hr": []}
    wordings = {w: {p: [] for p in DESCRIBED_PARTS} for w in WORDINGS}
    figure = []
    for items in batches(data, n, batch_size):
        lr = torch.stack([item["lr"] for item in items])
        specs = [sample_spec(item["seed"]) for item in items]
        texts = [bird_captions(spec) for spec in specs]
        choices = [int(rng.integers(len(t))) for t in texts]
        captions = {"random": [t[c] for t, c in zip(texts, choices)], "canonical": [t[0] for t in texts]}
        captions["shuffled"] = captions["random"][1:] + captions["random"][:1]
        captions["plain"] = [PLAIN_CAPTION] * len(items)
        edited = [_edit_named_part(spec, choice, rng) for spec, choice in zip(specs, choices)]
        hr = to_uint8(torch.stack([item["hr"] for item in items]))
        outputs = {"bicubic": [bicubic_upsample(img, hr.shape[1:3]) for img in to_uint8(lr)]}
        outputs.update({m: to_uint8(super_resolve(full, lr, captions[m])) for m in captions})
        if no_text is not None:
            outputs["no_text"] = to_uint8(super_resolve(no_text, lr, captions["random"]))
        sr_edit = to_uint8(super_resolve(full, lr, [caption for _, _, caption in edited]))
        worded = {w: to_uint8(super_resolve(full, lr, [w.format(crown=s.crown, wing=s.wing) for s in specs]))
                  for w in WORDINGS}
        for i, spec in enumerate(specs):
            masks = render(spec)[1]
            truth = {part: colour_index(getattr(spec, part)) for part in DESCRIBED_PARTS}
            named = [p for p in DESCRIBED_PARTS if p in caption_colours(captions["random"][i])]  # empty for a caption naming no part
            for method, images in outputs.items():
                scores[method]["psnr"].append(psnr(images[i], hr[i], crop_border=full.scale))
                scores[method]["ssim"].append(ssim(images[i], hr[i], crop_border=full.scale))
                parts = DESCRIBED_PARTS if method == "canonical" else named
                found = part_colours(images[i], masks, parts)
                for part in parts:
                    scores[method]["colour"][part].append(found[part] == truth[part])
            for wording, images in worded.items():
                found = part_colours(images[i], masks, _ASKED[wording])
                for part in _ASKED[wording]:
                    wordings[wording][part].append(found[part] == truth[part])
            new_spec, part, caption_b = edited[i]
            rest = ~masks[part]
            edits["part"].append(part)
            edits["followed"].append(part_colours(sr_edit[i], masks, [part])[part] == colour_index(getattr(new_spec, part)))
            unedited = outputs["random" if named else "canonical"][i]
            edits["rest_vs_unedited"].append(_masked_psnr(sr_edit[i], unedited, rest))
            edits["rest_vs_hr"].append(_masked_psnr(sr_edit[i], hr[i], rest))
            if len(figure) < figure_rows:
                lr_big = np.repeat(np.repeat(to_uint8(lr[i:i + 1])[0], full.scale, 0), full.scale, 1)
                figure.append(([lr_big, outputs["bicubic"][i], unedited, sr_edit[i], hr[i]],
                               f"A: {captions['random'][i] if named else captions['canonical'][i]}  |  B: {caption_b}"))
    result = _summarise(scores, edits, wordings, n, full.scale)
    out.mkdir(parents=True, exist_ok=True)
    (out / "proof.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "proof.md").write_text(to_markdown(result))
    image_grid(figure, ("LR", "bicubic", "SR, caption A", "SR, caption B", "HR"), out / "proof.png")
    return result


def _edit_named_part(spec: BirdSpec, choice: int, rng: np.random.Generator) -> tuple[BirdSpec, str, str]:
    """The bird with one part its caption names recoloured (at random), that part, and the same caption of the
    edited bird; a caption that names nothing is replaced by the canonical one."""
    caption = bird_captions(spec)[choice]
    if not caption_colours(caption):
        choice, caption = 0, bird_captions(spec)[0]
    named = [p for p in DESCRIBED_PARTS if p in caption_colours(caption)]
    part = named[int(rng.integers(len(named)))]
    colour = (colour_index(getattr(spec, part)) + int(rng.integers(1, len(NAMES)))) % len(NAMES)
    new_spec = edit(spec, part, colour)
    return new_spec, part, bird_captions(new_spec)[choice]


def _masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    mse = np.mean((a[mask].astype(np.float64) - b[mask].astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _rate(hits: list) -> float | None:
    return float(np.mean(hits)) if hits else None


def _summarise(scores: dict, edits: dict, wordings: dict, n: int, scale: int) -> dict:
    table = {}
    for method, s in scores.items():
        every = [hit for hits in s["colour"].values() for hit in hits]
        table[method] = {"psnr_y": float(np.mean(s["psnr"])), "ssim_y": float(np.mean(s["ssim"])),
                         "colour_accuracy": _rate(every),
                         "colour_accuracy_per_part": {p: _rate(h) for p, h in s["colour"].items()}}
    followed = np.array(edits["followed"], dtype=float)
    parts = np.array(edits["part"])
    worded = {w: {p: _rate(h) for p, h in per_part.items() if h} for w, per_part in wordings.items()}
    psnr_of = {m: row["psnr_y"] for m, row in table.items()}
    measured = {
        "colour_named_random": table["random"]["colour_accuracy"],
        "colour_crown_random": table["random"]["colour_accuracy_per_part"]["crown"],
        "colour_wing_random": table["random"]["colour_accuracy_per_part"]["wing"],
        "edits_followed": float(followed.mean()),
        "edits_rest_vs_unedited_db": float(np.mean(np.minimum(edits["rest_vs_unedited"], 100.0))),
        "psnr_minus_bicubic_db": psnr_of["random"] - psnr_of["bicubic"],
        "psnr_true_minus_shuffled_db": psnr_of["random"] - psnr_of["shuffled"],
        "wordings_crown": _rate([hit for w in WORDINGS for hit in wordings[w]["crown"]]),
        "wordings_wing": _rate([hit for w in WORDINGS for hit in wordings[w]["wing"]]),
    }
    if "no_text" in psnr_of:
        measured["psnr_minus_no_text_db"] = psnr_of["random"] - psnr_of["no_text"]
        measured["plain_caption_vs_no_text_db_max"] = abs(psnr_of["plain"] - psnr_of["no_text"])
    goals = {name: {"goal": goal, "measured": measured[name],
                    "met": measured[name] is not None and (measured[name] <= goal if name.endswith("_max")
                                                           else measured[name] >= goal)}
             for name, goal in GOALS.items() if name in measured}
    return {
        "n": n, "scale": scale, "split": "test",
        "table": table,
        "editability": {
            "followed": float(followed.mean()),
            "followed_per_part": {p: float(followed[parts == p].mean()) for p in DESCRIBED_PARTS if (parts == p).any()},
            "psnr_rest_vs_unedited_db": measured["edits_rest_vs_unedited_db"],
            "psnr_rest_vs_hr_db": float(np.mean(edits["rest_vs_hr"])),
        },
        "wordings": worded,
        "goals": goals,
    }


_ROWS = {"bicubic": "bicubic", "no_text": "no-text variant", "random": "full, random phrasing",
         "canonical": "full, canonical caption", "shuffled": "full, another bird's caption",
         "plain": f'full, "{PLAIN_CAPTION}"'}


def to_markdown(result: dict) -> str:
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
    lines += ["", "| goal | measured | target | met |", "|---|---|---|---|"]
    for name, goal in result["goals"].items():
        target = f"<= {goal['goal']}" if name.endswith("_max") else f">= {goal['goal']}"
        lines.append(f"| {name} | {_number(goal['measured'])} | {target} | {'yes' if goal['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
