"""Float32 graphs store exact-float16 weights as float16 + Cast and compute the same numbers bit for bit."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from clipsr_export.exact_fp16 import MIN_ELEMENTS, exact_fp16_values, store_exact_fp16


def _graph(path, exact: np.ndarray, inexact: np.ndarray) -> None:
    nodes = [helper.make_node("MatMul", ["x", "w_exact"], ["h"]), helper.make_node("MatMul", ["h", "w_inexact"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", exact.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", inexact.shape[1]])],
        [numpy_helper.from_array(exact, "w_exact"), numpy_helper.from_array(inexact, "w_inexact")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def _run(path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_exact_weights_halve_and_outputs_stay_bit_identical(tmp_path):
    rng = np.random.default_rng(0)
    exact = rng.normal(size=(64, 64)).astype(np.float16).astype(np.float32)
    inexact = rng.normal(size=(64, 32)).astype(np.float32) + np.float32(1e-4)  # not all float16 numbers
    assert exact_fp16_values(exact) and not exact_fp16_values(inexact)
    path = tmp_path / "g.onnx"
    _graph(path, exact, inexact)
    x = rng.normal(size=(3, 64)).astype(np.float32)
    before, size_before = _run(path, x), path.stat().st_size
    saved = store_exact_fp16(path)
    assert saved == exact.size * 2
    assert size_before - path.stat().st_size >= saved - 200  # the Cast node's few bytes
    np.testing.assert_array_equal(_run(path, x), before)
    model = onnx.load(str(path))
    dtypes = {i.name: i.data_type for i in model.graph.initializer}
    assert dtypes == {"w_exact_fp16": TensorProto.FLOAT16, "w_inexact": TensorProto.FLOAT}
    assert [(n.op_type, list(n.output)) for n in model.graph.node][0] == ("Cast", ["w_exact"])


def test_nothing_to_store_leaves_the_file_untouched(tmp_path):
    rng = np.random.default_rng(1)
    small = rng.normal(size=(8, 8)).astype(np.float16).astype(np.float32)  # exact, but under MIN_ELEMENTS
    assert small.size < MIN_ELEMENTS
    path = tmp_path / "g.onnx"
    _graph(path, small, np.full((8, 4), np.nan, np.float32))  # NaN is never "exact"
    content = path.read_bytes()
    assert store_exact_fp16(path) == 0
    assert path.read_bytes() == content
