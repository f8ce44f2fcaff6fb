"""clipsr-train: exact resume, reproducible seeds, DDP over two gloo processes, the CLIP stage,
and clear CLI errors. Tiny preset, SynthBirds, a handful of steps."""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from clipsr.checkpoint import CheckpointError
from clipsr.clip import load_clip
from clipsr.config import CLIPConfig
from clipsr.train_config import CLIPStageConfig, SRConfig, config_from_json
from clipsr.metrics_logger import METRICS_FILE
from clipsr.run_folder import recover
from clipsr.trainer import CHECKPOINT_FILE, SRTrainer, collate

FAST = dict(preset="tiny", scale=16, dataset="synthbirds", batch_size=2, perceptual=None, log_every=1,
            data_options={"count": 16})


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(run / CHECKPOINT_FILE))


def _train(out: Path, steps: int, resume: bool = False, **kw) -> Path:
    cfg = SRConfig(out=str(out), steps=steps, ckpt_every=2, **{**FAST, **kw})
    SRTrainer(cfg, resume=resume).train()
    return out


def _assert_same(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)


def test_resume_continues_exactly(tmp_path):
    straight = _train(tmp_path / "straight", steps=4)
    half = _train(tmp_path / "resumed", steps=2)
    resumed = _train(half, steps=4, resume=True)
    _assert_same(_weights(straight), _weights(resumed))
    lines = (resumed / METRICS_FILE).read_text().splitlines()
    assert len(lines) == 4, "a resumed run appends to the metrics file"
    assert (resumed / "train_config.json").is_file() and (resumed / "model_config.json").is_file()


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    a = _weights(_train(tmp_path / "a", steps=2, lambda_adv=0.0))
    b = _weights(_train(tmp_path / "b", steps=2, lambda_adv=0.0))
    c = _weights(_train(tmp_path / "c", steps=2, lambda_adv=0.0, seed=1))
    _assert_same(a, b)
    key = "generator.upsampler.out.weight"
    assert not torch.equal(a[key], c[key])


def test_part_labels_teach_the_text_palette_and_need_one(tmp_path):
    options = {"count": 16, "part_labels": True}
    run = _train(tmp_path / "palette", steps=1, lambda_adv=0.01, data_options=options,
                 model={"generator.text_palette": 4})
    logged = json.loads((run / METRICS_FILE).read_text().splitlines()[0])
    assert logged["g_palette_choice"] > 0.03, "a fresh palette keeps the SR value almost everywhere, parts included"
    assert logged["g_palette_colour"] > 0.05 and logged["g_palette_named"] > 0.3  # nothing read from the text yet
    with pytest.raises(ValueError, match="text palette"):
        _train(tmp_path / "no_palette", steps=1, lambda_adv=0.0, data_options=options)


def test_init_fine_tunes_from_a_checkpoint_with_its_own_config(tmp_path):
    base = _train(tmp_path / "base", steps=2, model={"generator.text_palette": 4})
    # lr 0: Adam moves nothing, so the fine-tuned weights are the checkpoint's (BatchNorm statistics aside)
    tuned = _train(tmp_path / "tuned", steps=1, init=str(base / CHECKPOINT_FILE), lr_g=0.0, lr_d=0.0)
    start, after = _weights(base), _weights(tuned)
    learned = [k for k in start if "running_" not in k and "num_batches" not in k]
    assert any("palette" in k for k in learned), "the palette comes from the checkpoint's config, not the preset"
    _assert_same({k: start[k] for k in learned}, {k: after[k] for k in learned})
    assert json.loads((tuned / METRICS_FILE).read_text().splitlines()[0])["step"] == 1
    with pytest.raises(ValueError, match="carries its model config"):
        _train(tmp_path / "bad", steps=1, init=str(base / CHECKPOINT_FILE), model={"generator.use_text": False})
    with pytest.raises(CheckpointError, match="not 8x"):
        _train(tmp_path / "bad", steps=1, init=str(base / CHECKPOINT_FILE), scale=8)


def _torchrun(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    script = shutil.which("clipsr-train", path=str(Path(sys.executable).parent))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           script, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one_process(tmp_path):
    # text_norm off: on CPU each process standardises the text over its own half batch (SyncBatchNorm
    # is CUDA-only), which is meant to differ from one process
    common = ["--steps", "2", "--batch-size", "4", "--perceptual", "off", "--lambda-adv", "0",
              "--data-opt", "count=16", "--device", "cpu", "--set", "generator.text_norm=none"]
    done = _torchrun(common + ["--out", str(tmp_path / "ddp")], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    single = _weights(_train(tmp_path / "single", steps=2, batch_size=4, lambda_adv=0.0,
                             model={"generator.text_norm": "none"}))
    ddp = _weights(tmp_path / "ddp")
    assert ddp.keys() == single.keys()
    # Adam turns float noise in near-zero gradients into steps of up to lr: allow those, count the rest.
    diff = torch.cat([(ddp[k].float() - single[k].float()).abs().flatten() for k in ddp])
    assert (diff > 1e-5).float().mean() < 1e-4
    assert diff.max() <= 2 * 2 * 1e-4


def _clip(out: Path, steps: int, resume: bool = False, **kw) -> Path:
    from clipsr.train_clip import CLIPTrainer

    cfg = CLIPStageConfig(out=str(out), steps=steps, preset="tiny", log_every=1, ckpt_every=2,
                          **{"batch_size": 2, "data_options": {"count": 8}, **kw})
    return CLIPTrainer(cfg, resume=resume).train()


def test_clip_stage_writes_loadable_open_clip_weights(tmp_path):
    from clipsr.train_clip import CLIP_FILE

    path = _clip(tmp_path / "clip", steps=3, batch_size=4, data_options={"count": 16})
    assert path.name == CLIP_FILE
    clip = load_clip(CLIPConfig(arch="clipsr-tiny", pretrained=str(path), quick_gelu=False))
    trained = safetensors.torch.load_file(str(path))
    torch.testing.assert_close(clip.state_dict()["text_projection"], trained["text_projection"])
    assert len((tmp_path / "clip" / METRICS_FILE).read_text().splitlines()) == 3
    assert recover(tmp_path / "clip") == 3, "the last step is saved whole, under the run manifest"


@pytest.mark.slow
def test_ddp_clip_stage_two_gloo_processes_match_one_process(tmp_path):
    # the contrastive loss gathers both halves of the batch, so two processes learn what one does
    done = _torchrun(["--stage", "clip", "--steps", "2", "--batch-size", "4", "--data-opt", "count=16",
                      "--device", "cpu", "--out", str(tmp_path / "ddp")], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    single = safetensors.torch.load_file(str(_clip(tmp_path / "single", steps=2, batch_size=4,
                                                   data_options={"count": 16})))
    ddp = safetensors.torch.load_file(str(tmp_path / "ddp" / "clip.safetensors"))
    assert ddp.keys() == single.keys()
    diff = torch.cat([(ddp[k].float() - single[k].float()).abs().flatten() for k in ddp])
    assert (diff > 1e-5).float().mean() < 1e-3
    assert diff.max() <= 2 * 2 * 5e-4


def test_clip_stage_killed_after_a_save_resumes_exactly_with_its_attribute_head(tmp_path):
    from clipsr.train_clip import CLIPTrainer

    options = dict(data_options={"count": 8, "attributes": True}, attribute_loss=1.0)
    straight = _clip(tmp_path / "straight", steps=3, **options)
    cfg = CLIPStageConfig(out=str(tmp_path / "killed"), steps=3, preset="tiny", log_every=1, ckpt_every=2,
                          batch_size=2, **options)
    killed = CLIPTrainer(cfg)
    batches = killed.loader
    killed.loader = lambda: itertools.islice(batches(), 2)  # the run ends after its step-2 save, as if killed
    killed.train()
    assert recover(tmp_path / "killed") == 2
    resumed = _clip(tmp_path / "killed", steps=3, resume=True, **options)  # the schedule's steps: the same 3
    _assert_same(safetensors.torch.load_file(str(straight)), safetensors.torch.load_file(str(resumed)))
    assert [json.loads(line)["step"] for line in resumed.with_name(METRICS_FILE).read_text().splitlines()] == [1, 2, 3]


def test_clip_stage_attribute_head_learns_from_labelled_captions_and_needs_them(tmp_path):
    _clip(tmp_path / "clip", steps=2, data_options={"count": 8, "attributes": True}, attribute_loss=1.0)
    logged = [json.loads(line) for line in (tmp_path / "clip" / METRICS_FILE).read_text().splitlines()]
    assert [row["step"] for row in logged] == [1, 2]
    # 4 parts x 11 classes from a fresh head: about log(11) each, and far from every attribute right
    assert all(1.5 < row["attribute_loss"] < 4.0 and row["attribute_accuracy"] < 0.9 for row in logged)
    with pytest.raises(ValueError, match="--attribute-loss needs a dataset that labels"):
        _clip(tmp_path / "plain", steps=1, attribute_loss=1.0)


def test_every_config_field_has_its_clipsr_train_option():
    from typer.main import get_command

    from clipsr.cli.train import app
    from clipsr.train_config import STAGES, flag

    options = {opt for param in get_command(app).params for opt in param.opts}
    for config in STAGES.values():
        missing = [f.name for f in dataclasses.fields(config) if flag(f.name) not in options]
        assert not missing, f"{config.__name__} fields no command line can set"


def test_a_run_folder_saved_before_the_stages_had_their_own_configs_still_loads():
    old = {"stage": "sr", **dataclasses.asdict(SRConfig(steps=7)), "betas": [0.0, 0.9],
           "perceptual_fallback": "off", "clip_lr": 5e-4, "attribute_loss": 0.0,
           "data_options": {"captions": "random", "mismatch_lr_prob": 0.5}}  # as the demo recipe saved it
    assert config_from_json(json.dumps(old)) == SRConfig(steps=7, data_options={"mismatch_lr_prob": 0.5})
    old["data_options"]["captions"] = "first"  # a removed switch that changed the run: kept, so the dataset refuses it
    assert config_from_json(json.dumps(old)).data_options["captions"] == "first"


@pytest.mark.parametrize("args, message, status", [
    (["--stage", "nope"], "--stage must be sr or clip", 2),
    (["--dataset", "imagenet"], "unknown dataset", 1),
    (["--scale", "3"], "scale must be one of", 1),
    (["--set", "generator.width=3"], "unknown config key", 1),
    (["--stage", "clip", "--lr-g", "1e-3"], "--lr-g does not apply to stage clip", 2),
    (["--attribute-loss", "1"], "--attribute-loss does not apply to stage sr", 2),
    (["--amp", "bf16", "--device", "cpu"], "--amp bf16 needs a CUDA device", 2),
    (["--ckpt-every", "0"], "--ckpt-every must be at least 1", 2),
    (["--perceptual", "vgg.safetensors"], "'vgg.safetensors' is none of these", 2),
    (["--data-opt", "part_weight=5"], "dataset 'synthbirds' has no option 'part_weight'; its options: count", 1),
    (["--resume", "--restart"], "give one", 2),
])
def test_cli_errors_are_one_line(tmp_path, args, message, status):
    done = subprocess.run([sys.executable, "-m", "clipsr.cli.train", "--out", str(tmp_path / "r"), "--steps", "1",
                           *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == status
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clipsr.cli.train", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def test_cli_resume_keeps_the_saved_config_and_refuses_a_change(tmp_path):
    out = tmp_path / "run"
    base = ["--out", out, "--batch-size", "2", "--perceptual", "off", "--lambda-adv", "0", "--data-opt", "count=8",
            "--log-every", "1"]
    first = _cli(*base, "--steps", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    before = _files(out)
    for change, message in ((["--batch-size", "4"], "--batch-size 4 (the run's: 2)"),
                            (["--lr-g", "5"], "--lr-g 5.0 (the run's: 0.0001)")):
        refused = _cli("--out", out, "--steps", "2", "--resume", *change)
        assert refused.returncode == 2 and message in refused.stderr and "a resumed run keeps its settings" in \
            refused.stderr, refused.stderr[-2000:]
        assert _files(out) == before, "a refused resume changes nothing"
    again = _cli(*base, "--steps", "2", "--resume")  # the same settings again, a later target
    assert again.returncode == 0, again.stderr[-2000:]
    saved = config_from_json((out / "train_config.json").read_text())
    assert saved.batch_size == 2 and saved.steps == 2
    assert len((out / METRICS_FILE).read_text().splitlines()) == 2


def test_cli_never_replaces_a_trained_run_and_restart_keeps_it_aside(tmp_path):
    out = tmp_path / "run"
    base = ["--out", out, "--batch-size", "2", "--perceptual", "none", "--data-opt", "count=8", "--num-workers", "0"]
    assert _cli(*base, "--steps", "2").returncode == 0
    trained = _files(out)
    again = _cli(*base, "--steps", "1")
    assert again.returncode == 2 and "exists: --resume continues it, --restart moves it aside" in again.stderr
    assert again.stderr.count("\n") == 1 and _files(out) == trained
    clip = _cli("--stage", "clip", "--out", out, "--steps", "1", "--batch-size", "2", "--data-opt", "count=8")
    assert clip.returncode == 2 and "exists" in clip.stderr and _files(out) == trained
    restarted = _cli(*base, "--steps", "1", "--restart")
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and f"moved the earlier run to {aside[0]}" in restarted.stderr
    assert _files(aside[0]) == trained, "the earlier run is kept whole"
    assert recover(out) == 1


def test_cli_resume_of_a_copied_run_writes_into_out(tmp_path):
    original = _train(tmp_path / "original", steps=1, lambda_adv=0.0)
    moved = tmp_path / "moved"
    shutil.copytree(original, moved)
    before = {p.name: p.read_bytes() for p in original.iterdir() if p.is_file()}
    done = subprocess.run([sys.executable, "-m", "clipsr.cli.train", "--out", str(moved), "--steps", "2", "--resume"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in original.iterdir() if p.is_file()} == before
    assert [json.loads(line)["step"] for line in (moved / METRICS_FILE).read_text().splitlines()] == [1, 2]
    assert config_from_json((moved / "train_config.json").read_text()).out == str(moved)
    (moved / "train_config.json").write_text("{not json")
    bad = subprocess.run([sys.executable, "-m", "clipsr.cli.train", "--out", str(moved), "--steps", "3", "--resume"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.count("\n") == 1 and "train_config.json is not a clipsr training config" in bad.stderr


def test_collate_stacks_tensors_and_lists_the_rest():
    items = [{"hr": torch.full((3, 4, 4), float(i)), "caption": f"c{i}", "extra": torch.tensor([i]), "key": i,
              "ragged": torch.zeros(i + 1)} for i in range(2)]
    batch = collate(items)
    assert batch.keys() == items[0].keys()
    assert batch["hr"].shape == (2, 3, 4, 4) and batch["extra"].tolist() == [[0], [1]]
    assert batch["caption"] == ["c0", "c1"] and batch["key"] == [0, 1]
    assert [len(t) for t in batch["ragged"]] == [1, 2]
