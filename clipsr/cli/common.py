"""What every clipsr CLI shares. The error convention (one line on stderr, exit 2 for usage, 1 for
failures) is the runtime's command class, `cls=OneLineErrorsCommand`, so all CLIs answer alike."""
from __future__ import annotations

import logging

import typer


def run_app(app: typer.Typer) -> None:
    logging.getLogger().setLevel(logging.ERROR)  # open_clip logs routine notices as warnings
    app()


