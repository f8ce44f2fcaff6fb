"""Fitting a text palette's colour reader on captions alone."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import clipsr
from clipsr.factory import create_model
from clipsr.losses import palette_losses, palette_text_losses
from clipsr.synthbirds.__main__ import app
from clipsr.synthbirds.colours import ANCHORS, NAMES
from clipsr.synthbirds.palette_text import caption_targets, fit_palette_text, palette_text_inputs


def test_caption_targets_are_the_named_anchors():
    colours, named = caption_targets(["a bird with red crown and blue wings", "a bird"])
    assert named.tolist() == [[1, 1, 0, 0], [0, 0, 0, 0]]
    torch.testing.assert_close(colours[0, 0], torch.from_numpy(ANCHORS[NAMES.index("red")] / 127.5 - 1))
    torch.testing.assert_close(colours[0, 1], torch.from_numpy(ANCHORS[NAMES.index("blue")] / 127.5 - 1))
    assert colours[1].abs().sum() == 0


def test_fitting_teaches_the_reader_and_nothing_else():
    torch.manual_seed(0)
    model = create_model("synthbirds", scale=16).eval()
    captions = ["this bird has a red crown", "this bird has a blue crown", "a bird with yellow wings"]
    colours, named = caption_targets(captions)

    def colour_error() -> float:
        with torch.no_grad():
            read, _ = model.generator.palette.read(palette_text_inputs(model, captions))
        return float(((read - colours).abs().mean(-1) * named).sum() / named.sum())

    before = colour_error()
    frozen = {k: v.clone() for k, v in model.state_dict().items() if ".palette.text." not in k}
    fit_palette_text(model, steps=60, birds=8, lr=3e-3, progress=False)
    assert colour_error() < 0.8 * before
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items()), "only the reader moves"
    with pytest.raises(ValueError, match="no text palette"):
        fit_palette_text(create_model("tiny", scale=16), steps=1)


def test_fit_palette_never_replaces_its_output_without_restart(tmp_path):
    demo = Path(clipsr.__file__).parent / "demo" / "synthbirds-tiny-x16.safetensors"
    out = tmp_path / "demo.safetensors"
    out.write_bytes(b"an earlier fit")
    fit = ["fit-palette", str(demo), "-o", str(out), "--steps", "1"]
    refused = CliRunner().invoke(app, fit)
    assert refused.exit_code == 2 and "--restart moves it aside" in refused.output
    assert out.read_bytes() == b"an earlier fit"
    itself = CliRunner().invoke(app, ["fit-palette", str(out), "-o", str(out), "--restart"])
    assert itself.exit_code == 2 and "is the checkpoint it starts from" in itself.output
    done = CliRunner().invoke(app, [*fit, "--restart"])
    assert done.exit_code == 0, done.output
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("demo.safetensors.old-")]
    assert len(aside) == 1 and aside[0].read_bytes() == b"an earlier fit"
    assert create_model(out).generator.palette is not None


def test_the_palette_reads_the_same_colours_alone_as_in_its_forward_and_one_loss_teaches_both():
    torch.manual_seed(0)
    model = create_model("synthbirds", scale=16).eval()
    captions = ["this bird has a red crown", "a bird"]
    text = palette_text_inputs(model, captions)
    palette = model.generator.palette
    with torch.no_grad():
        colours, named = palette.read(text)
        output = palette(torch.zeros(2, 3, 8, 8), torch.zeros(2, palette.parts + 1, 8, 8), text)
    assert colours.shape == (2, 4, 3) and named.shape == (2, 4)
    torch.testing.assert_close(colours, output.colours)
    torch.testing.assert_close(named, output.named)
    target_colours, target_named = caption_targets(captions)
    alone = palette_text_losses(colours, named, target_colours, target_named)
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    with_image = palette_losses(output, labels, target_colours, target_named)
    assert alone.keys() == {"colour", "named"} and with_image.keys() == {"choice", "colour", "named"}
    for name in alone:
        torch.testing.assert_close(alone[name], with_image[name])
    # the colour loss counts named parts only: a wrong colour for an unnamed part costs nothing
    assert palette_text_losses(target_colours + 5 * (1 - target_named[..., None]), named, target_colours,
                               target_named)["colour"] == 0
