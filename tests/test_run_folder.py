"""A run folder moves from one saved step to the next as a unit: a kill at any point of a save, then a
resume, gives the uninterrupted run bit for bit; a damaged or mixed folder is refused before any step."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch

from clipsr.factory import create_model
from clipsr.metrics_logger import METRICS_FILE, MetricsLogger
from clipsr.run_folder import MANIFEST, PENDING, RunFolderError, file_sha256, recover, save_step
from clipsr.train_config import CONFIG_FILE, SRConfig
from clipsr.train_state import STATE_FILE, load_train_state, save_train_state
from clipsr.trainer import CHECKPOINT_FILE, SRTrainer

FAST = dict(preset="tiny", scale=16, dataset="synthbirds", batch_size=2, perceptual=None, log_every=1,
            ckpt_every=1, data_options={"count": 8})
KILLED = 17


def _cfg(out: Path, steps: int) -> SRConfig:
    return SRConfig(out=str(out), steps=steps, **FAST)


def _state(run: Path) -> dict[str, torch.Tensor]:
    return {f"{name}:{key}": value for name in (CHECKPOINT_FILE, STATE_FILE)
            for key, value in safetensors.torch.load_file(str(run / name)).items()}


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "img_per_s"} for row in rows]


class _Killed(BaseException):
    """Ends the training run at the injected point (not an Exception: nothing may catch it)."""


def _kill_at(monkeypatch, run: Path, snapshot: Path, point: int, half: bool) -> None:
    """At the `point`-th file operation of a save or metrics line, copy `run` as it lies on disk to
    `snapshot` (what a SIGKILL at that instant leaves; with `half`, the file being written is cut short)
    and end the run."""
    count = [0]
    replace, rmtree, log = os.replace, shutil.rmtree, MetricsLogger.log

    def tick(partial) -> None:
        count[0] += 1
        if count[0] == point:
            if half:
                partial()
            shutil.copytree(run, snapshot)
            raise _Killed

    def cut(path) -> None:
        path = Path(path)
        if path.name.endswith(".part"):
            os.truncate(path, path.stat().st_size // 2)

    def killing_replace(src, dst):
        tick(lambda: cut(src))
        return replace(src, dst)

    def killing_rmtree(path, *args, **kw):
        tick(lambda: None)
        return rmtree(path, *args, **kw)

    def killing_log(self, step, values):
        def half_line():
            self.file.write(json.dumps({"step": step, **values})[:20])
            self.file.flush()
        tick(half_line)
        return log(self, step, values)

    monkeypatch.setattr(os, "replace", killing_replace)
    monkeypatch.setattr(shutil, "rmtree", killing_rmtree)
    monkeypatch.setattr(MetricsLogger, "log", killing_log)


def _killed(monkeypatch, run: Path, snapshot: Path, steps: int, point: int, half: bool) -> bool:
    """Resume `run` to `steps`, killed at `point`: whether the point was reached (`snapshot` then holds
    the folder the kill left)."""
    trainer = SRTrainer(_cfg(run, steps), resume=True)
    with monkeypatch.context() as patch:
        _kill_at(patch, run, snapshot, point, half)
        try:
            trainer.train()
        except _Killed:
            return True
    return False


def test_a_kill_anywhere_in_a_save_then_resume_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    SRTrainer(_cfg(straight, 2)).train()
    half = tmp_path / "half"
    SRTrainer(_cfg(half, 1)).train()
    expected, expected_metrics = _state(straight), _metrics(straight)
    # the file operations after step 1: the two configs, the metrics line of step 2, then the step-2 save
    # (clear .pending, checkpoint, train state, manifest, three moves, remove .pending); the halves cut the
    # metrics line and the manifest short (a half checkpoint or state takes the path of a whole one: no
    # manifest beside it)
    cases = [(point, False) for point in range(1, 12)] + [(point, True) for point in (3, 7)]
    handled = 0
    for point, cut in cases:
        run = tmp_path / f"kill{point}{'half' if cut else ''}"
        shutil.copytree(half, run / "live")
        assert _killed(monkeypatch, run / "live", run / "left", 2, point, cut), f"no file operation {point}"
        SRTrainer(_cfg(run / "left", 2), resume=True).train()
        state = _state(run / "left")
        assert state.keys() == expected.keys()
        assert all(torch.equal(state[k], expected[k]) for k in expected), f"kill at {point} (half {cut}) diverges"
        assert _metrics(run / "left") == expected_metrics
        assert not list((run / "left").glob(".*.part")) and not (run / "left" / PENDING).exists()
        handled += 1
    assert not _killed(monkeypatch, half, tmp_path / "unused", 2, 12, False), "the cases cover every operation"
    assert handled == len(cases) == 13


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("trained") / "run"
    SRTrainer(_cfg(run, 1)).train()
    return run


def _save(out: Path, step: int, payload: bytes) -> None:
    save_step(out, step, {"a.bin": lambda p: p.write_bytes(payload), "b.bin": lambda p: p.write_bytes(payload * 2)})


def test_recover_rolls_a_committed_save_forward_and_discards_an_uncommitted_one(tmp_path):
    _save(tmp_path, 2, b"two")
    (tmp_path / PENDING).mkdir()
    (tmp_path / PENDING / "a.bin").write_bytes(b"half of step four")  # killed before the commit
    (tmp_path / ".a.bin.123.x1y2z3w4.part").write_bytes(b"left over")
    assert recover(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin", MANIFEST]
    _save(tmp_path / "next", 4, b"four")  # a committed step 4, moved half way when killed
    (tmp_path / PENDING).mkdir()
    for name in ("b.bin", MANIFEST):
        shutil.copy(tmp_path / "next" / name, tmp_path / PENDING / name)
    shutil.copy(tmp_path / "next" / "a.bin", tmp_path / "a.bin")
    assert recover(tmp_path) == 4
    assert (tmp_path / "b.bin").read_bytes() == b"fourfour"


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "a.bin").write_bytes(b"twx"), "a.bin does not match its sha256"),
    (lambda d: (d / "b.bin").unlink(), "b.bin is missing"),
    (lambda d: (d / MANIFEST).unlink(), "no run_manifest.json"),
    (lambda d: (d / MANIFEST).write_text("{"), "not a readable run manifest"),
    (lambda d: (d / MANIFEST).write_text("[]"), "not a clipsr run manifest"),
    (lambda d: _edit_manifest(d, step="2"), "step must be a non-negative integer"),
    (lambda d: _edit_manifest(d, step=2.5), "step must be a non-negative integer"),
    (lambda d: _edit_manifest(d, step=True), "step must be a non-negative integer"),
    (lambda d: _edit_manifest(d, files={"../a.bin": "0"}), "not a clipsr run manifest"),
])
def test_a_damaged_run_folder_is_one_clear_error(tmp_path, damage, message):
    _save(tmp_path, 2, b"two")
    damage(tmp_path)
    with pytest.raises(RunFolderError, match=message) as caught:
        recover(tmp_path)
    assert "\n" not in str(caught.value)


def _edit_manifest(run: Path, **changes) -> None:
    data = json.loads((run / MANIFEST).read_text())
    (run / MANIFEST).write_text(json.dumps({**data, **changes}))


def _redigest(run: Path, name: str) -> None:
    """As if the save itself had written the bad file: its digest matches, only its content can tell."""
    data = json.loads((run / MANIFEST).read_text())
    data["files"][name] = file_sha256(run / name)
    (run / MANIFEST).write_text(json.dumps(data))


def _rewrite(path: Path, change) -> None:
    with safetensors.safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    change(meta, tensors)
    safetensors.torch.save_file(tensors, str(path), metadata=meta)
    _redigest(path.parent, path.name)


def _nan_weight(meta, tensors):
    key = next(k for k in tensors if k.endswith("upsampler.out.weight"))
    tensors[key][0] = float("nan")


def _bad_shape(meta, tensors):
    key = next(k for k in tensors if k.endswith("exp_avg"))
    tensors[key] = torch.zeros(3, 1)


def _config_not_json(meta, tensors):
    meta["config"] = "{not json"


@pytest.mark.parametrize("damage, file, message", [
    (lambda r: (r / CHECKPOINT_FILE).write_bytes(_flip((r / CHECKPOINT_FILE).read_bytes())), CHECKPOINT_FILE,
     "does not match its sha256"),
    (lambda r: _rewrite(r / CHECKPOINT_FILE, _nan_weight), CHECKPOINT_FILE, "non-finite weights"),
    (lambda r: _rewrite(r / CHECKPOINT_FILE, _config_not_json), CHECKPOINT_FILE, "model config in its metadata"),
    (lambda r: _rewrite(r / STATE_FILE, _bad_shape), STATE_FILE, r"has shape \(3, 1\)"),
    (lambda r: _rewrite(r / STATE_FILE, lambda m, t: m.update(step="2.5")), STATE_FILE, "non-negative integer"),
    (lambda r: _rewrite(r / STATE_FILE, lambda m, t: m.update(step="4")), STATE_FILE, "holds step 4"),
    (lambda r: _rewrite(r / STATE_FILE, lambda m, t: m.update(param_groups="[")), STATE_FILE, "does not fit"),
])
def test_a_bad_file_fails_the_resume_naming_it_before_any_step(trained, tmp_path, damage, file, message):
    run = shutil.copytree(trained, tmp_path / "run")
    damage(run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match=message) as caught:
        SRTrainer(_cfg(run, 4), resume=True)
    assert file in str(caught.value) and "\n" not in str(caught.value)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before, "the folder is untouched"


def _flip(data: bytes) -> bytes:
    middle = len(data) - 1000  # tensor data, far from the header
    return data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1:]


def test_load_checkpoint_checks_the_run_manifest(trained, tmp_path):
    run = shutil.copytree(trained, tmp_path / "run")
    create_model(run / CHECKPOINT_FILE)
    (run / CHECKPOINT_FILE).write_bytes(_flip((run / CHECKPOINT_FILE).read_bytes()))
    with pytest.raises(ValueError, match=f"{CHECKPOINT_FILE} does not match its sha256"):
        create_model(run / CHECKPOINT_FILE)


def test_a_run_folder_saved_when_one_config_served_both_stages_resumes(trained, tmp_path):
    run = shutil.copytree(trained, tmp_path / "run")
    config = json.loads((run / CONFIG_FILE).read_text())
    config.update(betas=[0.0, 0.9], perceptual_fallback="off", clip_lr=5e-4, attribute_loss=0.0)
    (run / CONFIG_FILE).write_text(json.dumps(config))
    _rewrite(run / STATE_FILE, lambda meta, tensors: meta.pop("grad_scaler"))  # saved before the loss scale was
    SRTrainer(_cfg(run, 2), resume=True).train()
    assert recover(run) == 2 and "betas" not in json.loads((run / CONFIG_FILE).read_text())


def test_the_training_state_keeps_the_fp16_loss_scale(tmp_path):
    # an fp16 run's scale has grown or shrunk by the time it is saved; a resume must not start it afresh
    weight = torch.nn.Parameter(torch.ones(2))
    optimizers = {"generator": torch.optim.Adam([weight])}
    save_train_state(tmp_path / STATE_FILE, 5, optimizers, torch.amp.GradScaler("cpu", init_scale=1024.0))
    scaler = torch.amp.GradScaler("cpu")
    assert load_train_state(tmp_path / STATE_FILE, optimizers, scaler) == 5 and scaler.get_scale() == 1024.0
