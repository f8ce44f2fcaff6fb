"""Float32 graphs whose weights hold float16 values, stored in half the bytes at no cost in accuracy.

A checkpoint saved as float16 (the built-in demo's) exports to float32 weights that are all exactly
float16 numbers, so half of every such weight's bytes carries nothing. Each float32 initializer whose
every value is exactly a float16 is stored as float16 and cast back to float32 by a `Cast` node under its
original name: the graph computes the same numbers bit for bit, and the runtimes fold the cast when they
load the graph (ONNX Runtime's constant folding, OpenVINO's and TensorRT's parsers), so nothing changes
at inference time either. Weights that are not exact float16 numbers (trained in float32, or computed at
export such as interpolation matrices) stay float32.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from clipsr_export.onnx_names import free_name

MIN_ELEMENTS = 1024  # below this a Cast node costs about what it saves


def exact_fp16_values(values: np.ndarray) -> bool:
    """Whether every value survives float32 -> float16 -> float32 unchanged (NaN never does)."""
    return bool(np.array_equal(values.astype(np.float16).astype(np.float32), values))


def store_exact_fp16(path: str | Path) -> int:
    """Rewrite the ONNX file at `path` in place as described above; returns the bytes saved (0: unchanged)."""
    path = Path(path)
    model = onnx.load(str(path))
    graph = model.graph
    inputs = {i.name for i in graph.input}  # an initializer that is also an input can be fed: keep its type
    taken = {i.name for i in graph.initializer} | {o for n in graph.node for o in n.output} | inputs
    kept, casts, saved = [], [], 0
    for init in graph.initializer:
        values = numpy_helper.to_array(init) if init.data_type == onnx.TensorProto.FLOAT else None
        if values is None or init.name in inputs or values.size < MIN_ELEMENTS or not exact_fp16_values(values):
            kept.append(init)
            continue
        half_name = free_name(f"{init.name}_fp16", taken)
        kept.append(numpy_helper.from_array(values.astype(np.float16), half_name))
        casts.append(helper.make_node("Cast", [half_name], [init.name], name=free_name(f"{init.name}_cast", taken),
                                      to=onnx.TensorProto.FLOAT))
        saved += values.size * 2
    if not casts:
        return 0
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    graph.ClearField("node")
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return saved

