"""What a CLIP knows of SynthBirds: zero-shot retrieval and the text probe of F_T."""
from __future__ import annotations

import json

import open_clip
import pytest
import torch
from typer.testing import CliRunner

from clipsr.clip import load_clip
from clipsr.factory import get_config
from clipsr.synthbirds.__main__ import app
from clipsr.synthbirds.clip_report import (PROBE_SITES, _phrase_ends, part_colour_retrieval, phrasing_probe,
                                           sentence_gate, text_probe)
from clipsr.synthbirds.colours import NAMES
from clipsr.synthbirds.render import DESCRIBED_PARTS
from clipsr.train_clip import save_clip


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    return load_clip(get_config("tiny").clip)


def _without_colour_words(clip):
    """A copy of `clip` in which every colour word is the same word: no colour is left to read."""
    blind = load_clip(get_config("tiny").clip)
    blind.load_state_dict(clip.state_dict())
    colour_tokens = open_clip.get_tokenizer("clipsr-tiny")(list(NAMES))[:, 1]
    with torch.no_grad():
        blind.token_embedding.weight[colour_tokens] = blind.token_embedding.weight[colour_tokens[0]].clone()
    return blind


def test_text_probe_reads_colours_and_fails_when_the_words_are_gone(tiny_clip):
    seen = text_probe(tiny_clip, "clipsr-tiny", n_train=1000, n_test=200, steps=200)
    assert set(seen) == set(DESCRIBED_PARTS)
    assert min(seen.values()) > 0.5  # even a random text tower keeps the colour words apart (chance 10%)
    unseen = text_probe(_without_colour_words(tiny_clip), "clipsr-tiny", n_train=1000, n_test=200, steps=200)
    assert max(unseen.values()) < 0.3


def test_phrasing_probe_finds_colours_at_their_words_and_nothing_once_they_are_gone(tiny_clip):
    seen = phrasing_probe(tiny_clip, "clipsr-tiny", n_train=150, n_test=60)
    assert set(seen) == set(PROBE_SITES) and all(set(v) == set(DESCRIBED_PARTS) for v in seen.values())
    # each colour word is its own token: even a random tower keeps it at that word's position
    assert min(seen["colour_token"].values()) > 0.6
    unseen = phrasing_probe(_without_colour_words(tiny_clip), "clipsr-tiny", n_train=150, n_test=60)
    assert max(max(v.values()) for v in unseen.values()) < 0.3


def test_retrieval_of_a_random_clip_is_near_chance(tiny_clip):
    result = part_colour_retrieval(tiny_clip, "clipsr-tiny", n=40, batch=20)
    assert set(result) == set(DESCRIBED_PARTS)
    assert all(0.0 <= v <= 0.4 for v in result.values())


def test_cli_clip_report(tiny_clip, tmp_path):
    weights = save_clip(tiny_clip, tmp_path / "clip.safetensors")
    out = tmp_path / "report" / "clip.json"
    out.parent.mkdir()
    out.write_text("an earlier report")
    result = CliRunner().invoke(app, ["clip-report", str(weights), "--n", "20", "--probe-birds", "500",
                                      "--probe-steps", "100", "--phrasing-birds", "100", "--gate", "0.95",
                                      "--out", str(out), "--restart"])
    assert result.exit_code == 0, result.output
    aside = [p for p in out.parent.iterdir() if p.name.startswith("clip.json.old-")]
    assert len(aside) == 1 and aside[0].read_text() == "an earlier report" and "moved the earlier clip.json" in result.output
    report = json.loads(out.read_text())
    assert set(report) == {"trained", "random"} and set(report["trained"]["text_probe"]) == set(DESCRIBED_PARTS)
    assert set(report["random"]["phrasing_probe"]) == set(PROBE_SITES)
    # a random text tower loses a named part's colour in most phrasings: the SR stage's gate is not met
    assert report["trained"]["sentence_gate"]["met"] is False and "gate" in result.output and "NOT met" in result.output
    assert report["trained"]["sentence_gate"]["threshold"] == 0.95 and ">= 95% for every part" in result.output
    missing = CliRunner().invoke(app, ["clip-report", str(tmp_path / "nope.safetensors")])
    assert missing.exit_code == 2 and "nope.safetensors' does not exist" in missing.output


def test_an_existing_report_is_refused_before_any_clip_is_loaded_and_kept_when_measuring_fails(tmp_path):
    out = tmp_path / "clip.json"
    out.write_text("an earlier report")
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"not CLIP weights")  # never read: the output is checked first
    refused = CliRunner().invoke(app, ["clip-report", str(damaged), "-o", str(out)])
    assert refused.exit_code == 2 and refused.output.startswith("error: ") and refused.output.count("\n") == 1
    assert "clip.json exists: --restart moves it aside" in refused.output and "--resume" not in refused.output
    itself = CliRunner().invoke(app, ["clip-report", str(damaged), "-o", str(damaged), "--restart"])
    assert itself.exit_code == 2 and "is the checkpoint it starts from" in itself.output
    failed = CliRunner().invoke(app, ["clip-report", str(damaged), "-o", str(out), "--restart"])
    assert failed.exit_code == 1 and failed.output.startswith("error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.json", "damaged.safetensors"]
    assert out.read_text() == "an earlier report"


def test_sentence_gate_needs_every_part():
    probe = {"sentence": {"crown": 0.95, "wing": 0.97, "belly": 0.91, "beak": 0.93}}
    assert sentence_gate(probe)["met"] is True
    probe["sentence"]["beak"] = 0.89
    gate = sentence_gate(probe)
    assert gate["met"] is False and gate["worst_part"] == "beak" and gate["worst"] == 0.89
    assert sentence_gate(probe, threshold=0.85)["met"] is True


def test_a_part_noun_and_colour_word_are_found_only_as_separate_words():
    assert _phrase_ends("this bird has blue wing bars", "wing") == (len("this bird has blue wing bars"),
                                                                    len("this bird has blue"))
    assert _phrase_ends("this bird's bill is black", "beak") == (len("this bird's bill"), len("this bird's bill is black"))
    assert _phrase_ends("a red-crowned bird", "crown") is None and _phrase_ends("crown: red", "crown") is None
