"""Peak memory and cold start of whole processes doing one upscale: `clipsr-run` (torch-free) against
the PyTorch path (`torch_upscale.py`). Each child's own rusage comes from os.wait4 (ru_maxrss is KiB on
Linux; measured by launcher.py); "to output" is launch to the output file's modification time, i.e. to
the first image written."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def compare_processes(model_dir: Path, checkpoint: Path, image: Path, prompt: str, workdir: Path,
                      threads: int) -> dict:
    """The JSON `processes` section: both paths on the CPU, and runtime / PyTorch ratios."""
    runtime = measure_process(runtime_command(model_dir, image, prompt, workdir / "runtime_sr.png", threads),
                              workdir / "runtime_sr.png")
    pytorch = measure_process(torch_command(checkpoint, image, prompt, workdir / "torch_sr.png", threads),
                              workdir / "torch_sr.png")
    return {"runtime": runtime, "torch": pytorch, "device": "cpu",
            "rss_runtime_over_torch": runtime["peak_rss_mb"] / pytorch["peak_rss_mb"],
            "cold_start_torch_over_runtime": pytorch["to_output_s"] / runtime["to_output_s"]}
