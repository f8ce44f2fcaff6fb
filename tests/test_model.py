"""The CLIP-SR model: shapes at every scale, the TIFBlock, the live CLIP-ViT branch, text
reaching the image, and clear errors."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from clipsr.blocks import TextPalette, TIFBlock
from clipsr.config import ModelConfig
from clipsr.factory import create_model, get_config
from clipsr.locator import PartLocator


@pytest.mark.parametrize("scale", [4, 8, 16])
def test_forward_shapes_tiny(scale):
    torch.manual_seed(0)
    model = create_model("tiny", scale=scale)
    size = 256 // scale
    with torch.no_grad():
        sr = model(torch.rand(2, 3, size, size) * 2 - 1, model.tokenize(["a red bird", "a blue bird"]))
    assert sr.shape == (2, 3, 256, 256)
    assert torch.isfinite(sr).all()


@pytest.mark.slow
def test_forward_paper_b32_16x():
    model = create_model("paper-b32", scale=16, **{"clip.pretrained": None}).eval()
    with torch.no_grad():
        sr = model(torch.zeros(1, 3, 16, 16), model.tokenize(["a bird with a red crown"]))
    assert sr.shape == (1, 3, 256, 256)
    assert torch.isfinite(sr).all()


def test_tifblock_starts_as_identity_and_ignores_text():
    torch.manual_seed(0)
    block = TIFBlock(text_dim=8, channels=4)
    x = torch.randn(2, 4, 5, 5)
    lrelu = torch.nn.functional.leaky_relu
    out_a = block(x, torch.randn(2, 8))
    out_b = block(x, torch.randn(2, 8))
    torch.testing.assert_close(block.affine1(x, torch.randn(2, 8)), x)
    torch.testing.assert_close(out_a, lrelu(lrelu(x, 0.2), 0.2))
    torch.testing.assert_close(out_a, out_b)


def test_softmax_switch_changes_result():
    torch.manual_seed(0)
    soft, plain = TIFBlock(8, 4, "softmax"), TIFBlock(8, 4, "none")
    plain.load_state_dict(soft.state_dict())
    for p in soft.parameters():  # leave the identity initialisation so text matters
        torch.nn.init.normal_(p, std=0.5)
    plain.load_state_dict(soft.state_dict())
    x, text = torch.randn(2, 4, 5, 5), torch.randn(2, 8)
    assert (soft(x, text) - plain(x, text)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="text_reweight"):
        TIFBlock(8, 4, "sigmoid")


def test_clip_vit_branch_is_live(tiny16):
    model = tiny16
    lr = torch.rand(2, 3, 16, 16) * 2 - 1
    text = model.encode_text(model.tokenize(["a bird with a red crown", "a bird with blue wings"]))
    model.generator.zero_grad()
    model.generator(lr, text).square().mean().backward()
    branch = model.generator.branch
    for name, module in (("prompt predictor", branch.prompts), ("mapper", branch.mapper)):
        grads = [p.grad.abs().sum() for p in module.parameters() if p.grad is not None]
        assert grads and sum(grads) > 0, f"no gradient reaches the {name}"
    assert all(p.grad is None for p in model.clip_visual.parameters()), "the CLIP trunk must stay frozen"

    with torch.no_grad():
        base = model.generator(lr, text)
        handle = branch.prompts.register_forward_hook(lambda m, i, out: out + torch.randn_like(out))
        try:
            perturbed = model.generator(lr, text)
        finally:
            handle.remove()
    # float noise alone moves outputs by < 1e-7 here; the branch moves them by ~1e-4 at initialisation
    assert (base - perturbed).abs().max() > 1e-5, "perturbing a prompt token does not change the output"


def test_text_reaches_the_image_after_training():
    """Same LR, two captions, two targets: only the text can tell them apart."""
    torch.manual_seed(0)
    model = create_model("tiny", scale=16)
    tokens = model.tokenize(["a bird with a red crown", "a large green parrot sitting on a branch"])
    text = model.encode_text(tokens)
    lr = torch.zeros(2, 3, 16, 16)
    target = torch.stack([torch.full((3, 256, 256), 0.5), torch.full((3, 256, 256), -0.5)])
    opt = torch.optim.Adam(model.trainable_parameters("generator"), lr=1e-3)
    for _ in range(30):
        opt.zero_grad()
        loss = (model.generator(lr, text) - target).abs().mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        right = model.generator(lr, text)
        swapped = model.generator(lr, text.flip(0))
    assert (right - target).abs().mean() < (swapped - target).abs().mean() - 0.1
    assert (right - swapped).abs().mean() > 0.2


def test_clear_errors(tiny16):
    with pytest.raises(ValueError, match="scale must be one of"):
        get_config("tiny", 3)
    with pytest.raises(ValueError, match="unknown preset"):
        get_config("huge", 16)
    text = torch.zeros(1, tiny16.text_encoder.embed_dim)
    with pytest.raises(ValueError, match=r"LR image must have shape \(B, 3, 16, 16\)"):
        tiny16.generator(torch.zeros(1, 3, 32, 32), text)
    with pytest.raises(ValueError, match="text embedding must have shape"):
        tiny16.generator(torch.zeros(1, 3, 16, 16), torch.zeros(1, 7))
    with pytest.raises(ValueError, match=r"tokens must have shape \(B, 77\)"):
        tiny16.text_encoder(torch.zeros(1, 10, dtype=torch.long))


def test_ablation_switches_are_config():
    no_branch = create_model("tiny", scale=16, clip_branch=False)
    assert no_branch.generator.branch is None
    every = create_model("tiny", scale=16).generator
    assert len(every.skip_proj) == len(every.refine), "every G-block gets its encoder skip"
    saved = {**dataclasses.asdict(every.cfg), "skip_mismatch": "project"}  # when "drop" was the other choice
    assert ModelConfig.from_dict({"generator": saved}).generator == every.cfg
    no_text = create_model("tiny", scale=16, use_text=False).eval()
    lr = torch.zeros(1, 3, 16, 16)
    with torch.no_grad():
        a = no_text.generator(lr, torch.randn(1, 64))
        b = no_text.generator(lr, torch.randn(1, 64))
    torch.testing.assert_close(a, b)


def test_bicubic_global_skip_starts_near_bicubic():
    torch.manual_seed(0)
    lr = torch.rand(1, 3, 16, 16) * 2 - 1
    bicubic = torch.nn.functional.interpolate(lr, scale_factor=16, mode="bicubic", align_corners=False)
    with_skip = create_model("tiny", scale=16).eval()
    without = create_model("tiny", scale=16, global_skip="none").eval()
    text = torch.zeros(1, 64)
    with torch.no_grad():
        assert (with_skip.generator(lr, text) - bicubic).abs().mean() < 0.5 * (without.generator(lr, text) - bicubic).abs().mean()
    with pytest.raises(ValueError, match="global_skip"):
        create_model("tiny", scale=16, global_skip="nearest")


def test_text_norm_spreads_captions_apart():
    torch.manual_seed(0)
    model = create_model("tiny", scale=16)
    text = model.encode_text(model.tokenize([f"a bird with a {c} crown" for c in ("red", "blue", "green", "black")]))
    normed = model.generator.text_norm(text)  # training mode: batch statistics
    assert normed.mean(0).abs().max() < 1e-4  # the common part of the sentence vectors is gone
    assert abs(normed.std(0, unbiased=False).mean().item() - 1) < 0.05  # caption differences at unit scale
    assert model.generator.text_norm.running_mean.abs().sum() > 0  # remembered for inference
    assert isinstance(create_model("tiny", scale=16, text_norm="none").generator.text_norm, torch.nn.Identity)
    with pytest.raises(ValueError, match="text_norm"):
        create_model("tiny", scale=16, text_norm="layer")


def test_up_text_lets_the_text_steer_the_upsampler():
    torch.manual_seed(0)
    assert all(stage.fuse is None for stage in create_model("tiny", scale=16, up_text=False).generator.upsampler.stages)
    # without the CLIP-ViT branch, every text path starts as the identity: only what we perturb reads text
    model = create_model("tiny", scale=16, up_text=True, clip_branch=False).eval()
    fuses = [stage.fuse for stage in model.generator.upsampler.stages]
    assert len(fuses) == 4  # 16x: four x2 stages
    lr, text, other = torch.rand(2, 3, 16, 16) * 2 - 1, torch.randn(2, 64), torch.randn(2, 64)
    model.generator(lr, text).square().mean().backward()
    assert all(f.affine1.gamma[-1].weight.grad.abs().sum() > 0 for f in fuses)  # trainable from the start
    with torch.no_grad():
        torch.testing.assert_close(model.generator(lr, text), model.generator(lr, other))
        torch.nn.init.normal_(fuses[-1].affine2.beta[-1].weight, std=0.5)  # as if trained
        assert (model.generator(lr, text) - model.generator(lr, other)).abs().max() > 1e-3


@pytest.mark.parametrize("scale", [4, 16])
def test_rgb_shuffle_draws_the_last_x2_from_half_size_features(scale):
    torch.manual_seed(0)
    model = create_model("tiny", scale=scale, rgb_shuffle=True, clip_branch=False).eval()
    up = model.generator.upsampler
    assert len(up.stages) == scale.bit_length() - 2 and up.out.out_channels == 12  # log2(scale) - 1 stages
    lr, text = torch.rand(1, 3, 256 // scale, 256 // scale) * 2 - 1, torch.randn(1, 64)
    with torch.no_grad():
        up.out.weight.zero_()
        up.out.bias.copy_(torch.arange(12.0))  # channel c * 4 + 2 * i + j -> pixel (2y + i, 2x + j) of colour c
        residual = model.generator(lr, text) - model.generator.bicubic(lr)
    assert residual.shape == (1, 3, 256, 256)
    expected = torch.arange(12.0).view(3, 2, 2).repeat(1, 128, 128)
    torch.testing.assert_close(residual[0], expected, atol=1e-4, rtol=0)
    assert not create_model("tiny", scale=16).config.generator.rgb_shuffle  # the paper's upsampler
    assert create_model("synthbirds").config.generator.rgb_shuffle


def test_text_mapper_starts_as_identity_and_learns():
    torch.manual_seed(0)
    assert isinstance(create_model("tiny", scale=16, text_mapper=0).generator.text_mapper, torch.nn.Identity)
    mapper = create_model("tiny", scale=16, text_mapper=32).generator.text_mapper
    text = torch.randn(3, 64)
    torch.testing.assert_close(mapper(text), text)
    mapper(text).sum().backward()
    assert mapper.mlp[-1].weight.grad.abs().sum() > 0


def test_text_palette_paints_where_the_locator_chooses_in_the_colour_the_text_gives():
    torch.manual_seed(0)
    assert create_model("tiny", scale=16, text_palette=0).generator.palette is None
    generator = create_model("tiny", scale=16, text_palette=4).generator.eval()
    with torch.no_grad():
        out = generator.render(torch.zeros(2, 3, 16, 16), torch.randn(2, 64))
    assert out.image.shape == (2, 3, 256, 256) and out.choice.shape == (2, 5, 256, 256)
    assert out.colours.shape == (2, 4, 3) and out.named.shape == (2, 4)
    palette = TextPalette(text_dim=4, parts=2, hidden=16)
    image = torch.zeros(4, 3, 8, 8)
    choice = torch.zeros(4, 3, 8, 8)
    choice[:, 0, 4:] = 10.0   # the locator: "keep the image" in the bottom half,
    choice[:, 1, :4] = 10.0   # part 1 in the top half ("a crown here")
    text = torch.eye(4)       # four captions, one colour each
    colours = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]])
    target = image.clone()
    target[:, :, :4] = colours[:, :, None, None]
    optimiser = torch.optim.Adam(palette.parameters(), lr=0.03)
    for _ in range(300):
        optimiser.zero_grad()
        (palette(image, choice, text).image - target).abs().mean().backward()
        optimiser.step()
    with torch.no_grad():
        out = palette(image, choice, text).image
    assert (out[:, :, :4] - target[:, :, :4]).abs().max() < 0.15, "the located half takes each caption's colour"
    assert out[:, :, 4:].abs().max() < 0.15, "the rest keeps the image"


def test_a_part_the_caption_does_not_name_keeps_the_image():
    torch.manual_seed(0)
    palette = TextPalette(text_dim=2, parts=1, hidden=8)
    choice = torch.tensor([0.0, 10.0])[None, :, None, None].expand(1, 2, 2, 2)  # the part everywhere
    with torch.no_grad():
        palette.text[0].weight.zero_()
        palette.text[0].bias.zero_()
        palette.text[0].weight[0, 0] = 1.0   # hidden unit 0 carries text dimension 0
        palette.text[-1].weight.zero_()
        palette.text[-1].bias.copy_(torch.tensor([1.0, -1.0, -1.0, 0.0]))  # red
        palette.text[-1].weight[3, 0] = 100.0  # text dimension 0 says whether the part is named
        named, unnamed = (palette(torch.zeros(1, 3, 2, 2), choice, torch.tensor(t)).image
                          for t in ([[1.0, 0.0]], [[-1.0, 0.0]]))
    torch.testing.assert_close(named[0, :, 0, 0], torch.tensor([1.0, -1.0, -1.0]), atol=1e-3, rtol=0)
    assert unnamed.abs().max() < 1e-3, "an unnamed part's logit is shifted out: the image stays"


def test_the_part_locator_reads_the_lr_is_frozen_in_the_generator_and_learns_where_a_part_is():
    torch.manual_seed(0)
    generator = create_model("tiny", scale=16, text_palette=4).generator
    assert not any(p.requires_grad for p in generator.locator.parameters()), "trained on its own, frozen here"
    assert all(p.requires_grad for p in generator.palette.parameters())
    locator = PartLocator(lr_size=8, parts=1, scale=8, width=8, blocks=1)
    lr = torch.rand(16, 3, 8, 8) * 2 - 1
    bright = lr[:, 0] > 0.5                                   # the "part": pixels bright in red
    labels = bright.repeat_interleave(4, 1).repeat_interleave(4, 2).long()
    optimiser = torch.optim.Adam(locator.parameters(), lr=1e-2)
    for _ in range(150):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(locator(lr), labels).backward()
        optimiser.step()
    with torch.no_grad():
        assert locator(lr).shape == (16, 2, 32, 32) and locator.choice(lr).shape == (16, 2, 64, 64)
        accuracy = (locator(lr).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.9, accuracy


def test_text_clamp_bounds_unseen_phrasings_and_leaves_seen_ones():
    torch.manual_seed(0)
    free = create_model("tiny", scale=16, text_palette=4).eval()
    clamped = create_model("tiny", scale=16, text_palette=4, text_clamp=4.0).eval()
    clamped.load_state_dict(free.state_dict())
    lr = torch.rand(2, 3, 16, 16) * 2 - 1
    seen, unseen = torch.randn(2, 64).clamp(-3, 3), torch.randn(2, 64) * 500  # running stats are 0 / 1
    with torch.no_grad():
        torch.nn.init.normal_(free.generator.palette.text[-1].weight, std=0.5)  # as if trained
        clamped.generator.palette.text[-1].weight.copy_(free.generator.palette.text[-1].weight)
        torch.testing.assert_close(free.generator(lr, seen), clamped.generator(lr, seen))
        assert free.generator(lr, unseen).abs().max() > 100
        assert clamped.generator(lr, unseen).abs().max() < 20


def test_presets_are_data_files_read_by_the_one_factory(tmp_path):
    from clipsr.factory import MODEL_CONFIGS, list_presets
    from clipsr.synthbirds.render import DESCRIBED_PARTS

    assert list_presets() == sorted(p.stem for p in MODEL_CONFIGS.glob("*.json"))
    assert {"tiny", "synthbirds", "paper-b32", "cub-reference"} <= set(list_presets())
    synthbirds = get_config("synthbirds")
    # The demo's palette has one entry per part SynthBirds describes: a preset that drifts fails here.
    assert synthbirds.generator.text_palette == len(DESCRIBED_PARTS)
    assert synthbirds.preset == "synthbirds" and synthbirds.generator.scale == 16
    assert get_config("tiny", 4, text_mapper=8).generator.text_mapper == 8
    assert get_config("cub-reference").architecture == "reference"
    with pytest.raises(ValueError, match="unknown config key"):
        get_config("tiny", **{"generator.no_such_field": 1})
    with pytest.raises(ValueError, match="disagree"):
        create_model("tiny", preset="synthbirds")
