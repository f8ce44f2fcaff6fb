"""Loss values on hand-computable tensors, gradient flow, and VGG weight loading without a network."""
from __future__ import annotations

import math
import time

import pytest
import torch
from safetensors.torch import save_file

from clipsr.blocks import PaletteOutput
from clipsr.losses import VGGPerceptualLoss, generator_adv_loss, hinge_d_loss, ma_gp, palette_losses


def test_palette_losses_reward_the_labelled_choice_and_the_named_colours():
    labels = torch.tensor([[[0, 2]]])  # (B=1, H=1, W=2): keep, then part 2
    right = torch.zeros(1, 3, 1, 2)
    right[0, 0, 0, 0] = right[0, 2, 0, 1] = 10.0
    colours = torch.tensor([[[1.0, 0, 0], [0, 1, 0]]])
    named = torch.tensor([[0.0, 1.0]])  # the caption names part 2 only

    def losses(choice, read=colours, named_logits=named * 20 - 10):
        return palette_losses(PaletteOutput(torch.zeros(1, 3, 1, 2), choice, read, named_logits),
                              labels, colours, named)

    perfect = losses(right)
    assert perfect["choice"].item() < 1e-3 and perfect["colour"].item() == 0 and perfect["named"].item() < 1e-3
    assert losses(torch.zeros(1, 3, 1, 2))["choice"].item() == pytest.approx(math.log(3))
    wrong = right.flip(-1)
    per_pixel = torch.nn.functional.cross_entropy(wrong, labels, reduction="none")[0, 0]
    assert losses(wrong)["choice"].item() == pytest.approx(per_pixel.mean().item())
    off_unnamed = colours.clone()
    off_unnamed[0, 0] = -1.0  # an unnamed part's colour is not taught
    assert losses(right, read=off_unnamed)["colour"].item() == 0
    off_named = colours.clone()
    off_named[0, 1, 1] = 0.4
    assert losses(right, read=off_named)["colour"].item() == pytest.approx(0.6 / 3)
    assert losses(right, named_logits=-(named * 20 - 10))["named"].item() > 5
    with pytest.raises(ValueError, match="palette has 2 parts"):
        palette_losses(PaletteOutput(torch.zeros(1, 3, 1, 2), right, colours, named), labels + 1, colours, named)
    with pytest.raises(ValueError, match="need a text palette"):
        palette_losses(PaletteOutput(torch.zeros(1, 3, 1, 2)), labels, colours, named)


def test_hinge_d_loss_value():
    real = torch.tensor([0.5, 2.0])
    fake = torch.tensor([-2.0, 0.0])
    mismatch = torch.tensor([1.0, -0.5])
    # relu(1-real)=[.5,0] -> .25; relu(1+fake)=[0,1] -> .5; relu(1+mismatch)=[2,.5] -> 1.25
    assert hinge_d_loss(real, fake, mismatch).item() == pytest.approx(0.25 + 0.5 * (0.5 + 1.25))


def test_ma_gp_value_and_penalty_trains_d():
    x = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]]], requires_grad=True)  # (B=2, 1, 2)
    t = torch.tensor([[0.0], [2.0]], requires_grad=True)                  # (B=2, 1)
    w = torch.tensor(1.0, requires_grad=True)
    logit = 0.5 * w * ((x ** 2).sum(dim=(1, 2)) + (t ** 2).sum(dim=1))   # grad = w * (x, t)
    gp = ma_gp(logit, (x, t), k=2.0, p=6.0)
    # per-sample ||grad||^2 = 1 and 4 -> ||grad||^6 = 1 and 64 -> 2 * mean = 65
    assert gp.item() == pytest.approx(65.0)
    gp.backward()
    # d/dw of 2 * mean(w^6 * (1, 64)) at w=1 = 2 * 6 * 65 / 2 = 390
    assert w.grad.item() == pytest.approx(390.0)


def test_ma_gp_zero_gradient_has_finite_penalty_gradient():
    x = torch.zeros(3, 4, requires_grad=True)
    w = torch.tensor(0.0, requires_grad=True)
    gp = ma_gp((w * x).sum(dim=1), (x,))
    gp.backward()
    assert gp.item() == 0 and torch.isfinite(w.grad).all()


def test_generator_adv_loss_value_and_gradient():
    fake = torch.tensor([1.0, 3.0])
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    text = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    loss = generator_adv_loss(fake, image, text, alpha=4.0)
    assert loss.item() == pytest.approx(-2.0 - 4.0 * (1.0 + 1 / math.sqrt(2)) / 2)
    loss.backward()
    assert image.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def random_vgg():
    with pytest.warns(UserWarning, match="RANDOM"):
        return VGGPerceptualLoss("random")


def test_vgg_imagenet_weights_missing_offline_fail_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match="vgg19-dcbb9e9d.pth"):
        VGGPerceptualLoss("imagenet")
    with pytest.warns(UserWarning, match="falling back to RANDOM features"):
        assert VGGPerceptualLoss("imagenet", fallback="random").mode == "random"
    with pytest.warns(UserWarning, match="falling back to no perceptual term"):
        off = VGGPerceptualLoss("imagenet", fallback="off")
    assert off.mode == "off" and off(torch.ones(1, 3, 8, 8), -torch.ones(1, 3, 8, 8)).item() == 0
    assert time.monotonic() - start < 30
    assert not any(tmp_path.rglob("*.pth"))  # nothing was downloaded


def test_vgg_failed_download_falls_back(tmp_path, monkeypatch):
    """Offline, torch.hub raises URLError (an OSError) at name lookup; simulated so nothing is fetched."""
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="cannot download VGG-19 weights"):
        VGGPerceptualLoss("imagenet", download=True)
    with pytest.warns(UserWarning, match="cannot download.*falling back to no perceptual term"):
        assert VGGPerceptualLoss("imagenet", download=True, fallback="off").mode == "off"


def test_vgg_none_is_off_without_warning(recwarn):
    assert VGGPerceptualLoss(None).mode == "off"
    assert not recwarn.list


def test_vgg_loss_properties_and_gradient(random_vgg):
    torch.manual_seed(0)
    hr = torch.rand(2, 3, 32, 32) * 2 - 1
    sr = (hr + 0.3 * torch.randn_like(hr)).requires_grad_(True)
    assert random_vgg(hr, hr).item() == 0
    loss = random_vgg(sr, hr)
    loss.backward()
    assert loss.item() > 0 and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in random_vgg.parameters())


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_vgg_loads_local_file(tmp_path, random_vgg, suffix):
    state = {f"features.{k}": v.clone() + 1.0 for k, v in random_vgg.features.state_dict().items()}
    path = tmp_path / f"vgg19{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    loaded = VGGPerceptualLoss(str(path))
    assert loaded.mode == "pretrained"
    assert torch.equal(loaded.features[0].weight, state["features.0.weight"])


def test_vgg_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        VGGPerceptualLoss(str(tmp_path / "nope.pth"))
    partial = tmp_path / "partial.safetensors"
    save_file({"features.0.weight": torch.zeros(64, 3, 3, 3)}, str(partial))
    with pytest.raises(ValueError, match="partial.safetensors lacks VGG-19 feature weights"):
        VGGPerceptualLoss(str(partial))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        VGGPerceptualLoss(str(garbage))


def test_palette_losses_refuse_a_palette_of_another_part_count():
    colours, named = torch.zeros(1, 3, 3), torch.ones(1, 3)
    output = PaletteOutput(torch.zeros(1, 3, 1, 2), torch.zeros(1, 5, 1, 2), torch.zeros(1, 4, 3), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="describes 3 parts, the model's text palette has 4"):
        palette_losses(output, torch.zeros(1, 1, 2, dtype=torch.long), colours, named)
