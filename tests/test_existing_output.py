"""The rule of every command that writes a run or a trained file: what is there is never replaced without
--resume or --restart, and --restart keeps it whole beside the new one."""
from __future__ import annotations

import pytest

from clipsr.existing_output import check_output, claim_output, write_new_folder
from clipsr_runtime.errors import OptionError


def test_a_new_output_needs_a_free_path(tmp_path):
    assert claim_output(tmp_path / "new") is None
    (tmp_path / "empty").mkdir()
    assert claim_output(tmp_path / "empty") is None
    for kind in ("folder", "file"):
        taken = tmp_path / kind
        taken.mkdir() if kind == "folder" else taken.write_text("trained")
        if kind == "folder":
            (taken / "checkpoint.safetensors").write_text("trained")
        with pytest.raises(OptionError, match=f"{kind} exists: --resume continues it, --restart moves it aside"):
            claim_output(taken)
        assert taken.exists()
    with pytest.raises(OptionError, match=r"file exists: --restart moves it aside to file\.old-<time>") as refused:
        check_output(tmp_path / "file", resumable=False)  # a file written whole at the end: nothing to resume
    assert "--resume" not in str(refused.value)


def test_restart_moves_the_earlier_output_aside_whole_when_claimed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.safetensors").write_text("first")
    check_output(run, restart=True)  # the check before the work moves nothing
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    first = claim_output(run, restart=True)
    assert first.name.startswith("run.old-") and (first / "checkpoint.safetensors").read_text() == "first"
    assert not run.exists()
    run.mkdir()
    (run / "checkpoint.safetensors").write_text("second")
    second = claim_output(run, restart=True)  # the same second: numbered, never onto the first
    assert second != first and (second / "checkpoint.safetensors").read_text() == "second"
    assert (first / "checkpoint.safetensors").read_text() == "first"


def test_resume_keeps_the_output_and_needs_one(tmp_path):
    (tmp_path / "run").mkdir()
    assert claim_output(tmp_path / "run", resume=True) is None and (tmp_path / "run").is_dir()
    with pytest.raises(OptionError, match="nothing to resume"):
        claim_output(tmp_path / "missing", resume=True)
    with pytest.raises(OptionError, match="give one"):
        claim_output(tmp_path / "run", resume=True, restart=True)


def test_a_folder_written_whole_appears_only_complete_and_a_failure_keeps_what_was_there(tmp_path):
    out = tmp_path / "proof"
    out.mkdir()  # an empty folder is a new output

    def fill(folder):
        assert not (out / "a.txt").exists(), "the draft is not the output"
        (folder / "a.txt").write_text("new")

    assert write_new_folder(out, fill) is None and (out / "a.txt").read_text() == "new"
    with pytest.raises(OptionError, match="proof exists: --restart"):
        write_new_folder(out, fill)

    def fail(folder):
        (folder / "a.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_new_folder(out, fail, restart=True)
    assert [p.name for p in tmp_path.iterdir()] == ["proof"] and (out / "a.txt").read_text() == "new"
    aside = write_new_folder(out, lambda folder: (folder / "b.txt").write_text("newer"), restart=True)
    assert (aside / "a.txt").read_text() == "new" and [p.name for p in out.iterdir()] == ["b.txt"]
