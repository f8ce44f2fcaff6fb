"""Table III of the CLIP-SR paper, quoted (not measured here): parameters and time per image on an
RTX 3090, the reference our own rows are printed beside."""
from __future__ import annotations

PAPER_GPU = "RTX 3090"
PAPER_CLIPSR_PARAMS = 632.2e6
PAPER_CLIPSR_MS = 24.1

# (method, parameters, seconds per image), as printed in the paper
TABLE_III: tuple[tuple[str, float, float], ...] = (
    ("SuperFAN", 1.3e6, 4.1e-3),
    ("XPSR", 1.9e9, 6.3),
    ("TGESR", 5.5e9, 39.9),
    ("CLIP-SR", PAPER_CLIPSR_PARAMS, PAPER_CLIPSR_MS / 1e3),
)


def quoted_rows() -> list[dict]:
    """The paper's rows as JSON-ready dicts, each labelled as quoted."""
    return [{"method": m, "params": p, "ms_per_image": s * 1e3, "device": PAPER_GPU, "source": "quoted (paper)"}
            for m, p, s in TABLE_III]
