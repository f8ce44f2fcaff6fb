"""Wall-clock timing that stays honest on a shared machine, and the matmul peak the achieved-FLOPs
fraction divides by.

Timing A fully, then B, lets a burst of other work land on one side only: on a shared 2-core machine
that flipped a 1.38x ratio to 3.56x. So every compared call is interleaved with the others call by call
(`interleave`), and a ratio is the median of the per-round ratios (`pairwise_ratio`), whose spread
shows how steady the machine was. The peak is measured the same way, as the best of several matmul
libraries and sizes, so no row can honestly reach more than all of it (`fraction_of_peak`)."""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch

PEAK_SIZES = (512, 1024, 2048)


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

    @classmethod
    def of(cls, samples_ms: list[float], batch: int) -> Timing:
        ms = np.asarray(samples_ms)
        return cls(batch, len(ms), float(np.median(ms)), float(np.percentile(ms, 90)))

    def to_dict(self) -> dict:
        return {**asdict(self), "per_image_ms": self.per_image_ms, "images_per_s": self.images_per_s}


def cuda_sync() -> None:
    torch.cuda.synchronize()


def interleave(calls: Mapping[str, Callable[[], object]], runs: int, warmup: int,
               sync: Mapping[str, Callable[[], None] | None] | None = None,
               clock: Callable[[], float] = time.perf_counter) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Time every call `runs` times, one call of each per round, after `warmup` untimed rounds.

    The order rotates by one each round (A B C, B C A, C A B, ...), so no call always follows the same
    neighbour. Returns ({name: milliseconds per round}, {name: error}): a call that raises is dropped
    from the later rounds and reported, the others go on. `sync[name]` (GPU) waits for queued work."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    names, sync = list(calls), sync or {}
    samples: dict[str, list[float]] = {name: [] for name in names}
    errors: dict[str, str] = {}
    for round_ in range(warmup + runs):
        shift = round_ % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            if name in errors:
                continue
            wait = sync.get(name)
            try:
                start = clock()
                calls[name]()
                if wait:
                    wait()
                elapsed = clock() - start
            except Exception as exc:  # one broken backend must not end the others' timing
                errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                continue
            if round_ >= warmup:
                samples[name].append(elapsed * 1e3)
    return {name: ms for name, ms in samples.items() if name not in errors}, errors


def measure(fn: Callable[[], object], batch: int, runs: int, warmup: int,
            sync: Callable[[], None] | None = None) -> Timing:
    """One call alone: `runs` timed calls after `warmup` untimed ones (median, p90)."""
    samples, errors = interleave({"fn": fn}, runs, warmup, {"fn": sync})
    if errors:
        raise RuntimeError(errors["fn"])
    return Timing.of(samples["fn"], batch)


def pairwise_ratio(slow_ms: list[float], fast_ms: list[float]) -> dict:
    """Per-round slow / fast (> 1: `fast` is faster): median, quartiles, min, max, number of pairs.

    Both lists must come from the same `interleave` rounds, so each pair shared the machine's state."""
    if len(slow_ms) != len(fast_ms) or not slow_ms:
        raise ValueError(f"pairwise ratios need two equally long, non-empty sample lists "
                         f"(got {len(slow_ms)} and {len(fast_ms)})")
    r = np.asarray(slow_ms) / np.asarray(fast_ms)
    q1, median, q3 = np.percentile(r, [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3), "min": float(r.min()),
            "max": float(r.max()), "pairs": int(len(r))}


def matmul_candidates(device: str, dtype: torch.dtype, sizes: tuple[int, ...]) -> dict[str, tuple[Callable, int]]:
    """{name: (call, FLOPs per call)}: square products with torch (and numpy on the CPU) at each size."""
    candidates = {}
    for n in sizes:
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        candidates[f"torch.mm {n}^2"] = ((lambda a=a, b=b: torch.mm(a, b)), 2 * n**3)
        if device == "cpu":
            x, y = a.numpy(), b.numpy()
            candidates[f"numpy.matmul {n}^2"] = ((lambda x=x, y=y: np.matmul(x, y)), 2 * n**3)
    return candidates


def matmul_peak(device: str, dtype: torch.dtype, sizes: tuple[int, ...] = PEAK_SIZES, runs: int = 5,
                candidates: dict[str, tuple[Callable, int]] | None = None) -> dict:
    """The best FLOP/s of several matmul libraries and sizes, interleaved (median of `runs` each):
    {"flops": best, "source": its name, "candidates": {name: FLOP/s}}."""
    candidates = candidates or matmul_candidates(device, dtype, sizes)
    sync = {name: cuda_sync if device == "cuda" else None for name in candidates}
    samples, errors = interleave({k: c for k, (c, _) in candidates.items()}, runs, 1, sync)
    if not samples:
        raise RuntimeError(f"no matmul ran on {device}: {errors}")
    rates = {k: candidates[k][1] / (float(np.median(ms)) / 1e3) for k, ms in samples.items()}
    best = max(rates, key=rates.get)
    return {"flops": rates[best], "source": best, "candidates": rates}


def fraction_of_peak(flops_per_s: float, peak: float) -> dict:
    """Achieved / peak, capped at 1: a measured peak that a row beats was measured too low (the machine
    was busier then), which `above_peak` flags instead of printing a fraction over 100%."""
    raw = flops_per_s / peak
    return {"fraction": min(raw, 1.0), "above_peak": raw > 1.0, "raw": raw}
