"""Peak memory and cold start of whole processes doing one upscale: `clipsr-run` (torch-free) against
the PyTorch path (`torch_upscale.py`). Each child's own rusage comes from os.wait4 (ru_maxrss is KiB on
Linux; measured by launcher.py); "to output" is launch to the output file's modification time, i.e. to
the first image written. Each path runs several times, alternating which goes first: one sample of a
process on a shared machine says little."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from clipsr_bench.timing import pairwise_ratio

LAUNCHER = Path(__file__).with_name("launcher.py")
TORCH_UPSCALE = Path(__file__).with_name("torch_upscale.py")


def measure_process(command: list[str], output: Path) -> dict:
    """peak_rss_mb, to_output_s, wall_s of `command`, which must write `output`; RuntimeError otherwise."""
    done = subprocess.run([sys.executable, str(LAUNCHER), str(output), *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"process launcher failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    stats = json.loads(done.stdout)
    if "error" in stats:
        raise RuntimeError(stats["error"])
    return stats


def runtime_command(model_dir: Path, image: Path, prompt: str, out: Path, threads: int) -> list[str]:
    """`clipsr-run` from this interpreter's environment (its console script, else the module)."""
    script = Path(sys.executable).with_name("clipsr-run")
    head = [str(script)] if script.is_file() else [sys.executable, "-c", "from clipsr_runtime.cli import main; main()"]
    return [*head, str(image), prompt, "-o", str(out), "--model", str(model_dir), "--backend", "ort-cpu",
            "--threads", str(threads)]


def torch_command(checkpoint: Path, image: Path, prompt: str, out: Path, threads: int) -> list[str]:
    return [sys.executable, str(TORCH_UPSCALE), str(checkpoint), str(image), prompt, str(out), str(threads)]


METRICS = ("peak_rss_mb", "to_output_s", "wall_s")


def summarise(samples: list[dict]) -> dict:
    """Per metric: median, min, max over the runs, and the samples themselves."""
    out = {}
    for key in METRICS:
        values = [sample[key] for sample in samples]
        out[key] = {"median": float(np.median(values)), "min": min(values), "max": max(values), "samples": values}
    return out


def compare_processes(model_dir: Path, checkpoint: Path, image: Path, prompt: str, workdir: Path,
                      threads: int, runs: int = 3) -> dict:
    """The JSON `processes` section: both paths on the CPU `runs` times, alternating which goes first,
    and the per-run torch / runtime ratios (median and spread)."""
    commands = {"runtime": (runtime_command(model_dir, image, prompt, workdir / "runtime_sr.png", threads),
                            workdir / "runtime_sr.png"),
                "torch": (torch_command(checkpoint, image, prompt, workdir / "torch_sr.png", threads),
                          workdir / "torch_sr.png")}
    samples: dict[str, list[dict]] = {name: [] for name in commands}
    for i in range(runs):
        for name in (list(commands) if i % 2 == 0 else list(commands)[::-1]):
            samples[name].append(measure_process(*commands[name]))
    rss = [r["peak_rss_mb"] for r in samples["runtime"]], [t["peak_rss_mb"] for t in samples["torch"]]
    start = [t["to_output_s"] for t in samples["torch"]], [r["to_output_s"] for r in samples["runtime"]]
    return {"runtime": summarise(samples["runtime"]), "torch": summarise(samples["torch"]), "device": "cpu",
            "runs": runs, "rss_runtime_over_torch": pairwise_ratio(*rss),
            "cold_start_torch_over_runtime": pairwise_ratio(*start)}
