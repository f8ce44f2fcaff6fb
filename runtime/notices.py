"""Warning category of the runtime, so the CLI can print its notices as one line each."""

from __future__ import annotations


class ClipsrWarning(UserWarning):
    """Something the user should know (truncated prompt, resized input, FP16 retried in FP32)."""
