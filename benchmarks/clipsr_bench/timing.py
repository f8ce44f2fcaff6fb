"""Wall-clock timing of one call after warm-up (median, p90), and a device's matmul peak measured in
the same run, which the achieved-FLOPs fraction divides by."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Timing:
    batch: int
    runs: int
    median_ms: float
    p90_ms: float

    @property
    def per_image_ms(self) -> float:
        return self.median_ms / self.batch

    @property
    def images_per_s(self) -> float:
        return 1e3 * self.batch / self.median_ms

    def to_dict(self) -> dict:
        return {**asdict(self), "per_image_ms": self.per_image_ms, "images_per_s": self.images_per_s}


def cuda_sync() -> None:
    torch.cuda.synchronize()


def measure(fn: Callable[[], object], batch: int, runs: int, warmup: int,
            sync: Callable[[], None] | None = None) -> Timing:
    """Time `fn` `runs` times after `warmup` untimed calls; `sync` (GPU) waits for queued work."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        seconds.append(time.perf_counter() - start)
    ms = np.asarray(seconds) * 1e3
    return Timing(batch, runs, float(np.median(ms)), float(np.percentile(ms, 90)))


def matmul_peak(device: str, dtype: torch.dtype, size: int, runs: int = 5) -> float:
    """FLOP/s of a square torch.mm on `device` (median of `runs`): an attainable peak, measured."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    timing = measure(lambda: torch.mm(a, b), 1, runs, 1, cuda_sync if device == "cuda" else None)
    return 2 * size**3 / (timing.median_ms / 1e3)
