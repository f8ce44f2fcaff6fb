"""Fake model folders for the runtime tests, built with onnx.helper (no torch, no weights).

text encoder: tokens (B,77) int32 -> sum over tokens of an embedding table (token id mod 97; row 0,
the padding, is zero) -> (B,D).
generator: lr (B,3,h,w) -> linear Resize x scale -> 3x3 depthwise blur (zero padded, so tiles have
edge effects the blending must hide) -> + a per-channel bias from the text embedding -> sr.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB = "bpe_simple_vocab_16e6.txt.gz"
OPSET = 18


def vocab_path() -> Path:
    """open_clip's vocabulary file, found without importing open_clip (which imports torch)."""
    spec = importlib.util.find_spec("open_clip")
    return Path(next(iter(spec.submodule_search_locations))) / VOCAB


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "fake", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def text_encoder(dim: int = 8, seed: int = 0) -> onnx.ModelProto:
    table = np.random.default_rng(seed).normal(0, 1, (97, dim)).astype(np.float32)
    table[0] = 0
    inits = [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array(97, np.int64), "n"),
             numpy_helper.from_array(np.array([1], np.int64), "axis")]
    nodes = [helper.make_node("Cast", ["tokens"], ["t64"], to=TensorProto.INT64),
             helper.make_node("Mod", ["t64", "n"], ["idx"]),
             helper.make_node("Gather", ["table", "idx"], ["emb"]),
             helper.make_node("ReduceSum", ["emb", "axis"], ["text_embedding"], keepdims=0)]
    return _model(nodes, [helper.make_tensor_value_info("tokens", TensorProto.INT32, ["batch", 77])],
                  [helper.make_tensor_value_info("text_embedding", TensorProto.FLOAT, ["batch", dim])], inits)


def generator(scale: int = 4, dim: int = 8, lr_size: int | None = None, poison: bool = False,
              seed: int = 1) -> onnx.ModelProto:
    """`lr_size` None: dynamic spatial input; `poison`: an fp16 tail that overflows to NaN."""
    proj = np.random.default_rng(seed).normal(0, 0.02, (dim, 3)).astype(np.float32)
    blur = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 16
    inits = [numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), "scales"),
             numpy_helper.from_array(np.repeat(blur[None, None], 3, axis=0), "blur"),
             numpy_helper.from_array(proj, "proj"),
             numpy_helper.from_array(np.array([2, 3], np.int64), "hw_axes")]
    nodes = [helper.make_node("Resize", ["lr", "", "scales"], ["up"], mode="linear"),
             helper.make_node("Conv", ["up", "blur"], ["smooth"], group=3, pads=[1, 1, 1, 1]),
             helper.make_node("MatMul", ["text_embedding", "proj"], ["bias2"]),
             helper.make_node("Unsqueeze", ["bias2", "hw_axes"], ["bias"]),
             helper.make_node("Add", ["smooth", "bias"], ["sr" if not poison else "sr32"])]
    if poison:
        inits.append(numpy_helper.from_array(np.array(60000, np.float16), "big"))
        nodes += [helper.make_node("Cast", ["sr32"], ["h"], to=TensorProto.FLOAT16),
                  helper.make_node("Mul", ["h", "big"], ["h1"]),
                  helper.make_node("Mul", ["h1", "big"], ["h2"]),
                  helper.make_node("Sub", ["h2", "h2"], ["h3"]),
                  helper.make_node("Cast", ["h3"], ["sr"], to=TensorProto.FLOAT)]
    h = w = lr_size if lr_size else None
    in_hw = [h, w] if lr_size else ["h", "w"]
    out_hw = [h * scale, w * scale] if lr_size else ["h_out", "w_out"]
    inputs = [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["batch", 3, *in_hw]),
              helper.make_tensor_value_info("text_embedding", TensorProto.FLOAT, ["batch", dim])]
    return _model(nodes, inputs, [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["batch", 3, *out_hw])],
                  inits)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_model_dir(root: Path, scale: int = 4, lr_size: int = 16, dim: int = 8, dynamic: bool = True,
                   fp16: str | None = None, name: str = "fake-x4") -> Path:
    """Write a complete model folder (docs/model-folder.md); fp16: None, 'ok' or 'nan'."""
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(text_encoder(dim), root / "text_encoder.onnx")
    onnx.save(generator(scale, dim, None if dynamic else lr_size), root / "generator.onnx")
    files = {"fp32": "generator.onnx"}
    text_files = {"fp32": "text_encoder.onnx"}
    if fp16:
        onnx.save(text_encoder(dim), root / "text_encoder.fp16.onnx")
        onnx.save(generator(scale, dim, None if dynamic else lr_size, poison=fp16 == "nan"),
                  root / "generator.fp16.onnx")
        files["fp16"], text_files["fp16"] = "generator.fp16.onnx", "text_encoder.fp16.onnx"
    shutil.copy(vocab_path(), root / VOCAB)
    hw = [lr_size, lr_size] if not dynamic else ["h", "w"]
    manifest = {
        "format": "clipsr-model", "format_version": 2, "name": name, "preset": "fake", "scale": scale,
        "hr_size": lr_size * scale, "value_range": [-1.0, 1.0], "opset": OPSET,
        "tokenizer": {"vocab": VOCAB, "context_length": 77, "sot_token": 49406, "eot_token": 49407,
                      "lowercase": True},
        "text_encoder": {"files": text_files,
                         "inputs": {"tokens": {"shape": ["batch", 77], "dtype": "int32"}},
                         "outputs": {"text_embedding": {"shape": ["batch", dim], "dtype": "float32"}}},
        "generator": {"files": files,
                      "inputs": {"lr": {"shape": ["batch", 3, *hw], "dtype": "float32"},
                                 "text_embedding": {"shape": ["batch", dim], "dtype": "float32"}},
                      "outputs": {"sr": {"shape": ["batch", 3, lr_size * scale, lr_size * scale],
                                         "dtype": "float32"}}},
        "files": {p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size}
                  for p in sorted(root.iterdir()) if p.name != "model.json"},
        "parity": {}, "source": {"checkpoint": "none (test fixture)"},
    }
    (root / "model.json").write_text(json.dumps(manifest, indent=1))
    return root
