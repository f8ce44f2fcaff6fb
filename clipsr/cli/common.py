"""What every clipsr CLI shares: expected failures become one line on stderr and exit code 1."""
from __future__ import annotations

import logging
import sys

import typer

EXPECTED_ERRORS = (ValueError, FileNotFoundError, PermissionError, OSError, RuntimeError)


def run_app(app: typer.Typer) -> None:
    logging.getLogger().setLevel(logging.ERROR)  # open_clip logs routine notices as warnings
    try:
        app(standalone_mode=False)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # click usage errors and our own
        import click
        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, EXPECTED_ERRORS):
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        raise


