"""clipsr-train: exact resume, reproducible seeds, DDP over two gloo processes, the CLIP stage,
and clear CLI errors. Tiny preset, SynthBirds, a handful of steps."""
from __future__ import annotations

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
from clipsr.train_config import TrainConfig
from clipsr.metrics_logger import METRICS_FILE
from clipsr.trainer import CHECKPOINT_FILE, SRTrainer, collate

FAST = dict(preset="tiny", scale=16, dataset="synthbirds", batch_size=2, perceptual=None, log_every=1,
            data_options={"count": 16})


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(run / CHECKPOINT_FILE))


def _train(out: Path, steps: int, resume: bool = False, **kw) -> Path:
    cfg = TrainConfig(out=str(out), steps=steps, ckpt_every=2, **{**FAST, **kw})
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


def test_part_weight_reaches_the_l1_term(tmp_path):
    plain = _train(tmp_path / "plain", steps=1, lambda_adv=0.0)
    weighted = _train(tmp_path / "weighted", steps=1, lambda_adv=0.0, data_options={"count": 16, "part_weight": 50})
    l1 = [json.loads((run / METRICS_FILE).read_text().splitlines()[0])["g_l1"] for run in (plain, weighted)]
    # same seed, same first batch and weights: only the weighting differs, and the thin parts are where a
    # bicubic-like start errs most, so weighting them raises the term
    assert l1[1] > 1.2 * l1[0]


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


def test_clip_stage_writes_loadable_open_clip_weights(tmp_path):
    from clipsr.train_clip import CLIP_FILE, train_clip

    cfg = TrainConfig(stage="clip", out=str(tmp_path / "clip"), steps=3, batch_size=4, preset="tiny",
                      data_options={"count": 16}, log_every=1)
    path = train_clip(cfg)
    assert path.name == CLIP_FILE
    clip = load_clip(CLIPConfig(arch="clipsr-tiny", pretrained=str(path), quick_gelu=False))
    trained = safetensors.torch.load_file(str(path))
    torch.testing.assert_close(clip.state_dict()["text_projection"], trained["text_projection"])
    assert len((tmp_path / "clip" / METRICS_FILE).read_text().splitlines()) == 3


def test_clip_stage_attribute_head_learns_from_labelled_captions_and_needs_them(tmp_path):
    from clipsr.train_clip import train_clip

    cfg = TrainConfig(stage="clip", out=str(tmp_path / "clip"), steps=2, batch_size=2, preset="tiny",
                      data_options={"count": 8, "attributes": True}, attribute_loss=1.0, log_every=1)
    train_clip(cfg)
    logged = [json.loads(line) for line in (tmp_path / "clip" / METRICS_FILE).read_text().splitlines()]
    assert [row["step"] for row in logged] == [1, 2]
    # 4 parts x 11 classes from a fresh head: about log(11) each, and far from every attribute right
    assert all(1.5 < row["attribute_loss"] < 4.0 and row["attribute_accuracy"] < 0.9 for row in logged)
    with pytest.raises(ValueError, match="--attribute-loss needs a dataset that labels"):
        train_clip(TrainConfig(stage="clip", out=str(tmp_path / "plain"), steps=1, batch_size=2, preset="tiny",
                               data_options={"count": 8}, attribute_loss=1.0))


@pytest.mark.parametrize("args, message, status", [
    (["--stage", "nope"], "--stage must be sr or clip", 2),
    (["--dataset", "imagenet"], "unknown dataset", 1),
    (["--scale", "3"], "scale must be one of", 1),
    (["--set", "generator.width=3"], "unknown config key", 1),
])
def test_cli_errors_are_one_line(tmp_path, args, message, status):
    done = subprocess.run([sys.executable, "-m", "clipsr.cli.train", "--out", str(tmp_path / "r"), "--steps", "1",
                           *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == status
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_resume_keeps_the_saved_config(tmp_path):
    out = tmp_path / "run"
    base = [sys.executable, "-m", "clipsr.cli.train", "--out", str(out), "--batch-size", "2", "--perceptual", "off",
            "--lambda-adv", "0", "--data-opt", "count=8", "--log-every", "1"]
    first = subprocess.run(base + ["--steps", "1"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    again = subprocess.run(base + ["--steps", "2", "--resume", "--lr-g", "5"], capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    saved = TrainConfig.from_json((out / "train_config.json").read_text())
    assert saved.lr_g == 1e-4 and saved.steps == 2
    assert len((out / METRICS_FILE).read_text().splitlines()) == 2


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
    assert TrainConfig.from_json((moved / "train_config.json").read_text()).out == str(moved)
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
