"""The authors' released CLIP-SR checkpoint: a state dict in their layout (keys and shapes derived from
their code, `clipsr/reference/netG_keys.json`; random weights, nothing downloaded) -> safe import ->
the forward their NetG computes -> convert / export -> the torch-free runtime. A small CLIP with their
512-wide sentence embedding (tests/data/clip_configs/reference-test.json) stands in for ViT-B/32."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from clipsr.checkpoint import CheckpointError
from clipsr.clip import CLIPWeightsError, load_clip
from clipsr.config import CLIPConfig, GeneratorConfig, ModelConfig, ReferenceGeneratorConfig
from clipsr.factory import create_model, get_config
from clipsr.params import reference_report
from clipsr.reference.generator import ReferenceGenerator, rename_state_key
from clipsr.reference.importer import DEAD_PREFIXES, NETG_KEYS

open_clip.add_model_config(Path(__file__).parent / "data" / "clip_configs")
TEST_CLIP = {"clip.arch": "reference-test"}
KEYS = {k: tuple(v) for k, v in json.loads(NETG_KEYS.read_text())["keys"].items()}
LIVE = {k: s for k, s in KEYS.items() if not k.startswith(DEAD_PREFIXES)}


def random_netg(seed: int = 0) -> dict[str, torch.Tensor]:
    """Their netG state dict with random weights of a size that keeps the signal alive through the
    network (dead modules: zeros in fp16, as cheap as their shapes allow)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in KEYS.items():
        if key.startswith(DEAD_PREFIXES):
            state[key] = torch.zeros(shape, dtype=torch.float16)
        elif len(shape) > 1:
            state[key] = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


def save_reference(path: Path, netg: dict[str, torch.Tensor], prefix: str = "") -> Path:
    """What their training script writes: the three nets, the optimisers, the epoch."""
    torch.save({"model": {"netG": {prefix + k: v for k, v in netg.items()}, "netD": {"main.gamma": torch.zeros(1)},
                          "netC": {}},
                "optimizers": {"optimizer_G": {"state": {}, "param_groups": [{"lr": 1e-4}]}, "optimizer_D": {}},
                "epoch": 220}, path)
    return path


@pytest.fixture(scope="module")
def netg() -> dict[str, torch.Tensor]:
    return random_netg()


@pytest.fixture(scope="module")
def files(tmp_path_factory, netg) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("reference")
    torch.manual_seed(0)
    clip = load_clip(CLIPConfig(arch="reference-test", pretrained=None, quick_gelu=True))
    torch.save(clip.state_dict(), base / "clip.pt")
    return {"checkpoint": save_reference(base / "state_epoch_220.pth", netg, prefix="module."),
            "plain": save_reference(base / "single_gpu.pth", netg), "clip": base / "clip.pt", "base": base}


@pytest.fixture(scope="module")
def imported(files):
    return create_model(files["checkpoint"], clip_weights=str(files["clip"]), **TEST_CLIP).eval()


def their_forward(sd: dict[str, torch.Tensor], lr: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """NetG.forward as their code orders it, straight from their state dict (an independent check of
    our module and of the key renames)."""
    def conv(x, key, stride=1):
        w = sd[key + ".weight"]
        return F.conv2d(x, w, sd[key + ".bias"], stride=stride, padding=w.shape[-1] // 2)

    def affine(x, key):
        def mlp(name):
            hidden = F.relu(F.linear(text, sd[f"{key}.fc_{name}.linear1.weight"], sd[f"{key}.fc_{name}.linear1.bias"]))
            return F.linear(hidden, sd[f"{key}.fc_{name}.linear2.weight"], sd[f"{key}.fc_{name}.linear2.bias"])
        return mlp("gamma")[:, :, None, None] * x + mlp("beta")[:, :, None, None]

    def fuse(x, key):
        return F.leaky_relu(affine(F.leaky_relu(affine(x, key + ".affine0"), 0.2), key + ".affine1"), 0.2)

    def g_block(x, i, size):
        x = F.interpolate(x, size=(size, size))
        key = f"GBlocks.{i}"
        shortcut = conv(x, key + ".c_sc") if key + ".c_sc.weight" in sd else x
        return shortcut + conv(fuse(conv(fuse(x, key + ".fuse1"), key + ".c1"), key + ".fuse2"), key + ".c2")

    lr = F.interpolate(lr, size=(64, 64))
    residual = conv(lr, "head.0")
    r1 = conv(lr, "c1")
    r2 = conv(F.prelu(r1, sd["R.weight"]), "c2", 2)
    r3 = conv(F.prelu(r2, sd["R.weight"]), "c3", 2)
    r4 = conv(F.prelu(r3, sd["R.weight"]), "c4", 2)
    out = g_block(r4, 0, 8) + r4
    out = g_block(out, 1, 16) + r3
    out = g_block(out, 2, 32) + r2
    out = g_block(out, 3, 64) + r1
    body = F.leaky_relu(conv(F.leaky_relu(conv(out, "conv_after_body.0"), 0.2), "conv_after_body.2"), 0.2)
    out = conv(body, "conv_after_body.4") + residual
    out = F.leaky_relu(conv(out, "conv_before_upsample.0"), 0.01)
    out = F.pixel_shuffle(conv(F.pixel_shuffle(conv(out, "upsample.0"), 2), "upsample.2"), 2)
    return conv(out, "tail.0")


def test_the_reference_generator_has_their_live_keys_and_shapes():
    generator = ReferenceGenerator(get_config("cub-reference").generator, text_dim=512)
    ours = {k: tuple(t.shape) for k, t in generator.state_dict().items()}
    assert {rename_state_key(k): s for k, s in LIVE.items()} == ours
    dead = sum(math.prod(s) for k, s in KEYS.items() if k.startswith(DEAD_PREFIXES))
    assert sum(math.prod(s) for s in LIVE.values()) == sum(t.numel() for t in generator.parameters())
    # The mapping path holds a whole copy of the CLIP visual trunk: the dead part is most of their netG.
    assert dead > 2 * sum(t.numel() for t in generator.parameters())


def test_the_reference_preset_holds_only_what_its_generator_reads():
    config = get_config("cub-reference")
    assert isinstance(config.generator, ReferenceGeneratorConfig)
    assert set(config.to_dict()["generator"]) == {"scale", "lr_res_width", "enc_width", "up_width"}
    shapes = {k: tuple(t.shape) for k, t in ReferenceGenerator(config.generator, text_dim=512).state_dict().items()}
    for field in ("lr_res_width", "enc_width", "up_width"):  # each width reaches the generator
        narrower = dataclasses.replace(config.generator, **{field: 8})
        changed = {k for k, t in ReferenceGenerator(narrower, text_dim=512).state_dict().items()
                   if tuple(t.shape) != shapes[k]}
        assert changed, f"{field} changes nothing"
    with pytest.raises(ValueError, match="is 4x"):
        get_config("cub-reference", scale=8)
    with pytest.raises(ValueError, match="unknown config key 'text_palette'; the reference generator has scale, "
                                         "lr_res_width, enc_width, up_width"):
        get_config("cub-reference", text_palette=4)


def test_a_reference_config_written_in_full_still_reads_and_nothing_it_lacks_is_switched_on():
    """Checkpoints converted when the reference used our generator's config hold all of its fields."""
    full = dataclasses.asdict(GeneratorConfig(scale=4, refine_channels=(512, 512, 512, 256), text_reweight="none",
                                              clip_branch=False))
    saved = {**get_config("cub-reference").to_dict(), "generator": full}
    assert ModelConfig.from_dict(saved) == get_config("cub-reference")
    with pytest.raises(ValueError, match="no part for text_palette=4"):
        ModelConfig.from_dict({**saved, "generator": {**full, "text_palette": 4}})
    with pytest.raises(ValueError, match="no part for clip_branch=True"):
        ModelConfig.from_dict({**saved, "generator": {**full, "clip_branch": True}})
    with pytest.raises(ValueError, match=r"G-blocks are \(512, 512, 512, 256\).*got refine_channels \(512, 256\)"):
        ModelConfig.from_dict({**saved, "generator": {**full, "refine_channels": [512, 256]}})
    with pytest.raises(ValueError, match="architecture 'reference' reads a ReferenceGeneratorConfig"):
        ModelConfig(architecture="reference")


def test_the_real_vit_b32_text_tower_fits_their_generator():
    """ViT-B/32's text tower (shapes only, no weights) gives the 512-wide sentence vector they trained on."""
    model = create_model("cub-reference", **{"clip.pretrained": None})
    assert model.text_encoder.embed_dim == KEYS["GBlocks.0.fuse1.affine0.fc_gamma.linear1.weight"][1] == 512
    assert model.text_encoder.context_length == 77 and model.text_encoder.width == 512
    report = reference_report(model)
    assert report["total"] == report["generator_live"] + report["checkpoint_dead"] + report["clip_text"]
    assert report["generator_live"] + report["checkpoint_dead"] == sum(math.prod(s) for s in KEYS.values())


def test_import_computes_their_forward(imported, files, netg):
    assert isinstance(imported.generator, ReferenceGenerator) and imported.scale == 4
    lr = torch.rand(2, 3, 64, 64) * 2 - 1
    text = imported.encode_text(imported.tokenize(["a red bird with a black crown", "a bird"]))
    with torch.no_grad():
        ours = imported.generator(lr, text)
        theirs = their_forward({k: v.float() for k, v in netg.items()}, lr, text)
        small = imported.generator(lr[:, :, ::2, ::2], text)  # nearest-resized to 64 first, as theirs
    assert ours.shape == (2, 3, 256, 256) and ours.std() > 0.05
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert torch.allclose(small, their_forward(netg, lr[:, :, ::2, ::2], text), atol=1e-4)
    assert (ours[0] - ours[1]).abs().mean() > 1e-3
    card = imported.card
    assert card["licence"].startswith("unknown") and card["scale"] == 4 and card["lr_size"] == 64
    assert card["parameters"]["checkpoint_dead"] == sum(math.prod(s) for k, s in KEYS.items()
                                                       if k.startswith(DEAD_PREFIXES))
    single = create_model(files["plain"], clip_weights=str(files["clip"]), **TEST_CLIP)
    assert all(torch.equal(a, b) for a, b in zip(single.generator.state_dict().values(),
                                                 imported.generator.state_dict().values()))


class Foreign:
    """Not a tensor: a pickle holding it needs more than weights_only allows."""


def test_refusals_are_one_line_and_name_what_is_wrong(files, netg, tmp_path):
    clip = {"clip_weights": str(files["clip"]), **TEST_CLIP}
    evil = tmp_path / "evil.pth"
    torch.save({"model": {"netG": dict(netg), "extra": Foreign()}}, evil)
    with pytest.raises(CheckpointError, match=r"needs more than plain weights to unpickle .*Foreign.*refused"):
        create_model(evil, **clip)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(files["checkpoint"].read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        create_model(truncated, **clip)
    foreign = tmp_path / "foreign.pth"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="neither a clipsr checkpoint nor the authors'"):
        create_model(foreign, **clip)
    broken = {k: v for k, v in netg.items() if k != "GBlocks.3.c_sc.weight"}
    broken["GBlocks.3.extra.weight"] = torch.zeros(1)
    named = r"missing GBlocks\.3\.shortcut\.weight; unexpected GBlocks\.3\.extra\.weight"
    with pytest.raises(CheckpointError, match=named):
        create_model(save_reference(tmp_path / "broken.pth", broken), **clip)
    with pytest.raises(ValueError, match="holds no text encoder"):
        create_model(files["checkpoint"])
    bad_clip = tmp_path / "clip.pt"
    torch.save({"visual": Foreign()}, bad_clip)
    with pytest.raises(CLIPWeightsError, match="needs more than weights"):
        create_model(files["checkpoint"], clip_weights=str(bad_clip), **TEST_CLIP)


def test_command_lines_refuse_a_bad_checkpoint_in_one_line_and_write_nothing(files, netg, tmp_path):
    from clipsr.cli.convert import app as convert_app
    from clipsr_export.cli import app as export_app

    evil = tmp_path / "evil.pth"
    torch.save({"model": {"netG": {"head.0.weight": Foreign()}}}, evil)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(files["checkpoint"].read_bytes()[:50_000])
    clip = ["--clip-weights", str(files["clip"])]
    for bad, message in ((evil, "needs more than plain weights"), (truncated, "not a readable PyTorch checkpoint"),
                         (tmp_path / "missing.pth", "not found")):
        for app, args, out in ((convert_app, [str(bad), "-o"], tmp_path / "out.safetensors"),
                               (export_app, ["--checkpoint", str(bad), "--out"], tmp_path / "folder")):
            result = CliRunner().invoke(app, [*args, str(out), *clip])
            errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
            assert result.exit_code == 1 and len(errors) == 1 and message in errors[0], result.stderr
            assert "Traceback" not in result.output and not out.exists()
    result = CliRunner().invoke(convert_app, [str(files["checkpoint"]), "-o", str(tmp_path / "out.pt"), *clip])
    assert result.exit_code == 2 and "must end in .safetensors" in result.stderr


def test_clip_weights_load_from_a_pt_or_safetensors_state_dict(files, tmp_path):
    import safetensors.torch

    expected = torch.load(files["clip"], weights_only=True)
    safetensors.torch.save_file({k: v.contiguous() for k, v in expected.items()}, tmp_path / "clip.safetensors")
    for path in (files["clip"], tmp_path / "clip.safetensors"):
        loaded = load_clip(CLIPConfig(arch="reference-test", pretrained=str(path))).state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in expected.items())


@pytest.fixture
def test_clip_preset(tmp_path, monkeypatch):
    """The command lines build the cub-reference preset: here it names the small test CLIP."""
    import clipsr.factory as factory

    presets = tmp_path / "model_configs"
    presets.mkdir()
    for path in factory.MODEL_CONFIGS.glob("*.json"):
        data = json.loads(path.read_text())
        if path.stem == factory.REFERENCE_PRESET:
            data["clip"]["arch"] = TEST_CLIP["clip.arch"]
        (presets / path.name).write_text(json.dumps(data))
    monkeypatch.setattr(factory, "MODEL_CONFIGS", presets)


@pytest.mark.slow
def test_convert_export_and_run_torch_free(imported, files, tmp_path, test_clip_preset):
    from clipsr.cli.convert import app as convert_app
    from clipsr_export.cli import app as export_app
    from clipsr_runtime.cli import app as run_app
    from clipsr_runtime.manifest import load_manifest
    from clipsr_runtime.upscaler import Upscaler

    runner = CliRunner()
    out = tmp_path / "cub-x4.safetensors"
    common = ["--clip-weights", str(files["clip"])]
    result = runner.invoke(convert_app, [str(files["checkpoint"]), "-o", str(out), *common])
    assert result.exit_code == 0, result.output
    assert runner.invoke(convert_app, [str(files["checkpoint"]), "-o", str(out), *common]).exit_code == 2
    folder = tmp_path / "cub-x4"
    result = runner.invoke(export_app, ["--checkpoint", str(files["checkpoint"]), *common, "--out", str(folder),
                                        "--precision", "fp32,fp16"])
    assert result.exit_code == 0, result.output
    converted = create_model(out)
    assert converted.card == imported.card and converted.config == imported.config
    assert all(torch.equal(a, b) for a, b in zip(converted.generator.state_dict().values(),
                                                 imported.generator.state_dict().values()))
    manifest = load_manifest(folder)
    card = json.loads((folder / "model.json").read_text())["model_card"]
    assert manifest.scale == 4 and manifest.lr_size == 64 and card["licence"].startswith("unknown")
    rgb8 = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    prompt = "a small bird with a red crown"
    lr = torch.from_numpy((rgb8.astype(np.float32) / 127.5 - 1).transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        expected = imported.generator(lr, imported.encode_text(imported.tokenize([prompt]))).clamp(-1, 1)
    expected8 = np.round((expected[0].numpy().transpose(1, 2, 0) + 1) * 127.5).astype(np.float64)
    for precision, floor_db in (("fp32", 45.0), ("fp16", 35.0)):
        with Upscaler(folder, backend="ort-cpu", precision=precision) as upscaler:
            ours = np.asarray(upscaler.upscale(rgb8, prompt), dtype=np.float64)
        psnr = 10 * np.log10(255 ** 2 / max(np.mean((ours - expected8) ** 2), 1e-12))
        assert psnr >= floor_db, (precision, psnr)
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(1).integers(0, 256, (90, 150, 3), dtype=np.uint8)).save(photo)
    result = runner.invoke(run_app, [str(photo), prompt, "--model", str(folder), "--outscale", "2",
                                     "--output", str(tmp_path / "out.png")])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out.png").size == (300, 180)
    from clipsr_runtime.triton.cli import app as triton_app

    result = runner.invoke(triton_app, [str(folder), str(tmp_path / "repo"), "--cpu"])
    assert result.exit_code == 0, result.output
    generator = (tmp_path / "repo" / "generator" / "config.pbtxt").read_text()
    assert "dims: 64" in generator and "dims: 512" in generator and "dims: 256" in generator


@pytest.mark.slow
def test_an_imported_checkpoint_fine_tunes_like_any_other(imported, tmp_path):
    from clipsr.checkpoint import save_checkpoint
    from clipsr.metrics_logger import METRICS_FILE
    from clipsr.train_config import SRConfig
    from clipsr.trainer import SRTrainer

    converted = save_checkpoint(imported, tmp_path / "cub-x4.safetensors")
    cfg = SRConfig(out=str(tmp_path / "run"), steps=1, ckpt_every=1, preset="cub-reference", scale=4,
                      init=str(converted), dataset="synthbirds", batch_size=1, perceptual=None, log_every=1,
                      data_options={"count": 2})
    SRTrainer(cfg).train()
    logged = json.loads((tmp_path / "run" / METRICS_FILE).read_text().splitlines()[0])
    assert logged["step"] == 1 and math.isfinite(logged["g_l1"]) and math.isfinite(logged["d_hinge"])
    tuned = create_model(tmp_path / "run" / "checkpoint.safetensors")
    assert isinstance(tuned.generator, ReferenceGenerator) and tuned.card == imported.card
