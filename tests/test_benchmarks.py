"""benchmarks/runtime.py: the --quick CPU run end to end (the JSON it promises, sane values),
plus the pieces whose arithmetic is easy to get wrong: the interleaving order, pairwise ratio
statistics, the capped fraction of the peak and the load flag (fake calls and clocks, no real timing)."""
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
from clipsr_bench.machine import cpu_name, load_section  # noqa: E402
from clipsr_bench.timing import fraction_of_peak, interleave, matmul_peak, measure, pairwise_ratio  # noqa: E402


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
    torch_ms, ort_ms = (rows[r]["generator"]["1"]["samples_ms"] for r in ("torch-cpu", "ort-cpu"))
    assert len(torch_ms) == len(ort_ms) == 3
    ratio = quick["speedup"]["generator_ort_vs_torch_cpu"]
    per_round = sorted(t / o for t, o in zip(torch_ms, ort_ms))
    assert ratio["median"] == pytest.approx(per_round[1]) and ratio["pairs"] == 3
    assert ratio["min"] == pytest.approx(per_round[0]) and ratio["max"] == pytest.approx(per_round[-1])
    assert all(r["status"] == "unavailable" and r["reason"] for r in rows.values() if r["device"] == "cuda")


def test_quick_json_has_flops_memory_and_the_paper_rows(quick):
    flops = quick["flops"]
    assert flops["generator_per_image"] > flops["text_encoder_per_prompt"] > 0
    achieved = flops["achieved_fraction_generator"]["ort-cpu"]
    assert 0 < achieved["fraction"] <= 1 and achieved["above_peak"] == (achieved["raw"] > 1)
    peak = flops["peaks"]["cpu-fp32"]
    assert peak["flops"] == max(peak["candidates"].values()) and len(peak["candidates"]) == 6  # numpy + torch, 3 sizes
    proc = quick["processes"]
    assert proc["runs"] == 2 and len(proc["runtime"]["to_output_s"]["samples"]) == 2
    assert proc["runtime"]["peak_rss_mb"]["max"] < proc["torch"]["peak_rss_mb"]["min"]  # torch-free is lighter
    for path in ("runtime", "torch"):
        s = proc[path]["to_output_s"]
        assert 0 < s["min"] <= s["median"] <= s["max"]
    load = quick["machine"]["load"]
    assert len(load["before"]) == len(load["after"]) == 3 and load["cores"] == os.cpu_count()
    assert quick["machine"]["cpu"] == cpu_name()
    assert [r["method"] for r in quick["paper"]["quoted"]] == ["SuperFAN", "XPSR", "TGESR", "CLIP-SR"]
    assert all(r["source"].startswith("measured") for r in quick["paper"]["ours"])


def test_interleave_rotates_the_order_each_round_and_skips_warmup_samples():
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in "abc"}
    ticks = iter(range(1000))
    samples, errors = interleave(calls, runs=3, warmup=1, clock=lambda: next(ticks))
    assert order == list("abc" "bca" "cab" "abc")
    assert errors == {} and {k: len(v) for k, v in samples.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(ms == [1000.0] * 3 for ms in samples.values())  # one fake tick per call, in ms


def test_interleave_drops_a_failing_call_and_keeps_the_others():
    seen = []

    def broken():
        raise RuntimeError("no kernel\nsecond line")

    samples, errors = interleave({"ok": lambda: seen.append(1), "bad": broken}, runs=2, warmup=1)
    assert errors == {"bad": "RuntimeError: no kernel"} and len(samples["ok"]) == 2 and len(seen) == 3
    with pytest.raises(ValueError, match="runs"):
        interleave({"ok": lambda: None}, runs=0, warmup=0)


def test_pairwise_ratio_is_the_median_of_per_round_ratios_with_its_spread():
    # A burst of load hits "slow" in round 2 only: the median ignores it, the max shows it.
    r = pairwise_ratio([30.0, 300.0, 33.0, 27.0, 30.0], [10.0, 10.0, 11.0, 9.0, 12.0])
    assert r["median"] == pytest.approx(3.0) and r["max"] == pytest.approx(30.0)
    assert r["min"] == pytest.approx(2.5) and r["pairs"] == 5 and r["q1"] <= r["median"] <= r["q3"]
    with pytest.raises(ValueError, match="equally long"):
        pairwise_ratio([1.0, 2.0], [1.0])


def test_fraction_of_peak_is_capped_at_one_and_flagged():
    assert fraction_of_peak(50.0, 100.0) == {"fraction": 0.5, "above_peak": False, "raw": 0.5}
    capped = fraction_of_peak(182.0, 100.0)
    assert capped["fraction"] == 1.0 and capped["above_peak"] and capped["raw"] == pytest.approx(1.82)


def test_the_peak_is_the_best_interleaved_candidate():
    order = []

    def call(name):
        return lambda: order.append(name)

    # FLOPs per call differ, times are equal (fake-free but tiny): the best rate is the biggest FLOP count.
    peak = matmul_peak("cpu", None, runs=2, candidates={"small": (call("small"), 1), "big": (call("big"), 10**12)})
    assert peak["source"] == "big" and peak["flops"] == max(peak["candidates"].values())
    assert order[:4] == ["small", "big", "big", "small"]  # warm-up round, then rotated


def test_load_flag_is_raised_when_the_load_passes_the_core_count():
    quiet = load_section((0.8, 0.5, 0.2), (1.1, 0.9, 0.5), cores=2)
    assert not quiet["overloaded"] and quiet["before"] == [0.8, 0.5, 0.2]
    assert load_section((1.5, 1, 1), (2.6, 2, 1), cores=2)["overloaded"]
    assert load_section((3.0, 1, 1), (0.1, 1, 1), cores=2)["overloaded"]


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


def test_speedups_are_pairwise_slow_over_fast_and_none_when_a_side_did_not_run():
    def row(ms):
        return {"status": "ok", "generator": {"1": {"samples_ms": ms}, "8": {"samples_ms": [4 * m for m in ms]}},
                "text_encoder": {"1": {"samples_ms": [m / 10 for m in ms]}}}
    rows = {"torch-cpu": row([30.0, 60.0, 33.0]), "ort-cpu": row([10.0, 10.0, 11.0]),
            "torch-cuda": {"status": "unavailable"}}
    speed = speedup_section(rows, (1, 8))
    assert speed["generator_ort_vs_torch_cpu"]["median"] == pytest.approx(3.0)
    assert speed["generator_ort_vs_torch_cpu"]["max"] == pytest.approx(6.0)
    assert speed["text_encoder_ort_vs_torch_cpu"]["median"] == pytest.approx(3.0)
    assert speed["generator_torch_cuda_vs_cpu"] is None and speed["generator_openvino_vs_ort_cpu"] is None


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
