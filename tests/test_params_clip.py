"""Parameter accounting and CLIP loading."""
from __future__ import annotations

import logging
import time

import open_clip
import pytest

from clipsr.clip import CLIPWeightsError, load_clip
from clipsr.config import CLIPConfig
from clipsr.model import CLIPSR
from clipsr.factory import get_config
from clipsr.params import parameter_report


@pytest.fixture(scope="module")
def b32_clip():
    return load_clip(CLIPConfig(arch="ViT-B-32", pretrained=None))


def test_clip_b32_tower_sizes_match_open_clip(b32_clip):
    report = parameter_report(CLIPSR(get_config("paper-b32", 16), clip=b32_clip))
    assert report["clip_visual"] == 87_849_216 == sum(p.numel() for p in b32_clip.visual.parameters())
    assert report["clip_text"] == 63_428_096
    assert report["clip_total"] == 151_277_313 == sum(p.numel() for p in b32_clip.parameters())


@pytest.mark.parametrize("scale", [4, 16])
def test_paper_convention_reproduces_632m(b32_clip, scale):
    report = parameter_report(CLIPSR(get_config("paper-b32", scale), clip=b32_clip))
    assert abs(report["paper_convention"] / 632.2e6 - 1) < 0.05
    assert report["trainable"] + report["frozen"] == report["unique_total"]
    assert report["frozen"] == report["clip_total"] - 1  # all of CLIP but its unused logit_scale
    assert report["deploy"] < report["unique_total"]  # no discriminator in a deployment


def test_unknown_tag_is_a_clear_error():
    with pytest.raises(CLIPWeightsError, match="neither a file nor an open_clip tag"):
        load_clip(CLIPConfig(arch="clipsr-tiny", pretrained="openai"))


def test_missing_weights_fail_fast_with_instructions(monkeypatch, caplog):
    monkeypatch.setattr("clipsr.clip._online", lambda: False)
    monkeypatch.setenv("HF_HOME", "/nonexistent-clipsr-test")
    caplog.set_level(logging.WARNING)
    start = time.monotonic()
    with pytest.raises(CLIPWeightsError, match="download them where there is a network"):
        load_clip(CLIPConfig(arch="ViT-B-32", pretrained="openai"))
    assert time.monotonic() - start < 10
    assert not caplog.records, "open_clip's own error line doubles the one message"


def test_local_weights_file_loads(tmp_path):
    clip = load_clip(CLIPConfig(arch="clipsr-tiny", pretrained=None))
    path = tmp_path / "clip.safetensors"
    import safetensors.torch
    safetensors.torch.save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))
    loaded = load_clip(CLIPConfig(arch="clipsr-tiny", pretrained=str(path), quick_gelu=False))
    assert all((a == b).all() for a, b in zip(clip.state_dict().values(), loaded.state_dict().values()))
    assert not any(p.requires_grad for p in loaded.parameters())
    assert open_clip.get_tokenizer("clipsr-tiny")(["a bird"]).shape == (1, 77)
