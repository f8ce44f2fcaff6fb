"""Run the proof: measure, report and figure, written into one folder once all is measured."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from clipsr.existing_output import check_output, write_new_folder
from clipsr.model import CLIPSR
from clipsr.synthbirds.proof.figure import save_figure
from clipsr.synthbirds.proof.goals import Goal
from clipsr.synthbirds.proof.measure import Example, measure
from clipsr.synthbirds.proof.report import report, to_markdown


def run_proof(full: CLIPSR, out_dir: str | Path, *, no_text: CLIPSR | None = None, goals: Sequence[Goal] = (),
              n: int = 200, batch_size: int = 25, figure_rows: int = 6, seed: int = 0,
              restart: bool = False) -> tuple[dict, Path | None]:
    """Measure all the package describes on `n` test birds against `goals`; writes proof.json, proof.md and
    proof.png into `out_dir` and returns proof.json's content and where an earlier `out_dir` went, if it moved.

    `out_dir` follows `clipsr.existing_output`: an existing one is refused before measuring, or with `restart`
    moved aside only once the new folder is complete, so a failure while measuring or writing loses nothing."""
    out = Path(out_dir)
    check_output(out, restart=restart, resumable=False)
    measurement = measure(full, no_text=no_text, n=n, batch_size=batch_size, seed=seed, examples=figure_rows)
    result = report(measurement, goals)
    set_aside = write_new_folder(out, lambda folder: _write(folder, result, goals, measurement.examples),
                                 restart=restart)
    return result, set_aside


def _write(folder: Path, result: dict, goals: Sequence[Goal], examples: list[Example]) -> None:
    (folder / "proof.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / "proof.md").write_text(to_markdown(result, goals))
    save_figure(examples, folder / "proof.png")
