"""`python benchmarks/gpu_check.py`: everything worth measuring on a short-lived GPU machine, in one
command that fits in a few minutes and needs nothing but this checkout, CUDA PyTorch and the project's
Python dependencies (no download, no install).

Steps, each in its own child process with its own time limit, so one hang or crash still leaves the
others' results: the `gpu` tests (tests/test_gpu.py); the PyTorch latency rows of paper-b32 at 16x (FP32,
FP16, torch.compile, CUDA graphs; `benchmarks/runtime.py`), plus ONNX Runtime CUDA / TensorRT rows when
those import here; and the SynthBirds training throughput (a few `clipsr-train` steps on CUDA, tiny and
paper-b32, random CLIP weights, no perceptual network). Writes check.json and check.md under
benchmarks/results/gpu-<name>/ and prints the table. Without a GPU every step is reported unavailable,
with the reason, in seconds, and the exit status is still 0: only a usage error exits non-zero."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
# torch.compile gets a run of its own: its compile time must not cost the other rows their results.
LATENCY_STEPS = {"latency": ["torch", "torch-fp16", "torch-cudagraphs"], "latency torch.compile": ["torch", "torch-compile"]}
SHARES = {"gpu tests": 0.2, "latency": 0.3, "latency torch.compile": 0.25, "train": 0.125}
TRAIN_PRESETS = ("tiny", "paper-b32")

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=__doc__.splitlines()[0])


def environment() -> dict:
    """What this machine offers: CUDA through torch, ONNX Runtime's providers, TensorRT."""
    import torch

    env = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "tensorrt": importlib.util.find_spec("tensorrt") is not None, "ort_providers": []}
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
        env["ort_providers"] = onnxruntime.get_available_providers()
    return env


def runtime_backends(env: dict) -> tuple[list[str], dict[str, str]]:
    """The ONNX rows that can run here, and a reason for each that cannot."""
    usable, missing = [], {}
    for backend, need in (("ort-cuda", "CUDAExecutionProvider"), ("ort-trt", "TensorrtExecutionProvider")):
        if need in env["ort_providers"]:
            usable.append(backend)
        else:
            missing[backend] = f"ONNX Runtime has no {need} (providers: {', '.join(env['ort_providers']) or 'none'})"
    if env["tensorrt"]:
        usable.append("trt")
    else:
        missing["trt"] = "TensorRT is not importable"
    return usable, missing


def default_name(env: dict) -> str:
    """The GPU's short name ('NVIDIA H200' -> 'h200'), or 'cpu'."""
    if not env["gpu"]:
        return "cpu"
    words = [w for w in re.split(r"[^a-z0-9]+", env["gpu"].lower()) if w and w not in ("nvidia", "geforce", "tesla")]
    return "-".join(words) or "gpu"


def run_step(command: list[str], timeout_s: float, cwd: Path = ROOT) -> dict:
    """Run one step as a child process: status ok / failed / timeout, seconds, and its output's tail."""
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=max(1.0, timeout_s),
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-2000:] if isinstance(exc.stdout, bytes) else (exc.stdout or "")[-2000:]
        return {"status": "timeout", "seconds": round(time.perf_counter() - start, 1),
                "reason": f"stopped after {timeout_s:.0f} s", "tail": str(tail)}
    status = "ok" if done.returncode == 0 else "failed"
    out = {"status": status, "seconds": round(time.perf_counter() - start, 1),
           "tail": (done.stdout + done.stderr)[-2000:]}
    if status == "failed":
        out["reason"] = f"exit {done.returncode}: {((done.stderr or done.stdout).strip().splitlines() or [''])[-1]}"
    return out


def gpu_tests(timeout_s: float) -> dict:
    step = run_step([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py", "-p", "no:cacheprovider"],
                    timeout_s)
    summary = [line for line in step["tail"].splitlines() if re.search(r"\d+ (passed|failed|error|skipped)", line)]
    step["summary"] = summary[-1].strip("= ") if summary else None
    return step


def latency(backends: list[str], out: Path, timeout_s: float) -> dict:
    step = run_step([sys.executable, str(BENCH / "runtime.py"), "--preset", "paper-b32", "--scale", "16",
                     "--backends", ",".join(backends), "--batch", "1,8", "--runs", "10", "--warmup", "3",
                     "--no-processes", "--no-ort-sweep", "--json", str(out)], timeout_s)
    if step["status"] == "ok":
        result = json.loads(out.read_text())
        step["rows"], step["speedup"] = result["latency"], result["speedup"]
        step["machine"], step["peaks"] = result["machine"], result["flops"]["peaks"]
    return step


def training(preset: str, steps: int, batch: int, work: Path, timeout_s: float) -> dict:
    out = work / f"train-{preset}"
    step = run_step([sys.executable, "-c", "from clipsr.cli.train import main; main()", "--preset", preset,
                     "--dataset", "synthbirds", "--steps", str(steps), "--batch-size", str(batch), "--device",
                     "cuda", "--perceptual", "off", "--log-every", str(max(1, steps // 3)), "--ckpt-every",
                     str(steps), "--out", str(out), "--set", "clip.pretrained=null"], timeout_s)
    metrics = out / "metrics.jsonl"
    if step["status"] == "ok" and metrics.is_file():
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        rates = [r["img_per_s"] for r in rows[1:] or rows]  # the first window includes start-up
        step |= {"batch": batch, "steps": steps, "img_per_s": sum(rates) / len(rates)}
    return step


def unavailable(reason: str) -> dict:
    return {"status": "unavailable", "reason": reason}


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# GPU check: {env['gpu'] or 'no GPU'}", "",
             f"{report['date']}; torch {env['torch']} (CUDA {env['torch_cuda']}), onnxruntime "
             f"{env.get('onnxruntime', 'absent')} ({', '.join(env['ort_providers']) or 'no providers'}), "
             f"TensorRT {'present' if env['tensorrt'] else 'absent'}; {report['seconds']:.0f} s in all.", "",
             "| step | status | result |", "|---|---|---|"]
    for name, step in report["steps"].items():
        lines.append(f"| {name} | {step['status']} | {_result(step)} |")
    rows = {row: r for step in LATENCY_STEPS for row, r in report["steps"][step].get("rows", {}).items()}
    if rows:
        lines += ["", "paper-b32 16x, median ms (interleaved):", "",
                  "| row | precision | text b1 | generator b1 | generator per image b8 |", "|---|---|---|---|---|"]
        for row, r in rows.items():
            if r["status"] == "ok":
                lines.append(f"| {row} | {r['precision']} | {r['text_encoder']['1']['median_ms']:.2f} | "
                             f"{r['generator']['1']['median_ms']:.2f} | {r['generator']['8']['per_image_ms']:.2f} |")
            else:
                lines.append(f"| {row} | {r['precision']} | {r['status']}: {r['reason']} | | |")
    return "\n".join(lines) + "\n"


def _result(step: dict) -> str:
    if step["status"] != "ok":
        return step.get("reason", "").replace("|", "/")
    if "img_per_s" in step:
        return f"{step['img_per_s']:.1f} img/s (batch {step['batch']}, {step['steps']} steps)"
    if "summary" in step:
        return step["summary"] or "ok"
    return f"{step['seconds']:.0f} s"


@app.command()
def main(
    name: Optional[str] = typer.Option(None, help="Results folder suffix (default: the GPU's short name, e.g. h200)."),
    out: Optional[Path] = typer.Option(None, help="Results folder (default: benchmarks/results/gpu-<name>)."),
    budget_s: float = typer.Option(480.0, help="Seconds for the whole check; each step gets its share."),
    train_steps: int = typer.Option(30, help="clipsr-train steps per preset for the throughput."),
    train_batch: int = typer.Option(16, help="Batch size of those steps."),
) -> None:
    """Run every step that can run here, write check.json and check.md, print the table; exit 0."""
    if budget_s <= 0 or train_steps < 1 or train_batch < 1:
        print("error: --budget-s, --train-steps and --train-batch must be positive", file=sys.stderr)
        raise typer.Exit(2)
    start = time.perf_counter()
    env = environment()
    folder = out or BENCH / "results" / f"gpu-{name or default_name(env)}"
    steps: dict[str, dict] = {}
    usable, missing = runtime_backends(env)
    if not env["cuda"]:
        reason = "no CUDA device (torch.cuda.is_available() is False)"
        steps = {step: unavailable(reason) for step in ("gpu tests", *LATENCY_STEPS)}
        steps |= {f"train {p}": unavailable(reason) for p in TRAIN_PRESETS}
    else:
        def left(share: float) -> float:
            return min(share * budget_s, budget_s - (time.perf_counter() - start))

        with tempfile.TemporaryDirectory(prefix="clipsr-gpu-check-") as tmp:
            steps["gpu tests"] = gpu_tests(left(SHARES["gpu tests"]))
            for i, (step, backends) in enumerate(LATENCY_STEPS.items()):
                steps[step] = latency(backends + usable * (i == 0), Path(tmp) / f"latency{i}.json", left(SHARES[step]))
            for preset in TRAIN_PRESETS:
                steps[f"train {preset}"] = training(preset, train_steps, train_batch, Path(tmp), left(SHARES["train"]))
    steps |= {backend: unavailable(reason) for backend, reason in missing.items()}
    report = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "environment": env,
              "seconds": time.perf_counter() - start, "steps": steps}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "check.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    (folder / "check.md").write_text(table, encoding="utf-8")
    print(table)
    print(f"wrote {folder}/check.json and check.md", file=sys.stderr)


if __name__ == "__main__":
    app()
