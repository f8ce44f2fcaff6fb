"""Training metrics per logged step, as JSON lines in the run folder (and TensorBoard scalars when
tensorboard is installed); shared by the SR and CLIP training loops."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

from clipsr_runtime.atomic import atomic_write

METRICS_FILE = "metrics.jsonl"


class MetricsLogger:
    def __init__(self, out: Path, enabled: bool, append: bool):
        self.enabled = enabled
        self.file = open(out / METRICS_FILE, "a" if append else "w") if enabled else None
        self.tb = None
        if enabled:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(out / "tensorboard"))

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def truncate_metrics(out: Path, step: int) -> None:
    """Keep the lines up to `step`: a resumed run logs the later steps again (a line cut short by a
    kill goes too)."""
    path = out / METRICS_FILE
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError, TypeError, KeyError):
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
    atomic_write(path, lambda tmp: tmp.write_text("".join(kept)))
