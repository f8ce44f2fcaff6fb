"""The one interface every inference backend offers the upscaler, and what they all share: closing
(idempotent, as a context manager, refusing use afterwards) and the check that a graph's inputs and
outputs are the ones `model.json` declares. A backend only says how to run and how to free its graphs."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from clipsr_runtime.manifest import STAGE_IO, Stage


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (library or device missing)."""


class BackendClosedError(RuntimeError):
    """A backend was used after `close()`."""


def _fixed(dim: object) -> int | None:
    """A dimension as a backend reports it: an int when fixed; None, a name or -1 when free."""
    return dim if isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 else None


def check_graph_io(path: Path | str, stage: str, inputs: Mapping[str, Sequence[object]], outputs: set[str],
                   declared: Stage | None = None) -> None:
    """Refuse a graph whose tensor names differ from the contract's, or (given `declared`, the
    manifest's stage) whose fixed input dimensions contradict the manifest: a model.json that calls a
    fixed 16 px input dynamic would otherwise fail deep inside the backend on the first other size."""
    spec = STAGE_IO[stage]
    if (set(inputs), outputs) != (set(spec["inputs"]), set(spec["outputs"])):
        raise ValueError(f"{path}: graph I/O {sorted(inputs)} -> {sorted(outputs)} does not match "
                         f"model.json {sorted(spec['inputs'])} -> {sorted(spec['outputs'])}")
    if declared is None:
        return
    for name, shape in inputs.items():
        claimed = declared.inputs[name]["shape"]
        graph = [_fixed(d) for d in shape]
        if len(graph) != len(claimed) or any(g is not None and g != c for g, c in zip(graph, claimed)):
            shown = [d if d is not None else "?" for d in graph]
            raise ValueError(f"{path}: the graph's input {name} has shape {shown} (? = free), model.json "
                             f"declares {claimed}: the manifest does not describe this graph")


class Backend(abc.ABC):
    """Runs the two graphs of a model folder; arrays in and out are numpy, named as in model.json.
    A context manager; `close()` frees sessions, engines and device memory (and may be called twice);
    running after it raises BackendClosedError."""

    def __init__(self, name: str, precision: str) -> None:
        self.name, self.precision = name, precision
        self._closed = False

    def _require_open(self) -> None:
        if getattr(self, "_closed", False):
            raise BackendClosedError(f"the {self.name} backend was closed")

    def run_text(self, tokens: np.ndarray) -> np.ndarray:
        """tokens (B,77) int32 -> text_embedding (B,D) float32."""
        self._require_open()
        return self._run_text(tokens.astype(np.int32, copy=False))

    def run_generator(self, lr: np.ndarray, text_embedding: np.ndarray) -> np.ndarray:
        """lr (B,3,h,w) float32 in the model's value range, text_embedding (B,D) -> sr (B,3,h*s,w*s)."""
        self._require_open()
        return self._run_generator(lr.astype(np.float32, copy=False), text_embedding.astype(np.float32, copy=False))

    @abc.abstractmethod
    def _run_text(self, tokens: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def _run_generator(self, lr: np.ndarray, text_embedding: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def _release(self) -> None:
        """Free what the backend holds; runs once, also on a backend whose constructor failed halfway."""

    def close(self) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self._release()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
