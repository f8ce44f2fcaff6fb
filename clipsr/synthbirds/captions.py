"""CUB-style captions for a BirdSpec, and colour edits of a spec (captions that contradict an LR image).

Every caption names only described parts (crown, wings, belly, beak; sometimes the body) and always with
their true colour, so any caption of a bird is a correct description. The first caption names all four
described parts in a fixed order: evaluation uses it.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from clipsr.synthbirds.palette import NAMES, colour_index
from clipsr.synthbirds.render import COLOURED_PARTS, DESCRIBED_PARTS, BirdSpec

NOUNS: dict[str, tuple[str, ...]] = {
    "crown": ("crown", "cap"),
    "wing": ("wings", "wing bars", "wingbars"),
    "belly": ("belly", "breast"),
    "beak": ("beak", "bill"),
}
_PLURAL = {"wings", "wing bars", "wingbars"}
_SIZES = ("small", "little", "tiny")  # consonant-initial: "a small ..."
_OPENERS = ("this bird has", "the bird has", "a {size} bird with", "this {size} bird has", "{a_body} bird with",
            "this {size} {body} bird has", "this is a {size} bird with")


def captions(spec: BirdSpec, rng: np.random.Generator) -> list[str]:
    """5 to 10 distinct captions of `spec`; the first names crown, wings, belly and beak."""
    first = "this bird has " + _join([_phrase(spec, part, NOUNS[part][0]) for part in DESCRIBED_PARTS])
    result = [first]
    wanted = int(rng.integers(5, 11))
    for _ in range(20 * wanted):
        if len(result) == wanted:
            break
        caption = _random_caption(spec, rng)
        if caption not in result:
            result.append(caption)
    return result


def bird_captions(spec: BirdSpec) -> list[str]:
    """The fixed caption list of a bird, seeded by its seed (the first is the evaluation caption)."""
    return captions(spec, np.random.default_rng([spec.seed, 2]))


def edit(spec: BirdSpec, part: str, colour: str | int) -> BirdSpec:
    """The same bird (pose, scene, texture) with `part` in another vocabulary colour (name or index)."""
    if part not in COLOURED_PARTS:
        raise ValueError(f"cannot recolour part {part!r}; coloured parts are {', '.join(COLOURED_PARTS)}")
    return dataclasses.replace(spec, **{part: NAMES[colour_index(colour)]})


def _random_caption(spec: BirdSpec, rng: np.random.Generator) -> str:
    count = int(rng.choice([1, 2, 2, 3, 3, 4]))
    parts = [DESCRIBED_PARTS[i] for i in rng.permutation(len(DESCRIBED_PARTS))[:count]]
    nouns = [str(rng.choice(NOUNS[part])) for part in parts]
    phrases = [_phrase(spec, part, noun) for part, noun in zip(parts, nouns)]
    size = str(rng.choice(_SIZES))
    form = rng.integers(3)
    if form == 0 and count == 1:
        verb = "are" if nouns[0] in _PLURAL else "is"
        return f"this bird's {nouns[0]} {verb} {getattr(spec, parts[0])}"
    if form == 1:
        return f"{_join(phrases)} on a {size} {spec.body} bird"
    opener = str(rng.choice(_OPENERS)).format(size=size, body=spec.body, a_body=f"{_article(spec.body)} {spec.body}")
    return f"{opener} {_join(phrases)}"


def _phrase(spec: BirdSpec, part: str, noun: str) -> str:
    return colour_phrase(getattr(spec, part), noun)


def colour_phrase(colour: str, noun: str) -> str:
    """"a red crown", "blue wings": a colour and a part noun with the right article."""
    return f"{colour} {noun}" if noun in _PLURAL else f"{_article(colour)} {colour} {noun}"


def part_caption(part: str, colour: str) -> str:
    """A one-part caption ("this bird has a red crown"), as zero-shot retrieval prompts use."""
    return "this bird has " + colour_phrase(colour, NOUNS[part][0])


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
