"""CUB-style captions for a BirdSpec, their parse back into part colours, and colour edits of a spec.

Every caption names only described parts (crown, wings, belly, beak; sometimes the body) and always with
their true colour, so any caption of a bird is a correct description; a few name no part at all ("a small
bird"), as real caption corpora do. The phrasings are as varied as what users type: "a red crown",
"red crown" (no article), "red-crowned", "crown: red", "the bird's crown is red". The first caption names
all four described parts in a fixed order: evaluation uses it. `caption_colours` reads any of them back.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from clipsr.synthbirds.colours import NAMES, colour_index
from clipsr.synthbirds.render import COLOURED_PARTS, DESCRIBED_PARTS, BirdSpec

NOUNS: dict[str, tuple[str, ...]] = {
    "crown": ("crown", "cap"),
    "wing": ("wings", "wing bars", "wingbars", "wing"),
    "belly": ("belly", "breast"),
    "beak": ("beak", "bill"),
}
_PLURAL = {"wings", "wing bars", "wingbars"}
# "red-crowned": the adjective a colour joins with a hyphen, per part
ADJECTIVES: dict[str, tuple[str, ...]] = {
    "crown": ("crowned", "capped"),
    "wing": ("winged",),
    "belly": ("bellied", "breasted"),
    "beak": ("billed", "beaked"),
}
_SIZES = ("small", "little", "tiny")  # consonant-initial: "a small ..."
_OPENERS = ("this bird has", "the bird has", "a {size} bird with", "this {size} bird has", "{a_body} bird with",
            "this {size} {body} bird has", "this is a {size} bird with")
_PLAIN = ("a bird", "a {size} bird", "this is a {size} bird", "a {size} {body} bird", "this bird")


def captions(spec: BirdSpec, rng: np.random.Generator) -> list[str]:
    """5 to 10 distinct captions of `spec`; the first names crown, wings, belly and beak."""
    first = "this bird has " + _join([_phrase(spec, part, NOUNS[part][0]) for part in DESCRIBED_PARTS])
    result = [first]
    wanted = int(rng.integers(5, 11))
    if rng.random() < 0.3:  # about 5% of training captions name no described part
        result.append(str(rng.choice(_PLAIN)).format(size=rng.choice(_SIZES), body=spec.body))
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


def recolour(spec: BirdSpec, part: str, shift: int) -> BirdSpec:
    """The same bird with `part` `shift` colours further along the vocabulary (wrapping around), so any shift
    in 1..len(NAMES) - 1 gives another colour; the caller draws the shift with its own RNG (torch in data
    loading, numpy in the proof)."""
    if not 0 < shift < len(NAMES):
        raise ValueError(f"shift {shift} must lie in 1..{len(NAMES) - 1} to give another colour")
    return edit(spec, part, (colour_index(getattr(spec, part)) + shift) % len(NAMES))


def _random_caption(spec: BirdSpec, rng: np.random.Generator) -> str:
    count = int(rng.choice([1, 2, 2, 3, 3, 4]))
    parts = [DESCRIBED_PARTS[i] for i in rng.permutation(len(DESCRIBED_PARTS))[:count]]
    nouns = [str(rng.choice(NOUNS[part])) for part in parts]
    size = str(rng.choice(_SIZES))
    form = int(rng.integers(6))
    if form == 0 and count == 1:
        verb = "are" if nouns[0] in _PLURAL else "is"
        return f"this bird's {nouns[0]} {verb} {getattr(spec, parts[0])}"
    bare = form == 3  # "a bird with red crown and blue wings"
    phrases = [_phrase(spec, part, noun, article=not bare) for part, noun in zip(parts, nouns)]
    if form == 1:
        return f"{_join(phrases)} on a {size} {spec.body} bird"
    if form == 4:  # "a red-crowned bird with blue wings"
        adjective = f"{getattr(spec, parts[0])}-{rng.choice(ADJECTIVES[parts[0]])}"
        head = f"{_article(adjective)} {adjective} bird" if rng.random() < 0.5 else f"{adjective} bird"
        return head if count == 1 else f"{head} with {_join(phrases[1:])}"
    if form == 5:  # "crown: red, wings: blue"
        return ", ".join(f"{noun}: {getattr(spec, part)}" for part, noun in zip(parts, nouns))
    opener = str(rng.choice(_OPENERS)).format(size=size, body=spec.body, a_body=f"{_article(spec.body)} {spec.body}")
    return f"{opener} {_join(phrases)}"


def _phrase(spec: BirdSpec, part: str, noun: str, article: bool = True) -> str:
    return colour_phrase(getattr(spec, part), noun, article)


def colour_phrase(colour: str, noun: str, article: bool = True) -> str:
    """"a red crown", "blue wings": a colour and a part noun with the right article (or none)."""
    return f"{colour} {noun}" if noun in _PLURAL or not article else f"{_article(colour)} {colour} {noun}"


def part_caption(part: str, colour: str) -> str:
    """A one-part caption ("this bird has a red crown"), as zero-shot retrieval prompts use."""
    return "this bird has " + colour_phrase(colour, NOUNS[part][0])


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


_COLOUR = "|".join(NAMES)
_PART_OF = {word: part for table in (NOUNS, ADJECTIVES) for part, words in table.items() for word in words}
_WORD = "|".join(sorted(_PART_OF, key=len, reverse=True))
_ADJECTIVE = {word for words in ADJECTIVES.values() for word in words}
_MENTIONS = re.compile(
    rf"\b(?P<c1>{_COLOUR})(?P<s1>[ -])(?P<w1>{_WORD})\b"            # "red crown", "red-crowned"
    rf"|\b(?P<w2>{_WORD})(?P<s2> is| are|:) (?P<c2>{_COLOUR})\b")  # "crown is red", "crown: red"


@dataclasses.dataclass(frozen=True)
class Mention:
    """One place a caption names a part's colour; offsets index the caption (lower-cased: same length)."""

    part: str
    colour: str
    word: str          # the noun or "-ed" adjective that names the part ("wings", "crowned")
    word_end: int
    colour_end: int
    separate: bool     # noun and colour as separate words: "a red crown", "crown is red" (not "red-crowned",
                       # "crown: red")


def caption_mentions(caption: str) -> list[Mention]:
    """Every part-colour mention of a caption in any phrasing of the grammar above, in reading order,
    case-insensitively."""
    mentions = []
    for match in _MENTIONS.finditer(caption.lower()):
        first = match["c1"] is not None  # the colour comes first: "red crown", "red-crowned"
        colour, word = ("c1", "w1") if first else ("c2", "w2")
        separate = match["s1" if first else "s2"] in (" ", " is", " are") and match[word] not in _ADJECTIVE
        mentions.append(Mention(_PART_OF[match[word]], match[colour], match[word], match.end(word),
                                match.end(colour), separate))
    return mentions


def caption_colours(caption: str) -> dict[str, str]:
    """The described parts a caption names, with their colours: {"crown": "red", ...} (empty for "a bird").

    Reads every phrasing of the grammar above, case-insensitively; a part named twice keeps its first colour."""
    found: dict[str, str] = {}
    for mention in caption_mentions(caption):
        found.setdefault(mention.part, mention.colour)
    return found
