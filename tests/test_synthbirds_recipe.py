"""The demo's training recipe: stages in order, each once, an interrupted SR stage resumed."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipsr.synthbirds import recipe
from clipsr.synthbirds.__main__ import app


def _fake_runs(monkeypatch, fail: str | None = None) -> list[list[str]]:
    calls = []

    def run(argv, env):
        calls.append(argv)
        assert env["MALLOC_MMAP_MAX_"] == "0"  # the CPU malloc settings reach every stage
        return subprocess.CompletedProcess(argv, 1 if fail and fail in argv else 0)

    monkeypatch.setattr(recipe.subprocess, "run", run)
    return calls


def test_stages_run_in_order_once_and_an_sr_run_folder_resumes(tmp_path, monkeypatch):
    calls = _fake_runs(monkeypatch)
    (tmp_path / "sr_notext").mkdir()
    (tmp_path / "sr_notext" / "train_config.json").write_text("{}")  # an interrupted no-text run
    recipe.run_recipe(tmp_path)
    assert [c[3] if c[3] in ("clip-report", "locator", "fit-palette", "proof") else c[c.index("--out") + 1]
            for c in calls] == [str(tmp_path / "clip"), "clip-report", "locator", str(tmp_path / "sr"), "fit-palette",
                                str(tmp_path / "sr_notext"), "proof"]
    locator = str(tmp_path / "locator.safetensors")
    assert calls[2][calls[2].index("-o") + 1] == locator and "--clip" in calls[2]
    assert calls[3][calls[3].index("--init") + 1] == locator, "the SR stage starts from the trained locator"
    assert "--resume" not in calls[3] and calls[5][-1] == "--resume"
    assert "part_labels=true" in calls[3] and "generator.use_text=false" in calls[5]
    assert calls[6][4] == str(tmp_path / "demo.safetensors"), "the proof measures the fitted model"
    assert calls[3][calls[3].index("--preset") + 1] == "synthbirds"
    recipe.run_recipe(tmp_path)
    assert len(calls) == 7, "every stage is marked done"


def test_a_start_checkpoint_replaces_the_clip_weights_of_the_locator_stage():
    locator = next(s for s in recipe.stages(Path("out"), start=Path("demo.safetensors")) if s.name == "locator")
    assert locator.argv[locator.argv.index("--start") + 1] == "demo.safetensors" and "--clip" not in locator.argv


def test_a_failed_stage_stops_the_recipe_and_runs_again_next_time(tmp_path, monkeypatch):
    calls = _fake_runs(monkeypatch, fail="clip-report")
    with pytest.raises(RuntimeError, match="stage clip-report failed"):
        recipe.run_recipe(tmp_path)
    assert len(calls) == 2 and (tmp_path / ".done-clip").exists() and not (tmp_path / ".done-clip-report").exists()


def test_the_gpu_recipe_uses_bf16_and_workers():
    sr = next(s for s in recipe.stages(Path("out"), device="cuda", workers=14) if s.name == "sr")
    assert ("--amp", "bf16") == sr.argv[sr.argv.index("--amp"):sr.argv.index("--amp") + 2]
    assert sr.argv[sr.argv.index("--num-workers") + 1] == "14" and sr.argv[sr.argv.index("--device") + 1] == "cuda"


def test_cli_dry_run_and_bad_arguments(tmp_path):
    result = CliRunner().invoke(app, ["recipe", "-o", str(tmp_path), "--dry-run", "--sr-steps", "7"])
    assert result.exit_code == 0 and result.output.count("\n[") == 6 and "--steps 7" in result.output
    assert not list(tmp_path.iterdir()), "a dry run writes nothing"
    bad = CliRunner().invoke(app, ["recipe", "-o", str(tmp_path), "--only", "sr-stage"])
    assert bad.exit_code == 2 and "unknown stage 'sr-stage'" in bad.output
    bad = CliRunner().invoke(app, ["recipe", "-o", str(tmp_path), "--device", "tpu"])
    assert bad.exit_code == 2 and "--device must be cpu or cuda" in bad.output
