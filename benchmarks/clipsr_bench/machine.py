"""What a run was measured on, and whether the machine was shared while it ran: the CPU as `lscpu`
names it, library versions, and the load average before and after (a load above the core count means
other processes competed for the cores, so absolute times are pessimistic)."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path


def cpu_name() -> str:
    """`lscpu`'s "Model name" (what a reader can check on their own machine), else /proc/cpuinfo's."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                             env={**os.environ, "LC_ALL": "C"}).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        if line.strip().startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text(encoding="utf-8").splitlines() if cpuinfo.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor() or "unknown")


def load_section(before: tuple[float, float, float], after: tuple[float, float, float],
                 cores: int | None) -> dict:
    """The 1/5/15-minute load averages around a run; `overloaded` when the 1-minute load at either end
    exceeded the core count."""
    cores = cores or 1
    return {"before": list(before), "after": list(after), "cores": cores,
            "overloaded": max(before[0], after[0]) > cores}


def machine_info() -> dict:
    import onnxruntime
    import torch

    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "cpu": cpu_name(),
            "cpu_count": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "ort_providers": onnxruntime.get_available_providers(), "python": platform.python_version()}
