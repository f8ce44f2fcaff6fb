"""One error convention for every command line: one `error:` line on stderr, exit 2 for usage errors,
1 for failures, never a traceback or click's multi-line usage box."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from clipsr_runtime.cli_errors import OneLineErrorsCommand, exit_status
from clipsr_runtime.errors import OptionError


def _apps() -> dict[str, typer.Typer]:
    from clipsr.cli.convert import app as convert
    from clipsr.cli.evaluate import app as evaluate
    from clipsr.cli.train import app as train
    from clipsr.synthbirds.__main__ import app as synthbirds
    from clipsr_export.cli import app as export
    from clipsr_runtime.cli import app as run

    return {"clipsr-run": run, "clipsr-train": train, "clipsr-eval": evaluate, "clipsr-export": export,
            "synthbirds": synthbirds, "clipsr-convert": convert}


def _invoke(name: str, *args) -> tuple[int, list[str]]:
    result = CliRunner().invoke(_apps()[name], [str(a) for a in args])
    assert "Traceback" not in result.output and "Usage:" not in result.stderr and "╭" not in result.stderr
    return result.exit_code, result.stderr.splitlines()


def _one_error(lines: list[str], message: str) -> None:
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], lines


@pytest.mark.parametrize("name, args", [
    ("clipsr-run", ["in.png", "a bird"]), ("clipsr-train", []), ("clipsr-eval", ["ckpt.safetensors"]),
    ("clipsr-export", []), ("synthbirds", ["sheet", "out.png"]), ("clipsr-convert", ["in.pth", "-o", "o.safetensors"]),
])
def test_unknown_option_is_a_one_line_usage_error(name, args):
    status, lines = _invoke(name, *args, "--no-such-flag")
    assert status == 2
    assert lines == ["error: No such option: --no-such-flag (see --help)"]


@pytest.mark.parametrize("name", ["clipsr-run", "clipsr-train", "clipsr-eval", "clipsr-export", "synthbirds",
                                  "clipsr-convert"])
def test_help_still_exits_0(name):
    result = CliRunner().invoke(_apps()[name], ["--help"])
    assert result.exit_code == 0 and "--help" in result.output


def test_usage_errors_raised_by_the_commands_exit_2(tmp_path):
    status, lines = _invoke("clipsr-train", "--stage", "nope", "--out", tmp_path / "r")
    assert status == 2
    _one_error(lines, "--stage must be sr or clip")
    status, lines = _invoke("synthbirds", "export", tmp_path / "sb", "--split", "dev", "--count", "1")
    assert status == 2
    _one_error(lines, "'dev' is not one of train, val, test")
    status, lines = _invoke("clipsr-export", "--random", "--precision", "fp16", "--out", tmp_path / "m")
    assert status == 2
    _one_error(lines, "precisions must include fp32")
    assert not (tmp_path / "m").exists()
    status, lines = _invoke("clipsr-train", "--resume", "--out", tmp_path / "nothing")
    assert status == 2
    _one_error(lines, "nothing to resume")


def test_failures_exit_1(tmp_path):
    status, lines = _invoke("clipsr-eval", tmp_path / "missing.safetensors", "--out", tmp_path / "e")
    assert status == 1 and len(lines) == 1 and lines[0].startswith("error:")
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    status, lines = _invoke("synthbirds", "sheet", blocker / "sheet.png", "--count", "1", "--columns", "1")
    assert status == 1
    _one_error(lines, str(blocker))


def test_console_script_process_follows_the_convention(tmp_path):
    done = subprocess.run([sys.executable, "-m", "clipsr.cli.train", "--stage", "nope", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: --stage must be sr or clip, got 'nope'"]


def test_exit_status_classifies():
    assert exit_status(OptionError("x")) == (2, "x")
    assert exit_status(FileNotFoundError("gone")) == (1, "gone")
    assert exit_status(KeyboardInterrupt()) == (130, "interrupted")
    assert exit_status(MemoryError()) == (1, "out of memory")
    assert exit_status(KeyError("bug")) is None  # a bug keeps its traceback


def test_bugs_keep_their_traceback_and_interrupts_say_so():
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.command(cls=OneLineErrorsCommand)
    def boom(kind: str) -> None:
        raise {"bug": KeyError("a bug"), "ctrl-c": KeyboardInterrupt(), "multi": ValueError("one\ntwo")}[kind]

    bug = CliRunner().invoke(app, ["bug"])
    assert isinstance(bug.exception, KeyError)
    interrupted = CliRunner().invoke(app, ["ctrl-c"])
    assert interrupted.exit_code == 130 and interrupted.stderr == "error: interrupted\n"
    multi = CliRunner().invoke(app, ["multi"])
    assert multi.exit_code == 1 and multi.stderr == "error: one; two\n"
