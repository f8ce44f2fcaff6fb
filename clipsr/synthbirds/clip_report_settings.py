"""The settings of `clip_report` and their defaults (what the demo's card reports), apart from the torch code
so that `python -m clipsr.synthbirds clip-report --help` shows them without importing torch."""
from __future__ import annotations

RETRIEVAL_BIRDS = 200          # val birds, each ranked against the ten colour prompts of every part
RETRIEVAL_BATCH = 50
PROBE_BIRDS = 4000             # train birds the text probe learns from
PROBE_VAL_BIRDS = 500
PROBE_HIDDEN = 64              # the MLP probe's width, about the generator's text affines
PROBE_STEPS = 500
PROBE_LR = 3e-3
PHRASING_BIRDS = 600           # train birds of the phrasing probe (all their non-canonical captions)
PHRASING_VAL_BIRDS = 200
RIDGE = 1.0
TEXT_BATCH = 500               # captions per text-tower call
PROBE_SITES = ("sentence", "noun_token", "colour_token")
# The SR stage reads only the sentence vector: it must carry a named part's colour in any phrasing
SENTENCE_GATE = 0.9
