"""SynthBirds as a torch Dataset, its splits, the JSONL export and the command line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import binary_dilation
from typer.testing import CliRunner

from clipsr.data.registry import build_dataset
from clipsr.data.resize import bicubic_downsample
from clipsr.synthbirds.__main__ import app
from clipsr.synthbirds.captions import bird_captions, caption_colours
from clipsr.synthbirds.colours import NAMES, nearest_colour
from clipsr.synthbirds.dataset import SynthBirdsDataset, described_colours
from clipsr.synthbirds.jsonl import export_jsonl
from clipsr.synthbirds.render import DESCRIBED_PARTS, render
from clipsr.synthbirds.sheet import contact_sheet
from clipsr.synthbirds.splits import DEFAULT_COUNTS, SPLIT_SEEDS, split_seeds
from clipsr.train_clip import collate_captioned


def test_split_seed_ranges_are_disjoint_and_bounded():
    ranges = list(SPLIT_SEEDS.values())
    for i, a in enumerate(ranges):
        for b in ranges[i + 1:]:
            assert a.stop <= b.start or b.stop <= a.start
    assert len(split_seeds("val")) == DEFAULT_COUNTS["val"]
    assert split_seeds("test", 3, 5) == range(SPLIT_SEEDS["test"].start + 5, SPLIT_SEEDS["test"].start + 8)
    with pytest.raises(ValueError, match="leave the train seed range"):
        split_seeds("train", 10, len(SPLIT_SEEDS["train"]) - 5)
    with pytest.raises(ValueError, match="unknown SynthBirds split 'dev'"):
        split_seeds("dev")


def test_train_and_test_keys_never_overlap():
    train = SynthBirdsDataset("train", count=50, seed_offset=0)
    test = SynthBirdsDataset("test", count=50)
    assert not set(train.seeds) & set(test.seeds)
    assert len(SynthBirdsDataset("train")) == DEFAULT_COUNTS["train"]


@pytest.mark.parametrize("scale", [16, 8, 4])
def test_eval_item_shapes_ranges_and_first_caption(scale):
    ds = SynthBirdsDataset("val", scale=scale, train=False, count=3)
    item = ds[1]
    assert item["hr"].shape == (3, 256, 256) and item["hr"].dtype == torch.float32
    assert item["lr"].shape == (3, 256 // scale, 256 // scale) and item["lr"].dtype == torch.float32
    for key in ("hr", "lr"):
        assert -1 <= item[key].min() and item[key].max() <= 1
    spec = ds.spec(1)
    assert item["caption"] == bird_captions(spec)[0]
    assert item["key"] == f"synthbirds-val-{spec.seed:08d}" and item["seed"] == spec.seed
    assert torch.equal(item["colours"], described_colours(spec)) and torch.equal(item["lr_colours"], item["colours"])
    hr = render(spec)[0].astype(np.float32) / 255
    assert torch.allclose(item["hr"], torch.from_numpy(hr.transpose(2, 0, 1)) * 2 - 1)
    lr = np.clip(bicubic_downsample(hr, scale), 0, 1)
    assert torch.allclose(item["lr"], torch.from_numpy(lr.transpose(2, 0, 1)) * 2 - 1, atol=1e-6)
    assert torch.equal(ds[1]["hr"], item["hr"]) and ds[1]["caption"] == item["caption"]


def test_training_picks_captions_of_the_bird():
    ds = SynthBirdsDataset("train", count=2)
    torch.manual_seed(0)
    picked = {ds[0]["caption"] for _ in range(30)}
    assert picked <= set(bird_captions(ds.spec(0))) and len(picked) > 1


def test_mismatched_lr_keeps_hr_and_caption_true():
    honest = SynthBirdsDataset("train", count=4, train=False)
    mismatched = SynthBirdsDataset("train", count=4, train=False, mismatch_lr_prob=1.0)
    torch.manual_seed(0)
    for i in range(4):
        a, b = honest[i], mismatched[i]
        assert torch.equal(a["hr"], b["hr"]) and a["caption"] == b["caption"]
        assert torch.equal(a["colours"], b["colours"])
        assert (b["lr_colours"] != b["colours"]).any()
        assert not torch.equal(a["lr"], b["lr"])


def test_part_labels_number_the_described_parts():
    ds = SynthBirdsDataset("train", count=1, train=False, part_labels=True)
    labels = ds[0]["part_labels"]
    masks = render(ds.spec(0))[1]
    assert labels.dtype == torch.long and labels.shape == (256, 256)
    for i, part in enumerate(DESCRIBED_PARTS):
        assert torch.equal(labels == i + 1, torch.from_numpy(masks[part])), part
    assert (labels == 0).float().mean() > 0.9
    item = ds[0]
    assert torch.equal(item["palette_named"], torch.ones(len(DESCRIBED_PARTS)))  # the canonical caption
    hr = ((item["hr"].permute(1, 2, 0) + 1) * 127.5).numpy()
    for i, part in enumerate(DESCRIBED_PARTS):  # each part's own colour, nearest its vocabulary anchor
        assert nearest_colour((item["palette_colours"][i].numpy() + 1) * 127.5) == item["colours"][i]
        assert np.abs(hr[masks[part]].mean(0) / 127.5 - 1 - item["palette_colours"][i].numpy()).max() < 0.25


def test_part_labels_leave_the_parts_a_caption_does_not_name_to_the_image():
    ds = SynthBirdsDataset("train", count=30, train=True, part_labels=True)
    torch.manual_seed(0)
    partial = 0
    for i in range(len(ds)):
        item = ds[i]
        named = caption_colours(item["caption"])
        assert item["palette_named"].tolist() == [float(p in named) for p in DESCRIBED_PARTS]
        masks = render(ds.spec(i))[1]
        for k, part in enumerate(DESCRIBED_PARTS):
            on_part = item["part_labels"][torch.from_numpy(masks[part])]
            assert (on_part == (k + 1 if part in named else 0)).all(), (item["caption"], part)
        partial += len(named) < len(DESCRIBED_PARTS)
    assert partial > 10


def test_mismatched_lr_recolours_only_parts_the_caption_names():
    ds = SynthBirdsDataset("train", count=30, train=True, mismatch_lr_prob=1.0)
    torch.manual_seed(1)
    for i in range(len(ds)):
        item = ds[i]
        named = caption_colours(item["caption"])
        changed = {DESCRIBED_PARTS[k] for k in (item["lr_colours"] != item["colours"]).nonzero().flatten().tolist()}
        assert changed <= set(named) and (changed or not named), (item["caption"], changed)


def test_attributes_label_every_caption_of_the_bird():
    item = SynthBirdsDataset("train", count=1, attributes=True)[0]
    texts = bird_captions(SynthBirdsDataset("train", count=1).spec(0))
    assert item["attribute_captions"] == texts
    labels = item["attribute_labels"]
    assert labels.shape == (len(texts), len(DESCRIBED_PARTS))
    assert torch.equal(labels[0], item["colours"])  # the canonical caption names every part
    assert ((labels == len(NAMES)) | (labels == item["colours"])).all()
    assert (labels == len(NAMES)).any(), "some phrasings leave parts out"


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="scale 3"):
        SynthBirdsDataset(scale=3)
    with pytest.raises(ValueError, match="mismatch_lr_prob 1.5"):
        SynthBirdsDataset(mismatch_lr_prob=1.5)


def test_export_jsonl_round_trip(tmp_path):
    path = export_jsonl(tmp_path, "val", count=3, scale=16)
    assert path == tmp_path / "val.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    ds = SynthBirdsDataset("val", count=3, train=False)
    assert len(lines) == 3
    for i, entry in enumerate(lines):
        spec = ds.spec(i)
        hr = np.asarray(Image.open(tmp_path / entry["image"]).convert("RGB"))
        assert np.array_equal(hr, render(spec)[0])
        assert entry["captions"] == bird_captions(spec) and entry["key"] == ds[i]["key"]
        assert entry["colours"] == {part: getattr(spec, part) for part in DESCRIBED_PARTS}
        assert Image.open(tmp_path / entry["lr"]).size == (16, 16)
    generic = build_dataset("jsonl", str(tmp_path), "val", 16, False)
    assert len(generic) == 3 and generic[0]["caption"] == lines[0]["captions"][0]


def test_contact_sheet(tmp_path):
    path = contact_sheet(tmp_path / "sheet.png", count=4, columns=3)
    assert Image.open(path).size == (3 * 512, 2 * 256)
    with pytest.raises(ValueError, match="columns"):
        contact_sheet(tmp_path / "x.png", count=4, columns=0)


def test_cli_export_and_survival(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(tmp_path), "--split", "test", "--count", "2", "--scale", "8"])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "test.jsonl").read_text().splitlines()) == 2
    assert len(list((tmp_path / "test_lr_x8").glob("*.png"))) == 2
    result = runner.invoke(app, ["survival", "--n", "4"])
    assert result.exit_code == 0, result.output
    assert "crown" in result.output and "background" in result.output
    result = runner.invoke(app, ["export", str(tmp_path), "--split", "dev", "--count", "2"])
    assert result.exit_code == 2 and "error: Invalid value for '--split': 'dev' is not one of train" in result.output


def test_twins_differ_in_one_named_part_only():
    torch.manual_seed(0)
    ds = SynthBirdsDataset("train", count=6, train=True, twins=True)
    for i in range(len(ds)):
        item = ds[i]
        changed = (item["colours"] != item["twin_colours"]).nonzero().flatten().tolist()
        assert len(changed) == 1
        part = DESCRIBED_PARTS[changed[0]]
        # the same sentence, one colour word apart, and that word is the changed part's
        words, twin_words = item["caption"].split(), item["twin_caption"].split()
        assert len(words) == len(twin_words)
        assert 1 <= sum(a != b for a, b in zip(words, twin_words)) <= 2  # colour (and "a"/"an")
        assert NAMES[item["twin_colours"][changed[0]]] in item["twin_caption"]
        # the same picture but for that part
        mask = render(ds.spec(i))[1][part]
        differs = (item["hr"] != item["twin_hr"]).any(0).numpy()
        assert differs.any() and differs[~binary_dilation(mask, iterations=2)].sum() == 0
    assert "twin_hr" not in SynthBirdsDataset("train", count=1)[0]


def test_clip_stage_batches_twins_as_hard_negatives():
    ds = SynthBirdsDataset("train", count=3, train=True, twins=True)
    items = [ds[i] for i in range(3)]
    images, captions, attributes = collate_captioned(items)
    assert attributes is None
    assert images.shape == (6, 3, 256, 256)
    assert captions == [i["caption"] for i in items] + [i["twin_caption"] for i in items]
    torch.testing.assert_close(images[3:], torch.stack([i["twin_hr"] for i in items]))
    plain, plain_captions, _ = collate_captioned([SynthBirdsDataset("train", count=1)[0]])
    assert plain.shape[0] == 1 and len(plain_captions) == 1
