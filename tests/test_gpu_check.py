"""benchmarks/gpu_check.py on the CPU path: one command, seconds, every GPU step reported unavailable
with its reason, exit 0, JSON + markdown written; plus the helpers that decide what runs on a GPU box."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import gpu_check  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path (a GPU machine runs the real steps)")
def test_cpu_path_reports_every_step_unavailable_and_exits_0(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--out", str(tmp_path / "gpu-x")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu-x" / "check.json").read_text())
    steps = report["steps"]
    assert {"gpu tests", "latency", "latency torch.compile", "train tiny", "train paper-b32", "trt"} <= set(steps)
    assert all(s["status"] == "unavailable" and s["reason"] for s in steps.values())
    table = (tmp_path / "gpu-x" / "check.md").read_text()
    assert "| trt | unavailable | TensorRT is not importable |" in table and table in done.stdout


def test_usage_errors_exit_2(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--budget-s", "0", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "error:" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "check.json").exists()


def test_onnx_rows_run_only_when_their_provider_or_tensorrt_imports():
    env = {"ort_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"], "tensorrt": False}
    usable, missing = gpu_check.runtime_backends(env)
    assert usable == ["ort-cuda"] and set(missing) == {"ort-trt", "trt"}
    assert "TensorrtExecutionProvider" in missing["ort-trt"]


def test_results_folder_is_named_after_the_gpu():
    assert gpu_check.default_name({"gpu": "NVIDIA H200"}) == "h200"
    assert gpu_check.default_name({"gpu": "NVIDIA GeForce RTX 4090"}) == "rtx-4090"
    assert gpu_check.default_name({"gpu": None}) == "cpu"


def test_a_step_that_overruns_is_stopped_and_reported():
    step = gpu_check.run_step([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=1)
    assert step["status"] == "timeout" and step["seconds"] < 10
    failed = gpu_check.run_step([sys.executable, "-c", "raise SystemExit('boom')"], timeout_s=30)
    assert failed["status"] == "failed" and failed["reason"] == "exit 1: boom"


def test_markdown_lists_latency_rows_from_both_runs():
    row = {"status": "ok", "precision": "fp32", "text_encoder": {"1": {"median_ms": 6.9}},
           "generator": {"1": {"median_ms": 15.1}, "8": {"per_image_ms": 1.96}}}
    report = {"date": "d", "seconds": 100.0, "environment": {"gpu": "G", "torch": "t", "torch_cuda": "13",
                                                             "ort_providers": [], "tensorrt": False},
              "steps": {"gpu tests": {"status": "ok", "summary": "3 passed", "seconds": 9},
                        "latency": {"status": "ok", "seconds": 50, "rows": {"torch-cuda": row}},
                        "latency torch.compile": {"status": "timeout", "reason": "stopped after 96 s"},
                        "train tiny": {"status": "ok", "img_per_s": 123.4, "batch": 16, "steps": 30}}}
    table = gpu_check.markdown(report)
    assert "| gpu tests | ok | 3 passed |" in table and "| latency torch.compile | timeout | stopped after 96 s |" in table
    assert "| torch-cuda | fp32 | 6.90 | 15.10 | 1.96 |" in table and "123.4 img/s" in table
