"""Where the tests find the project's shared data files (never copied into the repo)."""
from __future__ import annotations

import os
from pathlib import Path


def _first_existing(*candidates: str | Path | None) -> Path:
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return Path(candidates[-1])


# The published NIQE pristine parameters: $CLIPSR_NIQE_PARAMS, or shared/ beside the checkout.
NIQE_PARAMS = _first_existing(os.environ.get("CLIPSR_NIQE_PARAMS"),
                              Path(__file__).resolve().parents[2] / "shared" / "data" / "niqe_pris_params.npz",
                              "/work/shared/data/niqe_pris_params.npz")
