"""`python benchmarks/runtime.py`: Table III of the CLIP-SR paper (parameters, time per image) for this
toolkit on this machine, and where the time goes: every backend present, text encoder and generator
apart, batch 1 and a larger batch, ratios of calls interleaved in the same run, FLOPs against a
measured peak, process memory and cold start, and the load average around it all.

Prints rich tables and writes everything as JSON. `--quick` is the short CPU run the tests use."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))  # clipsr_bench, beside this script

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=__doc__.splitlines()[0])
_err = Console(stderr=True, highlight=False, soft_wrap=True)
ALL = "torch,torch-compile,torch-fp16,torch-cudagraphs,ort-cpu,ort-cuda,ort-trt,trt,openvino"
QUICK = {"preset": "tiny", "runs": 5, "warmup": 2, "batch": "1,4", "process_runs": 2}
FULL = {"preset": "paper-b32", "runs": 20, "warmup": 5, "batch": "1,8", "process_runs": 5}


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(sorted({int(b) for b in text.split(",") if b.strip()}))
    except ValueError:
        raise ValueError(f"--batch takes comma-separated integers, got {text!r}") from None


@app.command()
def main(
    preset: Optional[str] = typer.Option(None, help="tiny | paper-b32 | cub-reference for the latency rows "
                                                    "(default: paper-b32; --quick: tiny). paper-b32's parameters "
                                                    "are always counted."),
    scale: Optional[int] = typer.Option(None, help="4 | 8 | 16 (LR 64/32/16 px -> 256 px; default 16, "
                                                   "--reference: 4)."),
    reference: bool = typer.Option(False, "--reference", help="The authors' released generator (preset "
                                                              "cub-reference, 4x, random weights): its parameter "
                                                              "counts (live / dead / CLIP text / total) and latency."),
    backends: str = typer.Option(ALL, help="Comma list; those that cannot run here are reported with the reason."),
    batch: Optional[str] = typer.Option(None, help="Comma list of batch sizes (default 1,8; --quick: 1,4)."),
    runs: Optional[int] = typer.Option(None, help="Timed calls per measurement (default 20; --quick: 5)."),
    warmup: Optional[int] = typer.Option(None, help="Untimed calls first (default 5; --quick: 2)."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch and ONNX Runtime alike "
                                                     "(default: torch.get_num_threads())."),
    json_file: Path = typer.Option(Path("benchmark-results.json"), "--json", help="Where to write the JSON."),
    quick: bool = typer.Option(False, "--quick", help="CPU only, tiny preset, few runs: under a minute."),
    processes: bool = typer.Option(True, help="Measure clipsr-run vs PyTorch as whole processes."),
    process_runs: Optional[int] = typer.Option(None, help="Runs of each whole process (default 5; --quick: 2)."),
    ort_sweep: Optional[bool] = typer.Option(None, help="Try ONNX Runtime session settings (default: on, "
                                                        "off with --quick)."),
) -> None:
    """Run the benchmark, print the tables, write the JSON."""
    import torch

    from clipsr_bench.report import print_report
    from clipsr_bench.suite import Settings, run_suite
    from clipsr_bench.targets import parse_backends

    from clipsr.factory import REFERENCE_PRESET as REFERENCE

    defaults = QUICK if quick else FULL
    if reference and preset not in (None, REFERENCE):
        _err.print(f"error: --reference is preset {REFERENCE}, not {preset}", markup=False)
        raise typer.Exit(2)
    try:
        settings = Settings(
            preset=REFERENCE if reference else preset or defaults["preset"], scale=scale or (4 if reference else 16),
            backends=tuple(parse_backends(backends)),
            batches=_sizes(batch or defaults["batch"]), runs=defaults["runs"] if runs is None else runs,
            warmup=defaults["warmup"] if warmup is None else warmup, threads=threads or torch.get_num_threads(),
            cpu_only=quick, processes=processes, ort_sweep=not quick if ort_sweep is None else ort_sweep,
            process_runs=process_runs or defaults["process_runs"])
        with _err.status("starting") as status:
            result = run_suite(settings, on_step=lambda step: status.update(step))
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    except (ValueError, OSError, RuntimeError) as exc:
        _err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    print_report(result)
    _err.print(f"wrote {json_file}", markup=False)


if __name__ == "__main__":
    app()
