"""The error convention of every clipsr command line: one line `error: ...` on stderr, exit status 2
for usage errors (the command line cannot work as given) and 1 for failures while working.

It lives in the command class, so the console script, `python -m`, `app()` and typer's CliRunner all
behave the same. Unexpected exceptions (bugs) still show their traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from clipsr_runtime.errors import OptionError

USAGE, FAILURE, INTERRUPTED = 2, 1, 130
FAILURES = (ValueError, OSError, RuntimeError, MemoryError)


def _one_line(message: str) -> str:
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


def exit_status(exc: BaseException) -> tuple[int, str] | None:
    """(exit status, message) for an expected error; None for a bug, which keeps its traceback."""
    if isinstance(exc, typer.TyperException):  # click's usage errors: unknown option, bad int...
        hint = " (see --help)" if exc.exit_code == USAGE else ""
        return exc.exit_code, exc.format_message() + hint
    if isinstance(exc, (typer.Abort, KeyboardInterrupt)):
        return INTERRUPTED, "interrupted"
    if isinstance(exc, OptionError):
        return USAGE, str(exc)
    if isinstance(exc, MemoryError):
        return FAILURE, f"out of memory{': ' + str(exc) if str(exc) else ''}"
    if isinstance(exc, FAILURES):
        return FAILURE, str(exc) or type(exc).__name__
    return None


class _OneLineErrors:
    """Runs the command in click's non-standalone mode and turns expected errors into one line."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False,  # type: ignore[misc]
                                  **extra)
        except BaseException as exc:
            status = exit_status(exc)
            if status is None:
                raise
            print(f"error: {_one_line(status[1])}", file=sys.stderr)
            result = status[0]
        else:
            if result == INTERRUPTED:  # typer turns Ctrl-C into a silent Exit(130)
                print("error: interrupted", file=sys.stderr)
        code = result if isinstance(result, int) else 0
        if standalone_mode:
            sys.exit(code)
        return result


class OneLineErrorsCommand(_OneLineErrors, TyperCommand):
    """`@app.command(cls=OneLineErrorsCommand)` for a single-command app."""


class OneLineErrorsGroup(_OneLineErrors, TyperGroup):
    """`typer.Typer(cls=OneLineErrorsGroup)` for an app with sub-commands."""
