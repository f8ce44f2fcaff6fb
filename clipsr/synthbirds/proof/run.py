"""Run the proof: measure, report and figure, written into one folder."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from clipsr.model import CLIPSR
from clipsr.synthbirds.proof.figure import save_figure
from clipsr.synthbirds.proof.goals import Goal
from clipsr.synthbirds.proof.measure import measure
from clipsr.synthbirds.proof.report import report, to_markdown


def run_proof(full: CLIPSR, out_dir: str | Path, *, no_text: CLIPSR | None = None, goals: Sequence[Goal] = (),
              n: int = 200, batch_size: int = 25, figure_rows: int = 6, seed: int = 0) -> dict:
    """Measure all the package describes on `n` test birds against `goals`; writes proof.json, proof.md and proof.png
    into `out_dir` and returns proof.json's content."""
    measurement = measure(full, no_text=no_text, n=n, batch_size=batch_size, seed=seed, examples=figure_rows)
    result = report(measurement, goals)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "proof.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "proof.md").write_text(to_markdown(result, goals))
    save_figure(measurement.examples, out / "proof.png")
    return result
