"""The crown-edit measure on birds redrawn bigger: what it redraws, what it reports, its command."""
from __future__ import annotations

import torch
from typer.testing import CliRunner

from clipsr.checkpoint import save_checkpoint
from clipsr.factory import create_model
from clipsr.synthbirds.__main__ import app
from clipsr.synthbirds.crown_edits import REDRAWN, crown_edit_rates, redrawn
from clipsr.synthbirds.render import render, sample_spec


def test_redrawn_birds_change_sizes_only_and_grow_the_crown():
    spec = sample_spec(20000001)
    bigger = redrawn(spec)
    assert all(low <= getattr(bigger, name) <= high for name, (low, high) in REDRAWN.items())
    assert (bigger.crown, bigger.wing, bigger.background, bigger.facing_left) == \
        (spec.crown, spec.wing, spec.background, spec.facing_left)
    assert redrawn(spec) == bigger, "seeded by the bird"
    assert render(bigger)[1]["crown"].sum() > render(spec)[1]["crown"].sum()


def test_rates_and_command_on_a_small_model(tmp_path):
    torch.manual_seed(0)
    model = create_model("synthbirds", scale=16).eval()
    rates = crown_edit_rates(model, n=2)
    assert set(rates) == {"sentence", "short", "true"} and all(0.0 <= v <= 1.0 for v in rates.values())
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    result = CliRunner().invoke(app, ["crown-edits", str(path), "--n", "2", "--no-redraw"])
    assert result.exit_code == 0, result.output
    assert "2 test birds: crown edit followed" in result.output and "redrawn" not in result.output
    missing = CliRunner().invoke(app, ["crown-edits", str(tmp_path / "none.safetensors")])
    assert missing.exit_code == 2
