"""The locator stage: a cache of rendered birds, a locator trained on it, a model started from another's weights."""
from __future__ import annotations

import numpy as np
import pytest
import safetensors.numpy
import torch
from typer.testing import CliRunner

from clipsr.checkpoint import CheckpointError, save_checkpoint
from clipsr.factory import create_model, warm_start_model
from clipsr.locator import PartLocator
from clipsr.synthbirds.__main__ import app
from clipsr.synthbirds.dataset import part_label_map
from clipsr.synthbirds.locator_stage import (WIDER, load_or_render_cache, locator_iou, render_cache, train_locator,
                                             varied_spec)
from clipsr.synthbirds.render import render, sample_spec
from clipsr.synthbirds.splits import split_seeds


def test_the_cache_holds_each_birds_lr_and_its_part_labels_at_the_sr_size(tmp_path):
    cache = render_cache("val", 3, progress=False)
    assert cache["lr"].shape == (3, 3, 16, 16) and cache["labels"].shape == (3, 256, 256)
    assert -1.0 <= cache["lr"].min() and cache["lr"].max() <= 1.0
    seeds = split_seeds("val", 3)
    np.testing.assert_array_equal(cache["labels"][0], part_label_map(render(sample_spec(int(seeds[0])))[1]))
    varied = varied_spec(int(seeds[1]))  # every other bird: other sizes and proportions, the same colours
    np.testing.assert_array_equal(cache["labels"][1], part_label_map(render(varied)[1]))
    assert varied.crown == sample_spec(int(seeds[1])).crown and varied != sample_spec(int(seeds[1]))
    assert all(low <= getattr(varied, name) <= high for name, (low, high) in WIDER.items())
    assert set(np.unique(cache["labels"])) <= {0, 1, 2, 3, 4} and (cache["labels"] > 0).any()
    path = tmp_path / "cache.safetensors"
    first = load_or_render_cache(path, "val", 3)
    path.write_bytes(path.read_bytes())  # the stored cache is read back, not rendered again
    again = load_or_render_cache(path, "val", 3)
    np.testing.assert_array_equal(again["labels"], first["labels"])
    np.testing.assert_array_equal(again["lr"], cache["lr"])
    assert len(load_or_render_cache(path, "val", 4)["lr"]) == 4, "another bird count renders anew"
    coarse = dict(cache, labels=cache["labels"][:, 2::4, 2::4].copy())
    safetensors.numpy.save_file(coarse, str(path))
    assert load_or_render_cache(path, "val", 3)["labels"].shape[-1] == 256, "a cache of another kind renders anew"


def test_training_on_the_cache_lowers_the_loss_and_leaves_the_locator_frozen():
    torch.manual_seed(0)
    cache = render_cache("train", 32, progress=False)
    locator = PartLocator(16, 4, width=16, blocks=1)
    first = train_locator(locator, cache, steps=1, batch_size=16, progress=False)
    later = train_locator(locator, cache, steps=60, batch_size=16, progress=False)
    assert later < 0.8 * first
    keep = PartLocator(16, 4, width=16, blocks=1)
    keep.load_state_dict(locator.state_dict())
    train_locator(keep, cache, steps=20, batch_size=16, keep_weight=4.0, progress=False)
    with torch.no_grad():
        painted = [1 - m.choice(torch.from_numpy(cache["lr"])).softmax(1)[:, 0].mean() for m in (locator, keep)]
    assert painted[1] < 0.9 * painted[0], "a heavier 'no part' class gives the parts less of the image"
    assert not any(p.requires_grad for p in locator.parameters()) and not locator.training
    iou = locator_iou(locator, cache)
    assert set(iou) == {"crown", "wing", "belly", "beak"} and all(0.0 <= v <= 1.0 for v in iou.values())


def test_warm_start_copies_every_matching_weight_and_names_the_rest(tmp_path):
    torch.manual_seed(0)
    source = create_model("tiny", scale=16, text_palette=4)
    path = save_checkpoint(source, tmp_path / "source.safetensors")
    # another upsampler width: those do not match
    target, missing = warm_start_model(path, "tiny", scale=16, text_palette=4, up_width=8)
    assert missing and all(k.startswith(("generator.upsampler", "generator.palette")) or "locator" not in k
                           for k in missing)
    assert not any(k.startswith("generator.locator") for k in missing)
    torch.testing.assert_close(target.generator.locator.out.weight, source.generator.locator.out.weight)
    assert not any(k.startswith(("clip_visual", "text_encoder", "discriminator.clip_visual")) for k in missing), \
        "a shared CLIP saved under one name counts as copied under all"
    same, none_missing = warm_start_model(path)  # the config the checkpoint carries
    assert none_missing == [] and same.config == source.config
    with pytest.raises(ValueError, match="takes no scale or overrides"):
        warm_start_model(path, up_width=8)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        warm_start_model(tmp_path / "none.safetensors", "tiny")


def test_cli_trains_the_locator_of_a_checkpoint_and_refuses_bad_arguments(tmp_path):
    torch.manual_seed(0)
    start = save_checkpoint(create_model("synthbirds", scale=16), tmp_path / "start.safetensors")
    out = tmp_path / "locator.safetensors"
    result = CliRunner().invoke(app, ["locator", "-o", str(out), "--start", str(start), "--birds", "8", "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert "val IoU crown" in result.output and (tmp_path / "locator_val.safetensors").is_file()
    before, after = create_model(start), create_model(out)
    assert not torch.equal(before.generator.locator.out.weight, after.generator.locator.out.weight)
    torch.testing.assert_close(before.generator.refine[0].conv1.weight, after.generator.refine[0].conv1.weight)
    trained = out.read_bytes()
    again = ["locator", "-o", str(out), "--start", str(start), "--birds", "8", "--steps", "2"]
    refused = CliRunner().invoke(app, again)
    assert refused.exit_code == 2 and "--restart moves it aside" in refused.output and out.read_bytes() == trained
    assert "--resume" not in refused.output, "a file written whole at the end has nothing to resume"
    itself = CliRunner().invoke(app, ["locator", "-o", str(start), "--start", str(start), "--restart"])
    assert itself.exit_code == 2 and "is the checkpoint it starts from" in itself.output
    restarted = CliRunner().invoke(app, [*again, "--restart"])
    assert restarted.exit_code == 0, restarted.output
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("locator.safetensors.old-")]
    assert len(aside) == 1 and aside[0].read_bytes() == trained and create_model(out).generator.locator is not None
    both = CliRunner().invoke(app, ["locator", "-o", str(out), "--start", str(start), "--clip", str(start)])
    assert both.exit_code == 2 and "exactly one of --clip" in both.output
    missing = CliRunner().invoke(app, ["locator", "-o", str(tmp_path / "new.safetensors"), "--clip",
                                       str(tmp_path / "none.safetensors")])
    assert missing.exit_code != 0 and "no CLIP weights" in missing.output


def test_cli_warm_start_builds_another_preset_around_a_checkpoints_weights(tmp_path):
    torch.manual_seed(0)
    start = save_checkpoint(create_model("synthbirds", scale=16), tmp_path / "start.safetensors")
    out = tmp_path / "notext.safetensors"
    result = CliRunner().invoke(app, ["warm-start", str(start), "-o", str(out), "--preset", "tiny",
                                      "--set", "generator.use_text=false"])
    assert result.exit_code == 0 and "0 weights not in" in result.output, result.output
    model = create_model(out)
    assert model.generator.palette is None and not model.config.generator.use_text
    torch.testing.assert_close(model.generator.refine[0].conv1.weight, create_model(start).generator.refine[0].conv1.weight)
    written = out.read_bytes()
    refused = CliRunner().invoke(app, ["warm-start", str(start), "-o", str(out)])
    assert refused.exit_code == 2 and refused.output.startswith("error: ") and "--restart moves it aside" in refused.output
    assert out.read_bytes() == written
    itself = CliRunner().invoke(app, ["warm-start", str(start), "-o", str(start), "--restart"])
    assert itself.exit_code == 2 and "is the checkpoint it starts from" in itself.output
    restarted = CliRunner().invoke(app, ["warm-start", str(start), "-o", str(out), "--preset", "synthbirds", "--restart"])
    assert restarted.exit_code == 0 and "moved the earlier notext.safetensors to" in restarted.output, restarted.output
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("notext.safetensors.old-")]
    assert len(aside) == 1 and aside[0].read_bytes() == written
    assert create_model(out).generator.palette is not None, "the new file is the restarted command's"
    missing = CliRunner().invoke(app, ["warm-start", str(tmp_path / "none.safetensors"), "-o", str(tmp_path / "x")])
    assert missing.exit_code == 1 and "no checkpoint at" in missing.output
