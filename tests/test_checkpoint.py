"""Safe checkpoints: round trip, fp16 storage, and clear errors."""
from __future__ import annotations

import pytest
import torch

from clipsr.checkpoint import CheckpointError, read_config, save_checkpoint
from clipsr.factory import create_model


def _same_output(a, b, atol):
    lr = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        tokens = a.tokenize(["a bird with a red crown"])
        torch.testing.assert_close(a(lr, tokens), b(lr, tokens), atol=atol, rtol=0)


def test_round_trip_keeps_weights_and_config(tiny16, tmp_path):
    path = save_checkpoint(tiny16, tmp_path / "m.safetensors", step="12")
    loaded = create_model(path).eval()
    assert read_config(path) == tiny16.config
    _same_output(tiny16, loaded, atol=0)
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_fp16_storage_halves_the_file(tiny16, tmp_path):
    full = save_checkpoint(tiny16, tmp_path / "full.safetensors")
    half = save_checkpoint(tiny16, tmp_path / "half.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = create_model(half).eval()
    assert next(loaded.parameters()).dtype == torch.float32
    _same_output(tiny16, loaded, atol=0.05)


def test_bad_checkpoints_are_clear_errors(tiny16, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        create_model(tmp_path / "missing.safetensors")
    path = save_checkpoint(tiny16, tmp_path / "m.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="damaged|does not load"):
        create_model(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="damaged"):
        create_model(garbage)
    with pytest.raises(CheckpointError, match="holds a 16x model, not 4x"):
        create_model(path, scale=4)
    with pytest.raises(CheckpointError, match="holds preset 'tiny'"):
        create_model(path, preset="paper-b32")
