"""The one error a caller can fix by changing its arguments, kept apart from failures while working,
so every CLI can answer it with exit status 2 (usage) instead of 1 (failure)."""

from __future__ import annotations


class OptionError(ValueError):
    """An argument value that cannot work: an unknown choice, a contradiction, an output that would
    destroy an input or another output. Raised before any work is done."""
