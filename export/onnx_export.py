"""Trace the two stages of a CLIP-SR model to ONNX: the text encoder and the generator, kept apart
because the runtime encodes a prompt once and runs the generator once per image (or tile).

Torch's dynamo exporter is tried first (it handles the open_clip towers, EOT argmax pooling included);
when it fails, the legacy TorchScript exporter is used with the fused MHA fast path off (it cannot
trace that path). Which exporter produced a file is returned so the manifest can say it.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from clipsr.model import CLIPSR
from clipsr_runtime import manifest as contract

DEFAULT_OPSET = 18


class _PooledText(nn.Module):
    """The text tower with only the pooled embedding as output (the generator uses nothing else)."""

    def __init__(self, model: CLIPSR):
        super().__init__()
        self.text_encoder = model.text_encoder

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(tokens)[0]


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX graph to export: the module, sample arguments and the names of its I/O."""

    module: nn.Module
    args: tuple[torch.Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]


def _io_names(stage: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The stage's input and output names, in the order of the module's arguments: the runtime's."""
    io = contract.STAGE_IO[stage]
    return tuple(io["inputs"]), tuple(io["outputs"])


def text_encoder_spec(model: CLIPSR, tokens: torch.Tensor) -> GraphSpec:
    """tokens (B,77) int32 -> text_embedding (B,D)."""
    return GraphSpec(_PooledText(model).eval(), (tokens.to(torch.int32),), *_io_names("text_encoder"))


def generator_spec(model: CLIPSR, lr: torch.Tensor, text_embedding: torch.Tensor) -> GraphSpec:
    """lr (B,3,h,w), text_embedding (B,D) -> sr (B,3,256,256)."""
    return GraphSpec(model.generator.eval(), (lr, text_embedding), *_io_names("generator"))


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and warnings of their own; the CLI shows its own progress."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)


def _export_dynamo(spec: GraphSpec, path: Path, opset: int) -> None:
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(spec.module, spec.args, str(path), dynamo=True, opset_version=opset,
                      input_names=list(spec.input_names), output_names=list(spec.output_names),
                      dynamic_shapes=tuple({0: batch} for _ in spec.args),
                      external_data=False, verbose=False)


def _export_legacy(spec: GraphSpec, path: Path, opset: int) -> None:
    axes = {name: {0: "batch"} for name in (*spec.input_names, *spec.output_names)}
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        torch.onnx.export(spec.module, spec.args, str(path), dynamo=False, opset_version=opset,
                          input_names=list(spec.input_names), output_names=list(spec.output_names),
                          dynamic_axes=axes)
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def export_graph(spec: GraphSpec, path: str | Path, opset: int = DEFAULT_OPSET) -> str:
    """Write `spec` as one self-contained ONNX file with a dynamic batch; returns the exporter used
    ("dynamo" or "legacy"). Both failing raises RuntimeError naming both causes."""
    path = Path(path)
    with torch.no_grad(), _quiet():
        try:
            _export_dynamo(spec, path, opset)
            return "dynamo"
        except Exception as dynamo_err:  # the exporter raises many kinds; the fallback is the answer
            path.unlink(missing_ok=True)
            try:
                _export_legacy(spec, path, opset)
                return "legacy"
            except Exception as legacy_err:
                path.unlink(missing_ok=True)
                raise RuntimeError(f"cannot export {path.name}: dynamo exporter: {_first_line(dynamo_err)}; "
                                   f"legacy exporter: {_first_line(legacy_err)}") from legacy_err


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"
