"""The demo's training recipe: stages in order, each once, an interrupted training stage resumed, and no
earlier output replaced without --resume or --restart."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipsr.run_folder import MANIFEST
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


def test_stages_run_in_order_once_and_an_interrupted_run_resumes(tmp_path, monkeypatch):
    calls = _fake_runs(monkeypatch)
    (tmp_path / "sr_notext").mkdir()
    (tmp_path / "sr_notext" / MANIFEST).write_text("{}")  # an interrupted no-text run that saved a step
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "train_config.json").write_text("{}")  # a CLIP run killed before its first save
    with pytest.raises(ValueError, match="exists: --resume continues it"):
        recipe.run_recipe(tmp_path)
    assert not calls
    recipe.run_recipe(tmp_path, resume=True)
    assert [c[3] if c[3] in ("clip-report", "locator", "fit-palette", "proof") else c[c.index("--out") + 1]
            for c in calls] == [str(tmp_path / "clip"), "clip-report", "locator", str(tmp_path / "sr"), "fit-palette",
                                str(tmp_path / "sr_notext"), "proof"]
    locator = str(tmp_path / "locator.safetensors")
    assert calls[2][calls[2].index("-o") + 1] == locator and "--clip" in calls[2]
    assert calls[3][calls[3].index("--init") + 1] == locator, "the SR stage starts from the trained locator"
    assert calls[0][-1] == "--restart" and calls[5][-1] == "--resume"
    assert not {"--resume", "--restart"} & set(calls[3] + calls[4])
    assert "part_labels=true" in calls[3] and "generator.use_text=false" in calls[5]
    assert calls[6][4] == str(tmp_path / "demo.safetensors"), "the proof measures the fitted model"
    assert calls[3][calls[3].index("--preset") + 1] == "synthbirds"
    recipe.run_recipe(tmp_path, resume=True)
    assert len(calls) == 7, "every stage is marked done"


def test_an_output_a_stage_left_before_it_was_marked_done_is_set_aside_by_the_rerun(tmp_path):
    start = tmp_path / "demo.safetensors"
    whole = {stage.name: stage for stage in recipe.stages(tmp_path, start=start) if not stage.resumable}
    assert set(whole) == {"clip-report", "locator", "fit-palette", "sr-no-text-start", "proof"}, \
        "every stage that writes its output whole at the end"
    for stage in whole.values():
        assert "--restart" not in recipe.command(stage)
        if stage.name == "proof":
            stage.output.mkdir()
            (stage.output / "proof.json").write_text("{}")
        else:
            stage.output.write_bytes(b"left by a killed run")
        assert recipe.command(stage)[-1] == "--restart"
        assert stage.argv[stage.argv.index("-o") + 1] == str(stage.output), "the output it declares is its -o"


def test_a_start_checkpoint_replaces_the_clip_weights_of_the_locator_stage():
    locator = next(s for s in recipe.stages(Path("out"), start=Path("demo.safetensors")) if s.name == "locator")
    assert locator.argv[locator.argv.index("--start") + 1] == "demo.safetensors" and "--clip" not in locator.argv


def test_a_failed_stage_stops_the_recipe_and_runs_again_next_time(tmp_path, monkeypatch):
    calls = _fake_runs(monkeypatch, fail="clip-report")
    with pytest.raises(RuntimeError, match="stage clip-report failed"):
        recipe.run_recipe(tmp_path)
    assert len(calls) == 2 and (tmp_path / ".done-clip").exists() and not (tmp_path / ".done-clip-report").exists()
    first = json.loads((tmp_path / recipe.TIMES_FILE).read_text())
    assert set(first) == {"clip", "clip-report"}, "a failed stage's time counts too"
    calls = _fake_runs(monkeypatch)
    monkeypatch.setattr(recipe.time, "monotonic", iter(range(0, 1000, 30)).__next__)  # every stage takes 30 s
    recipe.run_recipe(tmp_path, resume=True)
    times = json.loads((tmp_path / recipe.TIMES_FILE).read_text())
    assert [c[3] for c in calls][0] == "clip-report" and len(calls) == 6
    assert times["clip"] == first["clip"] and times["clip-report"] == pytest.approx(first["clip-report"] + 30, abs=0.1)
    assert times["proof"] == 30 and len(times) == 7, "the continued run adds its stages' seconds"


def test_the_gpu_recipe_uses_bf16_and_workers():
    sr = next(s for s in recipe.stages(Path("out"), device="cuda", workers=14) if s.name == "sr")
    assert ("--amp", "bf16") == sr.argv[sr.argv.index("--amp"):sr.argv.index("--amp") + 2]
    assert sr.argv[sr.argv.index("--num-workers") + 1] == "14" and sr.argv[sr.argv.index("--device") + 1] == "cuda"


def test_cli_dry_run_and_bad_arguments(tmp_path):
    result = CliRunner().invoke(app, ["recipe", "-o", str(tmp_path), "--dry-run", "--sr-steps", "7",
                                      "--locator-steps", "11", "--palette-steps", "13"])
    assert result.exit_code == 0 and result.output.count("\n[") == 6
    lines = {line.split("]")[0][1:]: line for line in result.output.splitlines()}
    expected = {"sr": 7, "sr-no-text": 7, "locator": 11, "fit-palette": 13, "clip": recipe.CLIP_STEPS}
    for stage, steps in expected.items():
        assert f"--steps {steps}" in lines[stage]
    assert not list(tmp_path.iterdir()), "a dry run writes nothing"
    bad = CliRunner().invoke(app, ["recipe", "-o", str(tmp_path), "--only", "sr-stage"])
    assert bad.exit_code == 2 and "'sr-stage' is not one of clip, clip-report, locator, sr, fit-palette" in bad.output
    bad = CliRunner().invoke(app, ["recipe", "-o", str(tmp_path), "--device", "tpu"])
    assert bad.exit_code == 2 and "'tpu' is not one of cpu, cuda" in bad.output


def test_cli_restart_sets_the_earlier_recipe_run_aside(tmp_path, monkeypatch):
    calls = _fake_runs(monkeypatch)
    out = tmp_path / "demo"
    out.mkdir()
    (out / ".done-clip").touch()
    refused = CliRunner().invoke(app, ["recipe", "-o", str(out), "--only", "clip"])
    assert refused.exit_code == 2 and "--restart moves it aside" in refused.output and not calls
    done = CliRunner().invoke(app, ["recipe", "-o", str(out), "--only", "clip", "--restart"])
    assert done.exit_code == 0, done.output
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("demo.old-")]
    assert len(aside) == 1 and (aside[0] / ".done-clip").exists() and f"moved the earlier recipe run to {aside[0]}" \
        in done.output
    assert len(calls) == 1 and (out / ".done-clip").exists(), "the clip stage ran again, in the fresh folder"


def test_stage_names_are_the_commands_they_run():
    for stage in recipe.stages(Path("out")):
        if stage.argv[1:3] == ("-m", "clipsr.synthbirds"):
            assert stage.argv[3] == stage.name


def test_cli_usage_errors_exit_2_and_failures_while_working_exit_1(tmp_path, monkeypatch):
    """The shared convention (clipsr_runtime.cli_errors): 2 when the command line cannot work, 1 when the
    work fails; one line on stderr either way."""
    _fake_runs(monkeypatch, fail="fit-palette")
    only = CliRunner().invoke(app, ["recipe", "-o", str(tmp_path), "--only", "fit-palette"])
    assert only.exit_code == 1 and only.output.strip().splitlines()[-1] == (
        "error: stage fit-palette failed; run the recipe again with --resume to continue from it")
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"not a checkpoint")
    fit = CliRunner().invoke(app, ["fit-palette", str(damaged), "-o", str(tmp_path / "fitted.safetensors")])
    assert fit.exit_code == 1 and fit.output.startswith("error: ") and fit.output.count("\n") == 1
    assert not (tmp_path / "fitted.safetensors").exists()
    for argv in (["fit-palette", str(tmp_path / "missing.safetensors"), "-o", str(tmp_path / "x")],
                 ["fit-palette", str(damaged), "-o", str(tmp_path / "x"), "--steps", "0"],
                 ["export", str(tmp_path), "--split", "val", "--count", "5", "--seed-offset", "9999999"],
                 ["sheet", str(tmp_path / "s.png"), "--scale", "3"]):
        usage = CliRunner().invoke(app, argv)
        assert usage.exit_code == 2 and usage.output.startswith("error: ") and usage.output.count("\n") == 1, argv
