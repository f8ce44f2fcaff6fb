"""The SynthBirds proof: measure, report and figure apart and end to end, with its goals read from a model card."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from clipsr.synthbirds.__main__ import app
from clipsr.synthbirds.captions import bird_captions, caption_colours
from clipsr.synthbirds.proof.figure import save_figure
from clipsr.synthbirds.proof.goals import DEMO_CARD, Goal, read_goals
from clipsr.synthbirds.proof.measure import ASKED, WORDINGS, Example, Measurement, edit_named_part, masked_psnr
from clipsr.synthbirds.proof.report import MEASURES, REST_PSNR_CAP, report, to_markdown
from clipsr.synthbirds.proof.run import run_proof
from clipsr.synthbirds.render import DESCRIBED_PARTS, sample_spec

DEMO_GOALS = read_goals(DEMO_CARD, MEASURES)


def test_proof_writes_table_goals_editability_and_figure(tiny16, tmp_path):
    result, set_aside = run_proof(tiny16, tmp_path, no_text=tiny16, goals=DEMO_GOALS, n=8, batch_size=4, figure_rows=2)
    assert set_aside is None
    saved = json.loads((tmp_path / "proof.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["table"].keys() == {"bicubic", "random", "canonical", "shuffled", "plain", "no_text"}
    # the described parts do not survive bicubic 16x: far from the goals whatever the model
    assert result["table"]["bicubic"]["colour_accuracy"] < 0.5
    assert result["table"]["bicubic"]["psnr_y"] > 20
    # the no-text row here is the same model with the same captions: identical to the random-phrasing row
    assert result["table"]["no_text"]["psnr_y"] == result["table"]["random"]["psnr_y"]
    assert list(saved["goals"]) == [goal.name for goal in DEMO_GOALS], "every goal of the card, in its order"
    for goal in DEMO_GOALS:
        checked = saved["goals"][goal.name]
        assert checked["goal"] == goal.target
        assert checked["met"] == (checked["measured"] <= goal.target if goal.direction == "<="
                                  else checked["measured"] >= goal.target)
    assert saved["goals"]["psnr_minus_no_text_db"]["measured"] == 0.0
    assert set(result["wordings"]["crown: {crown}"]) == {"crown"}
    assert set(result["wordings"]["{crown}-crowned bird with {wing} wings"]) == {"crown", "wing"}
    assert 0.0 <= result["editability"]["followed"] <= 1.0
    markdown = (tmp_path / "proof.md").read_text()
    assert "full, random phrasing" in markdown and "| edits_followed |" in markdown
    assert "| plain_caption_vs_no_text_db_max | 0.000 | <= 0.3 | yes |" in markdown
    assert (tmp_path / "proof.png").stat().st_size > 10_000


def test_an_edit_recolours_one_part_the_caption_names_in_the_same_phrasing():
    rng = np.random.default_rng(0)
    for seed in range(30):
        spec = sample_spec(seed)
        for choice, caption in enumerate(bird_captions(spec)):
            new_spec, part, edited = edit_named_part(spec, choice, rng)
            before, after = caption_colours(caption), caption_colours(edited)
            if not before:  # a caption naming nothing is edited in the canonical caption
                before = caption_colours(bird_captions(spec)[0])
            assert part in before and after[part] == getattr(new_spec, part) != before[part]
            assert {p: c for p, c in after.items() if p != part} == {p: c for p, c in before.items() if p != part}


def _record(psnr: float, hits: dict[str, bool], followed: bool, part: str = "crown", rest: float = 35.0) -> dict:
    """A per-bird record as `measure` keeps it: bicubic 2 dB under the model, another bird's caption 1 dB."""
    named = list(hits)
    methods = {"bicubic": {"psnr": psnr - 2, "ssim": 0.5, "colour": {p: False for p in named}},
               "random": {"psnr": psnr, "ssim": 0.9, "colour": hits},
               "canonical": {"psnr": psnr, "ssim": 0.9, "colour": {p: True for p in DESCRIBED_PARTS}},
               "shuffled": {"psnr": psnr - 1, "ssim": 0.8, "colour": {p: False for p in named}},
               "plain": {"psnr": psnr - 0.1, "ssim": 0.85, "colour": {p: False for p in named}}}
    return {"seed": 0, "named": named, "methods": methods,
            "wordings": {w: {p: True for p in ASKED[w]} for w in WORDINGS},
            "edit": {"part": part, "followed": followed, "rest_vs_unedited": rest, "rest_vs_hr": 20.0}}


def test_the_report_sums_records_up_and_checks_goals_both_ways():
    records = [_record(30.0, {"crown": True, "wing": False}, True),
               _record(28.0, {"crown": True}, False, part="wing", rest=math.inf),
               _record(26.0, {}, True)]  # a caption naming no part: no colour hit in the named columns
    goals = [Goal("colour_named_random", 0.6, ">="), Goal("plain_caption_vs_no_text_db_max", 0.3, "<="),
             Goal("edits_followed", 0.7, ">=")]
    result = report(Measurement(records, [], 16), goals)
    assert result["n"] == 3 and result["scale"] == 16
    random = result["table"]["random"]
    assert random["psnr_y"] == 28.0 and random["colour_accuracy"] == pytest.approx(2 / 3)
    assert random["colour_accuracy_per_part"] == {"crown": 1.0, "wing": 0.0, "belly": None, "beak": None}
    assert result["editability"]["followed"] == pytest.approx(2 / 3)
    assert result["editability"]["followed_per_part"] == {"crown": 1.0, "wing": 0.0}
    assert result["editability"]["psnr_rest_vs_unedited_db"] == pytest.approx((35 + REST_PSNR_CAP + 35) / 3)
    # the no-text goal is not checked without the no-text model; the others in the given order
    assert list(result["goals"]) == ["colour_named_random", "edits_followed"]
    assert result["goals"]["colour_named_random"] == {"goal": 0.6, "measured": pytest.approx(2 / 3), "met": True}
    assert result["goals"]["edits_followed"]["met"] is False
    markdown = to_markdown(result, goals)
    assert "| colour_named_random | 0.667 | >= 0.6 | yes |" in markdown
    assert "| edits_followed | 0.667 | >= 0.7 | no |" in markdown
    assert "| goal |" not in to_markdown(report(Measurement(records, [], 16)), ()), "no goals, no goal table"


def test_masked_psnr_looks_only_inside_the_mask():
    a, b = np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)
    b[0, 0] = 255
    mask = np.ones((4, 4), bool)
    assert masked_psnr(a, b, mask) == pytest.approx(10 * np.log10(16))
    mask[0, 0] = False
    assert masked_psnr(a, b, mask) == math.inf


def test_the_figure_has_a_row_per_example(tmp_path):
    tile = np.full((32, 32, 3), 128, np.uint8)
    path = save_figure([Example([tile] * 5, "A: x | B: y")] * 3, tmp_path / "f.png")
    from PIL import Image
    width, height = Image.open(path).size
    assert width == 5 * 32 and height > 3 * 32
    with pytest.raises(ValueError, match="at least one"):
        save_figure([], tmp_path / "none.png")


def test_the_demo_card_holds_the_goals():
    assert [goal.name for goal in DEMO_GOALS] == list(MEASURES)
    named = {goal.name: goal for goal in DEMO_GOALS}
    assert named["plain_caption_vs_no_text_db_max"] == Goal("plain_caption_vs_no_text_db_max", 0.3, "<=")
    assert named["edits_rest_vs_unedited_db"] == Goal("edits_rest_vs_unedited_db", 40.0, ">=")


@pytest.mark.parametrize("front, message", [
    ("goals:\n  - {name: psnr_gain, target: 1, direction: '>='}\n", "'psnr_gain' is not a measure"),
    ("goals:\n  - {name: edits_followed, target: high, direction: '>='}\n", "target 'high' is not a number"),
    ("goals:\n  - {name: edits_followed, target: 0.7, direction: '>'}\n", "direction '>' is not one of"),
    ("goals:\n  - {name: edits_followed, target: 0.7}\n", "exactly name, target and direction"),
    ("goals: [unclosed\n", "not YAML"),
])
def test_a_bad_card_is_refused_with_what_is_wrong(tmp_path, front, message):
    card = tmp_path / "card.md"
    card.write_text(f"---\n{front}---\n# a card\n")
    with pytest.raises(ValueError, match=message):
        read_goals(card, MEASURES)


def test_a_card_without_front_matter_or_goals_has_none(tmp_path):
    plain = tmp_path / "plain.md"
    plain.write_text("# a card\n\n---\n\ntext\n")
    assert read_goals(plain, MEASURES) == []
    other = tmp_path / "other.md"
    other.write_text("---\nlicense: apache-2.0\n---\n# a card\n")
    assert read_goals(other, MEASURES) == []
    unclosed = tmp_path / "unclosed.md"
    unclosed.write_text("---\ngoals: []\n")
    with pytest.raises(ValueError, match="never closed"):
        read_goals(unclosed, MEASURES)


def test_cli_refuses_a_bad_card_before_loading_any_model(tmp_path):
    card = tmp_path / "card.md"
    card.write_text("---\ngoals:\n  - {name: nope, target: 1, direction: '>='}\n---\n")
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"not a checkpoint")  # never read: the card is checked first
    result = CliRunner().invoke(app, ["proof", str(damaged), "--card", str(card), "-o", str(tmp_path / "p")])
    assert result.exit_code == 1 and result.output.startswith("error: ") and "'nope' is not a measure" in result.output
    missing = CliRunner().invoke(app, ["proof", str(damaged), "--card", str(tmp_path / "none.md")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    assert not (tmp_path / "p").exists()


def _earlier_proof(folder):
    folder.mkdir()
    (folder / "proof.json").write_text('{"earlier": true}\n')
    return folder


def test_an_existing_proof_is_refused_before_any_model_is_loaded_or_measured(tmp_path, monkeypatch):
    out = _earlier_proof(tmp_path / "proof")
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"not a checkpoint")  # never read: the output is checked first
    refused = CliRunner().invoke(app, ["proof", str(damaged), "-o", str(out)])
    assert refused.exit_code == 2 and refused.output.startswith("error: ") and refused.output.count("\n") == 1
    assert "proof exists: --restart moves it aside" in refused.output and "--resume" not in refused.output

    def never(*args, **kwargs):
        raise AssertionError("measured although the output was refused")

    monkeypatch.setattr("clipsr.synthbirds.proof.run.measure", never)
    with pytest.raises(ValueError, match="proof exists"):
        run_proof(None, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.safetensors", "proof"]
    assert (out / "proof.json").read_text() == '{"earlier": true}\n'


@pytest.mark.parametrize("fails_in", ["measure", "save_figure"])
def test_a_failure_while_measuring_or_writing_leaves_the_earlier_proof_whole(tiny16, tmp_path, monkeypatch, fails_in):
    out = _earlier_proof(tmp_path / "proof")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(f"clipsr.synthbirds.proof.run.{fails_in}", full_disk)
    with pytest.raises(OSError, match="No space left"):
        run_proof(tiny16, out, n=2, batch_size=2, figure_rows=1, restart=True)
    assert [p.name for p in tmp_path.iterdir()] == ["proof"], "nothing set aside, no draft left"
    assert [p.name for p in out.iterdir()] == ["proof.json"] and json.loads((out / "proof.json").read_text()) == {
        "earlier": True}


def test_cli_restart_sets_the_earlier_proof_aside_once_the_new_one_is_written(tiny16, tmp_path):
    from clipsr.checkpoint import save_checkpoint

    checkpoint = save_checkpoint(tiny16, tmp_path / "tiny.safetensors")
    out = _earlier_proof(tmp_path / "proof")
    done = CliRunner().invoke(app, ["proof", str(checkpoint), "-o", str(out), "--n", "2", "--batch-size", "2",
                                    "--restart"])
    assert done.exit_code == 0, done.output
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("proof.old-")]
    assert len(aside) == 1 and f"moved the earlier proof to {aside[0]}" in done.output
    assert [p.name for p in aside[0].iterdir()] == ["proof.json"]
    assert sorted(p.name for p in out.iterdir()) == ["proof.json", "proof.md", "proof.png"]
    assert json.loads((out / "proof.json").read_text())["n"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no draft left beside it"
