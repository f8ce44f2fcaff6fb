"""clipsr-eval: a checkpoint on a few SynthBirds test images -> table, JSON, CSV and a grid."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from clipsr.checkpoint import save_checkpoint


def test_eval_writes_metrics_with_bicubic_baseline_offline(tiny16, tmp_path):
    """Offline (the shipped NIQE parameters, nothing cached), with a Ma model that cannot be used here:
    everything else is written, and a warning says what is missing."""
    ckpt = save_checkpoint(tiny16, tmp_path / "m.safetensors")
    out = tmp_path / "eval"
    ma_model = tmp_path / "NRQM_model.mat"
    ma_model.write_bytes(b"not a model")
    env = {k: v for k, v in os.environ.items() if k not in ("CLIPSR_NIQE_PARAMS", "CLIPSR_MA_MODEL")}
    done = subprocess.run([sys.executable, "-m", "clipsr.cli.evaluate", str(ckpt), "--count", "2",
                           "--batch-size", "2", "--out", str(out), "--ma-model", str(ma_model)],
                          capture_output=True, text=True, timeout=300, env={**env, "XDG_CACHE_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning: ma not computed" in done.stderr and "Traceback" not in done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    text = json.dumps(metrics)
    for key in ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "niqe", "bicubic"):
        assert key in text
    assert "ma" in metrics["skipped"] and "pi" not in metrics["means"]["sr"]
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
