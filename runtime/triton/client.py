"""`clipsr-run --server URL`: the same run as a local one, with the model on a Triton server.

`RemoteUpscaler` is an `Upscaler` whose networks are the server's `clipsr` ensemble: reading files,
fitting (resize or tiles), alpha, grayscale, 16-bit and atomic writes stay local and identical to a
local run; only LR-size uint8 tiles and the prompt go over the wire. `clipsr-run` plans and loops as
for a local run, with DEFAULT_IN_FLIGHT files sent at once so the server can batch them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlparse

import numpy as np

from clipsr_runtime.errors import OptionError
from clipsr_runtime.images import DEFAULT_MAX_PIXELS
from clipsr_runtime.triton.configs import ENSEMBLE, TOKENIZER
from clipsr_runtime.upscaler import DEFAULT_MAX_OUTPUT_PIXELS, Upscaler, check_fitting

DEFAULT_IN_FLIGHT = 8


def parse_url(url: str) -> tuple[str, str]:
    """(protocol, host:port): grpc://host:port is gRPC; http://, or no scheme, is HTTP."""
    try:
        parsed = urlparse(url if "://" in url else f"http://{url}")
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise OptionError(f"--server {url!r} is not a URL ({exc})") from None
    if parsed.scheme not in ("http", "grpc") or not parsed.netloc:
        raise OptionError(f"--server must look like http://host:8000 or grpc://host:8001, got {url!r}")
    return parsed.scheme, parsed.netloc


def _client_module(protocol: str):
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError as exc:
        raise RuntimeError(f"--server needs tritonclient: pip install 'clipsr[serve]' ({exc})") from exc
    return module


def _message(exc: Exception) -> str:
    """tritonclient's error text without its wrapping ('[StatusCode...]', 'in ensemble ...')."""
    text = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    return (text or type(exc).__name__).strip()


@dataclass(frozen=True)
class RemoteModel:
    """What the client needs of the served model (read from the ensemble's config)."""

    name: str
    root: str  # the server's URL, where a local model names its folder
    lr_size: int
    scale: int
    max_batch: int


class RemoteUpscaler(Upscaler):
    """Upscaler on a Triton server's `clipsr` ensemble (PROMPT + IMAGE uint8 -> SR_IMAGE uint8)."""

    def __init__(self, url: str, fit: str = "auto", tile: int | None = None, tile_pad: int | None = None,
                 batch: int = 4, cache_size: int = 128, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS, outscale: float | None = None,
                 timeout: float = 60.0) -> None:
        check_fitting(fit, batch, outscale, max_output_pixels)
        self.url = url
        self.protocol, self._address = parse_url(url)
        self._tritonclient = _client_module(self.protocol)
        self._local = threading.local()  # tritonclient's HTTP client is not thread-safe: one per thread
        self._clients: list = []  # every thread's client, closed together
        self._timeout = timeout
        self.manifest = self._read_model()
        self._fit_images(fit, tile, tile_pad, batch, outscale, max_pixels, max_output_pixels)
        self._embed = lru_cache(maxsize=cache_size)(self._check_prompt)

    def _fixed_lr_shape(self) -> tuple[object, object, object]:
        """The ensemble takes square LR-size tiles, up to its max_batch_size at once."""
        m = self.manifest
        return m.max_batch, m.lr_size, m.lr_size

    @property
    def runs_on(self) -> str:
        return f"triton {self.protocol}"

    @property
    def client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._tritonclient.InferenceServerClient(self._address)
            self._clients.append(client)
        return client

    def close(self) -> None:
        """Close every thread's connection to the server (a later request opens a new one)."""
        clients, self._clients = self._clients, []
        self._local = threading.local()
        for client in clients:
            client.close()

    def _read_model(self) -> RemoteModel:
        try:
            ready = self.client.is_model_ready(ENSEMBLE)
        except Exception as exc:  # tritonclient raises its own and socket errors
            raise RuntimeError(f"cannot reach a Triton server at {self.url}: {_message(exc)}") from exc
        if not ready:
            raise RuntimeError(f"the Triton server at {self.url} has no ready model '{ENSEMBLE}' "
                               "(serve a repository written by clipsr-triton)")
        config = self.client.get_model_config(ENSEMBLE)
        if self.protocol == "grpc":
            from google.protobuf.json_format import MessageToDict

            config = MessageToDict(config.config, preserving_proto_field_name=True)
        dims = {t["name"]: [int(d) for d in t["dims"]] for t in [*config["input"], *config["output"]]}
        max_batch = int(config.get("max_batch_size", 0))
        if max_batch < 1 or len(dims.get("IMAGE", [])) != 3 or len(dims.get("SR_IMAGE", [])) != 3:
            raise RuntimeError(f"model '{ENSEMBLE}' at {self.url} is not a clipsr-triton ensemble "
                               "(batched IMAGE and SR_IMAGE of height, width, 3)")
        (height, width, _), (out_h, _, _) = dims["IMAGE"], dims["SR_IMAGE"]
        if height != width or height < 1:
            raise RuntimeError(f"model '{ENSEMBLE}' at {self.url} takes {dims['IMAGE']} images; this client "
                               "needs a fixed square LR size")
        return RemoteModel(ENSEMBLE, self.url, height, out_h // height, max_batch)

    def _infer(self, model: str, prompts: list[str], image: np.ndarray | None = None) -> np.ndarray:
        """PROMPT (+ IMAGE) to `model`; its error comes back as one ValueError naming the server."""
        tc = self._tritonclient
        text = tc.InferInput("PROMPT", [len(prompts), 1], "BYTES")
        text.set_data_from_numpy(np.array([[p.encode("utf-8")] for p in prompts], dtype=np.object_))
        inputs = [text]
        if image is not None:
            pixels = tc.InferInput("IMAGE", list(image.shape), "UINT8")
            pixels.set_data_from_numpy(image)
            inputs.append(pixels)
        output = "SR_IMAGE" if image is not None else "tokens"
        timeout = {"client_timeout": self._timeout} if self.protocol == "grpc" else {}
        try:
            result = self.client.infer(model, inputs, outputs=[tc.InferRequestedOutput(output)], **timeout)
        except tc.InferenceServerException as exc:
            raise ValueError(f"server: {_message(exc)}") from exc
        except OSError as exc:
            raise RuntimeError(f"server {self.url}: {exc}") from exc
        return result.as_numpy(output)

    def _check_prompt(self, prompt: str) -> str:
        """The server's tokenizer judges the prompt once (an empty one is one error, as locally)."""
        self._infer(TOKENIZER, [prompt])
        return prompt

    def encode_prompt(self, prompt: str) -> str:  # the ensemble encodes; the "embedding" is the prompt
        return self._embed(prompt)

    def _generate(self, lr: np.ndarray, prompt: str) -> np.ndarray:
        """(N,3,t,t) in [-1,1] -> (N,3,t*s,t*s) in [-1,1] through the ensemble, as uint8 both ways."""
        image = np.round((np.clip(lr, -1, 1) + 1) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)
        sr = self._infer(ENSEMBLE, [prompt] * len(lr), np.ascontiguousarray(image))
        return sr.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1
