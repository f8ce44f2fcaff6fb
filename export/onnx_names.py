"""Names for what a graph rewrite adds to an ONNX graph."""
from __future__ import annotations


def free_name(name: str, taken: set[str]) -> str:
    """`name`, or `name_1`, `name_2`, ... : the first not already in `taken` (which it is added to)."""
    candidate, n = name, 0
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate
