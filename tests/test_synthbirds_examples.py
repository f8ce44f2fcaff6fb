"""The shipped example inputs are what `python -m clipsr.synthbirds examples` writes with today's renderer,
and the command keeps the no-replace rule: an existing folder is refused or moved aside whole, never left
half-written."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from clipsr.synthbirds.__main__ import app
from clipsr.synthbirds.captions import bird_captions, caption_colours
from clipsr.synthbirds.examples import EXAMPLE_SEEDS
from clipsr.synthbirds.render import DESCRIBED_PARTS, sample_spec
from clipsr.synthbirds.splits import SPLIT_SEEDS
from clipsr_runtime.prompt_files import load_prompts

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_the_shipped_examples_are_what_the_command_writes_today(tmp_path):
    result = CliRunner().invoke(app, ["examples", "-o", str(tmp_path / "examples")])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "examples").iterdir())
    assert written == sorted(p.name for p in EXAMPLES.iterdir()) == [f"bird_{i}.png" for i in range(4)] + ["prompts.csv"]
    assert (tmp_path / "examples" / "prompts.csv").read_text() == (EXAMPLES / "prompts.csv").read_text(), \
        "the renderer or the captions changed: python -m clipsr.synthbirds examples -o examples --restart"
    for i in range(4):
        fresh, shipped = _pixels(tmp_path / "examples" / f"bird_{i}.png"), _pixels(EXAMPLES / f"bird_{i}.png")
        assert fresh.shape == (16, 16, 3)
        assert np.array_equal(fresh, shipped), \
            "the renderer changed: python -m clipsr.synthbirds examples -o examples --restart"


def test_examples_are_test_birds_with_their_full_caption_and_parts_unlike_the_body():
    prompts = load_prompts(EXAMPLES / "prompts.csv")
    assert all(seed in SPLIT_SEEDS["test"] for seed in EXAMPLE_SEEDS)
    for i, seed in enumerate(EXAMPLE_SEEDS):
        spec = sample_spec(seed)
        assert prompts[f"bird_{i}.png"] == bird_captions(spec)[0]
        assert caption_colours(prompts[f"bird_{i}.png"]) == {part: getattr(spec, part) for part in DESCRIBED_PARTS}
        assert spec.body not in (spec.crown, spec.wing), "crown and wings must differ from the body (seen only in the caption)"
    assert "purple wings" in prompts["bird_0.png"]  # the README's screenshot changes them to red


def test_an_existing_folder_is_refused_or_moved_aside_whole(tmp_path):
    out = tmp_path / "examples"
    out.mkdir()
    (out / "bird_0.png").write_bytes(b"an earlier example")
    refused = CliRunner().invoke(app, ["examples", "-o", str(out), "--seed", "20000001"])
    assert refused.exit_code == 2 and "exists: --restart moves it aside" in refused.stderr
    assert "--resume" not in refused.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["examples"] and (out / "bird_0.png").read_bytes() == b"an earlier example"

    done = CliRunner().invoke(app, ["examples", "-o", str(out), "--seed", "20000001", "--seed", "20000002",
                                    "--restart"])
    assert done.exit_code == 0, done.output
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("examples.old-")]
    assert len(aside) == 1 and (aside[0] / "bird_0.png").read_bytes() == b"an earlier example"
    assert sorted(p.name for p in out.iterdir()) == ["bird_0.png", "bird_1.png", "prompts.csv"]
    assert load_prompts(out / "prompts.csv")["bird_1.png"] == bird_captions(sample_spec(20_000_002))[0]


def test_a_failure_while_writing_leaves_the_earlier_folder_and_no_draft(tmp_path, monkeypatch):
    out = tmp_path / "examples"
    out.mkdir()
    (out / "prompts.csv").write_text("image,prompt\nbird_0.png,earlier\n")

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    failed = CliRunner().invoke(app, ["examples", "-o", str(out), "--restart"])
    assert failed.exit_code == 1 and failed.stderr.startswith("error: ") and "No space left" in failed.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["examples"]
    assert (out / "prompts.csv").read_text() == "image,prompt\nbird_0.png,earlier\n"


def test_seeds_outside_the_test_split_are_a_usage_error(tmp_path):
    for seed in ("5", str(SPLIT_SEEDS["val"].start)):
        result = CliRunner().invoke(app, ["examples", "-o", str(tmp_path / "out"), "--seed", seed])
        assert result.exit_code == 2 and f"seed {seed} is not a test bird" in result.stderr
    result = CliRunner().invoke(app, ["examples", "-o", str(tmp_path / "out"), "--scale", "7"])
    assert result.exit_code == 2 and "must divide the image size" in result.stderr
    assert not (tmp_path / "out").exists()
