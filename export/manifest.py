"""`model.json`, the manifest of a model folder, written to the runtime's contract
(`clipsr_runtime.manifest`, docs/model-folder.md): the format, version, stage names and precisions
come from there, read at call time, so the writer follows the reader.

Input/output shapes and dtypes are read back from the ONNX files rather than restated, so the manifest
cannot disagree with the graphs; every file of the folder except model.json and engines/ is listed with
its sha256 and size. The scale is stated once; the LR size is hr_size / scale.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from clipsr_runtime import manifest as contract
from clipsr_runtime.manifest import file_sha256 as sha256

VALUE_RANGE = (-1.0, 1.0)
_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
           onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64"}


def file_entries(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file in `folder` except the manifest and the engines."""
    return {p.name: {"sha256": sha256(p), "bytes": p.stat().st_size}
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != contract.MANIFEST}


def graph_io(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Inputs and outputs of an ONNX graph: name -> {"shape": [int | str], "dtype"}."""
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}

    def describe(values) -> dict[str, dict[str, Any]]:
        out = {}
        for value in values:
            if value.name in initializers:
                continue
            tensor = value.type.tensor_type
            shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
            out[value.name] = {"shape": shape, "dtype": _DTYPES.get(tensor.elem_type, str(tensor.elem_type))}
        return out

    return describe(graph.input), describe(graph.output)


def build_manifest(folder: Path, *, name: str, preset: str, scale: int, hr_size: int, opset: int,
                   tokenizer: dict[str, Any], stage_files: dict[str, dict[str, str]],
                   parity: dict[str, dict[str, float]], source: dict[str, Any],
                   engines: list[dict[str, Any]] | None = None,
                   model_card: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of the files now in `folder`; `stage_files` is stage -> precision -> file name.
    Checked against the runtime's schema before it is returned, so export cannot write a folder the
    runtime refuses."""
    manifest: dict[str, Any] = {
        "format": contract.FORMAT, "format_version": contract.FORMAT_VERSION, "name": name, "preset": preset,
        "scale": scale, "hr_size": hr_size, "value_range": list(VALUE_RANGE), "opset": opset,
        "tokenizer": tokenizer,
    }
    for stage in contract.STAGES:
        inputs, outputs = graph_io(folder / stage_files[stage]["fp32"])
        manifest[stage] = {"files": stage_files[stage], "inputs": inputs, "outputs": outputs}
    manifest["files"] = file_entries(folder)
    manifest["parity"] = parity
    manifest["source"] = source
    if engines:
        manifest["engines"] = engines
    if model_card:
        manifest["model_card"] = model_card
    contract.parse_manifest(folder, manifest)
    return manifest


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    path = folder / contract.MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path
