"""benchmarks/runtime.py: the --quick CPU run end to end (the JSON it promises, sane values),
plus the pieces whose arithmetic is easy to get wrong."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from clipsr_bench.paper import PAPER_CLIPSR_PARAMS, quoted_rows  # noqa: E402
from clipsr_bench.suite import Settings, run_suite, speedup_section  # noqa: E402
from clipsr_bench.targets import parse_backends, plan_rows  # noqa: E402
from clipsr_bench.timing import measure  # noqa: E402


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "result.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(BENCH / "runtime.py"), "--quick", "--runs", "3", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Table III" in done.stdout
    return json.loads(out.read_text())


def test_quick_json_has_the_paper_convention_within_5_percent(quick):
    params = quick["params"]
    assert abs(params["paper_convention"] / PAPER_CLIPSR_PARAMS - 1) < 0.05
    paper16 = params["per_preset"]["paper-b32"]["16"]
    assert paper16["paper_convention"] == params["paper_convention"]
    assert paper16["trainable"] + paper16["frozen"] == paper16["unique_total"]
    assert paper16["deploy"] < paper16["unique_total"] < paper16["paper_convention"]
    assert set(params["per_preset"]) == {"paper-b32", "tiny"}


def test_quick_json_has_positive_latencies_and_the_ort_ratio(quick):
    rows = quick["latency"]
    assert rows["torch-cpu"]["status"] == rows["ort-cpu"]["status"] == "ok"
    for row in ("torch-cpu", "ort-cpu"):
        for stage in ("text_encoder", "generator"):
            for batch, t in rows[row][stage].items():
                assert 0 < t["median_ms"] <= t["p90_ms"]
                assert t["per_image_ms"] == pytest.approx(t["median_ms"] / int(batch))
    expected = rows["torch-cpu"]["generator"]["1"]["median_ms"] / rows["ort-cpu"]["generator"]["1"]["median_ms"]
    assert quick["speedup"]["generator_ort_vs_torch_cpu"] == pytest.approx(expected)
    assert quick["speedup"]["generator_ort_vs_torch_cpu"] > 0
    assert all(r["status"] == "unavailable" and r["reason"] for r in rows.values() if r["device"] == "cuda")


def test_quick_json_has_flops_memory_and_the_paper_rows(quick):
    flops = quick["flops"]
    assert flops["generator_per_image"] > flops["text_encoder_per_prompt"] > 0
    assert 0 < flops["achieved_fraction_generator"]["ort-cpu"] < 1.5  # a measured peak, not a bound
    proc = quick["processes"]
    assert proc["runtime"]["peak_rss_mb"] < proc["torch"]["peak_rss_mb"]  # torch-free really is lighter
    assert proc["runtime"]["to_output_s"] > 0 and proc["torch"]["to_output_s"] > 0
    assert [r["method"] for r in quick["paper"]["quoted"]] == ["SuperFAN", "XPSR", "TGESR", "CLIP-SR"]
    assert all(r["source"].startswith("measured") for r in quick["paper"]["ours"])


def test_measure_reports_median_and_p90_per_batch():
    calls = []
    t = measure(lambda: calls.append(1), batch=4, runs=7, warmup=2)
    assert len(calls) == 9 and t.runs == 7
    assert 0 <= t.median_ms <= t.p90_ms and t.per_image_ms == pytest.approx(t.median_ms / 4)
    with pytest.raises(ValueError, match="runs"):
        measure(lambda: None, batch=1, runs=0, warmup=0)


def test_backends_are_parsed_and_planned_per_device_and_precision():
    assert parse_backends("ort-cpu, torch,ort-cpu") == ["ort-cpu", "torch"]
    with pytest.raises(ValueError, match="--backends"):
        parse_backends("torch,onnx")
    rows = {r.row: (r.device, r.precision) for r in plan_rows(["torch", "ort-cuda", "ort-cpu"], fp16=True)}
    assert rows == {"torch-cpu": ("cpu", "fp32"), "torch-cuda": ("cuda", "fp32"), "ort-cuda": ("cuda", "fp32"),
                    "ort-cuda-fp16": ("cuda", "fp16"), "ort-cpu": ("cpu", "fp32")}


def test_speedups_are_slow_over_fast_and_none_when_a_side_did_not_run():
    def row(ms):
        return {"status": "ok", "generator": {"1": {"median_ms": ms}, "8": {"median_ms": 4 * ms}},
                "text_encoder": {"1": {"median_ms": ms / 10}}}
    rows = {"torch-cpu": row(30.0), "ort-cpu": row(10.0), "torch-cuda": {"status": "unavailable"}}
    speed = speedup_section(rows, (1, 8))
    assert speed["generator_ort_vs_torch_cpu"] == pytest.approx(3.0)
    assert speed["text_encoder_ort_vs_torch_cpu"] == pytest.approx(3.0)
    assert speed["generator_torch_cuda_vs_cpu"] is None


def test_paper_rows_are_quoted_as_printed():
    rows = {r["method"]: r for r in quoted_rows()}
    assert rows["CLIP-SR"]["params"] == 632.2e6 and rows["CLIP-SR"]["ms_per_image"] == pytest.approx(24.1)
    assert rows["TGESR"]["ms_per_image"] == pytest.approx(39900)
    assert all(r["source"] == "quoted (paper)" for r in rows.values())


def test_pytorch_rows_alone_skip_the_onnx_export(monkeypatch):
    import clipsr_export.pipeline

    monkeypatch.setattr(clipsr_export.pipeline, "export_model", lambda *a, **k: pytest.fail("exported"))
    settings = Settings(preset="tiny", scale=16, backends=("torch",), batches=(1,), runs=1, warmup=0, threads=1,
                        cpu_only=True, processes=False, ort_sweep=False)
    assert not settings.needs_export
    result = run_suite(settings)
    assert result["latency"]["torch-cpu"]["status"] == "ok"
    assert result["latency"]["torch-cuda"]["status"] == "unavailable"
    for needs in ({"backends": ("torch", "ort-cpu")}, {"processes": True}):
        assert Settings(**{**settings.__dict__, **needs}).needs_export
