"""The one interface every inference backend offers the upscaler."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (library or device missing)."""


class BackendClosedError(RuntimeError):
    """A backend was used after `close()`."""


class Backend(Protocol):
    """Runs the two graphs of a model folder; arrays in and out are numpy, named as in model.json.
    A context manager; `close()` frees sessions, engines and device memory (and may be called twice)."""

    name: str
    precision: str

    def run_text(self, tokens: np.ndarray) -> np.ndarray:
        """tokens (B,77) int32 -> text_embedding (B,D) float32."""
        ...

    def run_generator(self, lr: np.ndarray, text_embedding: np.ndarray) -> np.ndarray:
        """lr (B,3,h,w) float32 in [-1,1], text_embedding (B,D) -> sr (B,3,h*s,w*s) float32."""
        ...

    def close(self) -> None:
        ...

    def __enter__(self) -> "Backend":
        ...

    def __exit__(self, *exc_info) -> None:
        ...
