"""The SynthBirds colour vocabulary: one RGB anchor per colour word, shared by renderer, captions and metrics.

Anchors are far apart (smallest pairwise RGB distance 84) so that a rendered colour with small jitter
is always nearest its own anchor, while a colour mixed with its surroundings quickly is not.
"""
from __future__ import annotations

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 30),
    "orange": (240, 130, 20),
    "yellow": (240, 220, 40),
    "green": (40, 150, 50),
    "blue": (40, 80, 200),
    "purple": (130, 50, 160),
    "black": (20, 20, 20),
    "white": (240, 240, 240),
    "brown": (120, 75, 35),
    "grey": (128, 128, 128),
}
NAMES: tuple[str, ...] = tuple(COLOURS)
ANCHORS = np.array([COLOURS[name] for name in NAMES], dtype=np.float32)


def colour_index(colour: str | int) -> int:
    """Vocabulary index of a colour given by name or index; a clear error for anything else."""
    if isinstance(colour, (int, np.integer)) and not isinstance(colour, bool):
        if 0 <= int(colour) < len(NAMES):
            return int(colour)
        raise ValueError(f"colour index {colour} is outside the vocabulary 0..{len(NAMES) - 1}")
    if colour in COLOURS:
        return NAMES.index(colour)
    raise ValueError(f"unknown colour {colour!r}; the vocabulary is {', '.join(NAMES)}")


def nearest_colour(rgb: np.ndarray) -> np.ndarray:
    """Index of the nearest anchor (Euclidean RGB, 0..255) for each colour in an (..., 3) array."""
    rgb = np.asarray(rgb, dtype=np.float32)
    distances = np.linalg.norm(rgb[..., None, :] - ANCHORS, axis=-1)
    return np.argmin(distances, axis=-1)
