"""SynthBirds renderer, captions, edits and part-colour metrics."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, distance_transform_edt

from clipsr.synthbirds.captions import caption_colours, caption_mentions, captions, edit, recolour
from clipsr.synthbirds.measure import part_colour_accuracy, part_colour_survival, part_colours
from clipsr.synthbirds.colours import ANCHORS, NAMES, colour_index, nearest_colour
from clipsr.synthbirds.render import DESCRIBED_PARTS, PARTS, render, sample_spec

SEEDS = range(100, 130)


def test_anchors_are_far_apart_and_classify_themselves():
    distances = np.linalg.norm(ANCHORS[:, None] - ANCHORS[None], axis=-1) + np.eye(len(NAMES)) * 1e9
    assert distances.min() > 80
    assert nearest_colour(ANCHORS).tolist() == list(range(len(NAMES)))
    assert colour_index("grey") == NAMES.index("grey") and colour_index(3) == 3
    with pytest.raises(ValueError, match="gray"):
        colour_index("gray")


def test_same_seed_same_bird_other_seed_other_bird():
    assert sample_spec(7) == sample_spec(7)
    image, masks = render(sample_spec(7))
    again, masks_again = render(sample_spec(7))
    assert np.array_equal(image, again)
    assert all(np.array_equal(masks[p], masks_again[p]) for p in PARTS)
    assert sample_spec(8) != sample_spec(7)
    assert not np.array_equal(render(sample_spec(8))[0], image)


def test_spec_rejects_unknown_colour():
    with pytest.raises(ValueError, match="crown"):
        dataclasses.replace(sample_spec(0), crown="gold")


@pytest.mark.parametrize("seed", SEEDS)
def test_masks_non_empty_disjoint_and_described_parts_thin(seed):
    image, masks = render(sample_spec(seed))
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    assert set(masks) == set(PARTS)
    stacked = np.stack([masks[p] for p in PARTS])
    assert stacked.dtype == bool and stacked.shape == (len(PARTS), 256, 256)
    assert stacked.any(axis=(1, 2)).all(), "every part is visible"
    assert stacked.sum(axis=0).max() == 1, "every pixel of at most one part"
    for part in DESCRIBED_PARTS:  # thickness = 2 x largest distance to the mask edge: about half to one LR
        # pixel (16 px), so a locator can find the part and the LR still mixes its colour (measured on seeds
        # 0-129: 6-18 px, the belly's widest point the most)
        assert 5 <= 2 * distance_transform_edt(masks[part]).max() <= 20, part
    assert 2 * distance_transform_edt(~masks["background"]).max() >= 32  # the bird is two LR pixels thick


def test_survival_described_parts_near_chance_body_and_hr_exact():
    survival = part_colour_survival(n=60)
    for part, acc in survival.items():
        assert acc["hr"] >= 0.98, (part, acc)
    for part in DESCRIBED_PARTS:  # measured on 300 val birds: crown 39%, wing 23%, belly 36%, beak 17%
        assert survival[part]["lr"] <= 0.5, (part, survival[part])
    for part in ("body", "head", "background"):  # measured: 99%, 100%, 99%
        assert survival[part]["lr"] >= 0.9, (part, survival[part])


def test_part_colour_accuracy_on_true_edited_and_float_images():
    spec = sample_spec(3)
    image, masks = render(spec)
    truth = {part: getattr(spec, part) for part in DESCRIBED_PARTS}
    assert all(part_colour_accuracy(image, masks, truth).values())
    assert all(part_colour_accuracy(image.astype(np.float32) / 255, masks, truth).values())
    other = NAMES[(colour_index(spec.crown) + 4) % len(NAMES)]
    assert part_colour_accuracy(image, masks, {"crown": other}) == {"crown": False}
    edited, _ = render(edit(spec, "crown", other))
    assert part_colour_accuracy(edited, masks, {"crown": other, "wing": spec.wing}) == {"crown": True, "wing": True}
    assert part_colours(edited, masks, ["crown"])["crown"] == colour_index(other)


def test_part_colour_accuracy_rejects_bad_input():
    image, masks = render(sample_spec(3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        part_colour_accuracy(image.astype(np.float32) / 127.5 - 1, masks, {"crown": "red"})
    with pytest.raises(ValueError, match="no mask"):
        part_colour_accuracy(image, {"body": masks["body"]}, {"crown": "red"})
    with pytest.raises(ValueError, match="shape"):
        part_colour_accuracy(image[..., 0], masks, {"crown": "red"})


@pytest.mark.parametrize("seed", range(40))
def test_captions_name_true_colours(seed):
    spec = sample_spec(seed)
    texts = captions(spec, np.random.default_rng(seed))
    assert 5 <= len(texts) <= 11 and len(set(texts)) == len(texts)
    assert texts == captions(spec, np.random.default_rng(seed))
    assert caption_colours(texts[0]) == {part: getattr(spec, part) for part in DESCRIBED_PARTS}
    for text in texts:
        named = caption_colours(text)
        assert all(getattr(spec, part) == colour for part, colour in named.items()), (text, spec.colours)
        # a caption naming nothing has no colour word of a described part either
        assert named or not any(re.search(rf"\b{colour}\b", text) for colour in NAMES if colour != spec.body), text


def test_the_grammar_has_every_phrasing_and_the_parse_reads_what_users_type():
    texts = [t for seed in range(300) for t in captions(sample_spec(seed), np.random.default_rng(seed))]
    assert any("-" in t for t in texts) and any(": " in t for t in texts) and any(t.startswith("a bird") for t in texts)
    assert sum(not caption_colours(t) for t in texts) / len(texts) == pytest.approx(0.05, abs=0.03)
    assert caption_colours("a bird with red crown") == {"crown": "red"}
    assert caption_colours("Red-crowned bird with blue wings") == {"crown": "red", "wing": "blue"}
    assert caption_colours("crown: red, bill: black") == {"crown": "red", "beak": "black"}
    assert caption_colours("this bird's wing bars are white") == {"wing": "white"}
    assert caption_colours("a small red bird") == {}


def test_edit_changes_one_part_only():
    spec = sample_spec(11)
    new_colour = NAMES[(colour_index(spec.belly) + 1) % len(NAMES)]
    edited = edit(spec, "belly", colour_index(new_colour))
    assert edited.belly == new_colour and dataclasses.replace(edited, belly=spec.belly) == spec
    before, masks = render(spec)
    after, masks_after = render(edited)
    assert all(np.array_equal(masks[p], masks_after[p]) for p in PARTS)
    changed = np.any(before != after, axis=-1)
    assert changed[masks["belly"]].mean() > 0.9
    assert not changed[~binary_dilation(masks["belly"], iterations=2)].any()
    with pytest.raises(ValueError, match="head"):
        edit(spec, "head", "red")
    with pytest.raises(ValueError, match="gold"):
        edit(spec, "belly", "gold")


def test_recolour_moves_a_part_along_the_vocabulary_and_never_keeps_its_colour():
    spec = sample_spec(11)
    start = colour_index(spec.wing)
    for shift in range(1, len(NAMES)):
        moved = recolour(spec, "wing", shift)
        assert moved.wing == NAMES[(start + shift) % len(NAMES)] != spec.wing
        assert dataclasses.replace(moved, wing=spec.wing) == spec
    for shift in (0, len(NAMES), -1):
        with pytest.raises(ValueError, match="another colour"):
            recolour(spec, "wing", shift)


def test_mentions_give_each_part_colour_and_word_with_where_they_end():
    caption = "A Red-crowned bird with blue wing bars and a belly: white, its bill is black"
    mentions = caption_mentions(caption)
    assert [(m.part, m.colour, m.word, m.separate) for m in mentions] == [
        ("crown", "red", "crowned", False), ("wing", "blue", "wing bars", True),
        ("belly", "white", "belly", False), ("beak", "black", "bill", True)]
    wing, beak = mentions[1], mentions[3]
    assert caption[:wing.word_end].endswith("wing bars") and caption[:wing.colour_end].endswith("blue")
    assert caption[:beak.word_end].endswith("bill") and caption[:beak.colour_end].endswith("black")
    assert caption_colours(caption) == {m.part: m.colour for m in mentions}
