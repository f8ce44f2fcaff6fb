"""A model's goals live in its model card, not in code: YAML front matter at the top of the card (as Hugging
Face model cards carry their metadata), read here for the proof's goal check.

    ---
    goals:
      - {name: colour_named_random, target: 0.7, direction: ">="}
    ---

A card without front matter, or whose front matter has no `goals`, has no goals: the proof then reports its
numbers without a goal table."""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import yaml

DEMO_CARD = Path(__file__).resolve().parents[2] / "demo" / "MODEL_CARD.md"
DIRECTIONS = (">=", "<=")
_FENCE = "---"


@dataclass(frozen=True)
class Goal:
    """A named measure of the proof, the target it must reach, and which side of the target is good."""

    name: str
    target: float
    direction: str  # ">=": at least the target; "<=": at most

    def met(self, measured: float | None) -> bool:
        if measured is None:
            return False
        return measured <= self.target if self.direction == "<=" else measured >= self.target


def read_goals(card: str | Path, measures: Collection[str]) -> list[Goal]:
    """The goals of a model card, in its order; ValueError for front matter that is not YAML, or a goal that
    names no measure in `measures`, lacks a number, or has another direction."""
    card = Path(card)
    front = _front_matter(card)
    try:
        meta = yaml.safe_load(front) if front is not None else None
    except yaml.YAMLError as error:
        raise ValueError(f"{card}: the front matter is not YAML ({error})") from None
    if meta is None:
        return []
    if not isinstance(meta, dict):
        raise ValueError(f"{card}: the front matter must be a mapping (e.g. goals: [...])")
    entries = meta.get("goals") or []
    if not isinstance(entries, list):
        raise ValueError(f"{card}: goals must be a list of {{name, target, direction}}")
    return [_goal(card, i, entry, measures) for i, entry in enumerate(entries, start=1)]


def _goal(card: Path, index: int, entry: object, measures: Collection[str]) -> Goal:
    where = f"{card}: goal {index}"
    if not isinstance(entry, dict) or set(entry) != {"name", "target", "direction"}:
        raise ValueError(f"{where} must have exactly name, target and direction, got {entry!r}")
    name, target, direction = entry["name"], entry["target"], entry["direction"]
    if name not in measures:
        raise ValueError(f"{where}: {name!r} is not a measure of the proof ({', '.join(measures)})")
    if isinstance(target, bool) or not isinstance(target, (int, float)):
        raise ValueError(f"{where} ({name}): target {target!r} is not a number")
    if direction not in DIRECTIONS:
        raise ValueError(f"{where} ({name}): direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
    return Goal(name, float(target), direction)


def _front_matter(card: Path) -> str | None:
    """The YAML between a first line `---` and the next line `---`; None when the card does not start so."""
    lines = card.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].strip() != _FENCE:
        return None
    for end, line in enumerate(lines[1:], start=1):
        if line.strip() == _FENCE:
            return "\n".join(lines[1:end])
    raise ValueError(f"{card}: the front matter opened by the first line --- is never closed by another ---")
