"""The page's model folders: one `Upscaler` per (folder, backend, precision), opened on first use and
reused by every request after it, all closed together when the server stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clipsr_runtime.manifest import default_model_dir, load_manifest
from clipsr_runtime.upscaler import Upscaler, check_fitting

BUILT_IN = "built-in"


class UpscalerPool:
    """Model folders by label ("built-in", then each folder given). Loading a folder's manifest at start
    checks it (schema, sha256 of every file), so a bad `--model` stops the command before the page is up.
    One request at a time uses an upscaler: its lock covers the per-request `outscale`."""

    def __init__(self, folders: list[Path], max_output_pixels: int) -> None:
        self.folders: dict[str, Path] = {BUILT_IN: default_model_dir()}
        for folder in folders:
            label = str(folder)
            if label in self.folders:
                raise ValueError(f"--model {folder} is given twice")
            self.folders[label] = folder
        self.manifests = {label: load_manifest(path) for label, path in self.folders.items()}
        self.max_output_pixels = max_output_pixels
        self._open: dict[tuple[str, str, str], tuple[Upscaler, threading.Lock]] = {}
        self._guard = threading.Lock()

    def describe(self, label: str) -> str:
        """A label of the page's model list, e.g. "built-in (synthbirds-tiny-x16, 16x)"."""
        m = self.manifests[label]
        return f"{label} ({m.name}, {m.scale}x)"

    def _get(self, label: str, backend: str, precision: str) -> tuple[Upscaler, threading.Lock]:
        if label not in self.folders:
            raise ValueError(f"unknown model {label!r}: choose one of {', '.join(self.folders)}")
        key = (label, backend, precision)
        with self._guard:  # two first requests for one key open it once
            if key not in self._open:
                upscaler = Upscaler(self.folders[label], backend=backend, precision=precision,
                                    max_output_pixels=self.max_output_pixels)
                self._open[key] = (upscaler, threading.Lock())
            return self._open[key]

    def open(self, label: str, backend: str = "auto", precision: str = "fp32") -> None:
        """Open the upscaler now, so a broken folder or backend shows at start rather than on a request."""
        self._get(label, backend, precision)

    @contextmanager
    def use(self, label: str, backend: str, precision: str, outscale: float | None) -> Iterator[Upscaler]:
        """The upscaler for a request, set to its `outscale` (None: the model's scale) while it is held."""
        check_fitting("auto", 1, outscale, self.max_output_pixels)
        upscaler, lock = self._get(label, backend, precision)
        with lock:
            upscaler.outscale = outscale
            yield upscaler

    def close(self) -> None:
        """Free every backend's sessions (and GPU memory); the pool is empty afterwards."""
        with self._guard:
            for upscaler, lock in self._open.values():
                with lock:
                    upscaler.close()
            self._open.clear()
