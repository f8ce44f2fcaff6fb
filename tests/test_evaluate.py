"""clipsr-eval: a checkpoint on a few SynthBirds test images -> table, JSON, CSV and a grid."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clipsr.checkpoint import save_checkpoint
from shared_data import NIQE_PARAMS as NIQE



@pytest.mark.skipif(not NIQE.is_file(), reason="needs the shared NIQE parameter file")
def test_eval_writes_metrics_with_bicubic_baseline(tiny16, tmp_path):
    ckpt = save_checkpoint(tiny16, tmp_path / "m.safetensors")
    out = tmp_path / "eval"
    done = subprocess.run([sys.executable, "-m", "clipsr.cli.evaluate", str(ckpt), "--count", "2",
                           "--batch-size", "2", "--out", str(out), "--niqe-params", str(NIQE)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    text = json.dumps(metrics)
    for key in ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "niqe", "bicubic"):
        assert key in text
    assert (out / "metrics.csv").read_text().count("\n") >= 4
    assert (out / "grid.png").stat().st_size > 1000
    assert "psnr_y" in done.stdout


def test_eval_bad_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"nonsense")
    done = subprocess.run([sys.executable, "-m", "clipsr.cli.evaluate", str(bad), "--out", str(tmp_path / "e")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error:") and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "e").exists()
