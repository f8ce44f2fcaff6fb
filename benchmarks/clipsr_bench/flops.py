"""FLOPs of one call with torch's FlopCounterMode (matmuls and convolutions; element-wise work is not
counted, so achieved fractions are slight underestimates)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_flops(fn: Callable[[], object]) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())
