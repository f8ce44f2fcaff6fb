"""The generator's per-channel text affines computed as a few batched products instead of ~50 tiny ones.

Every FiLM affine of the generator (`clipsr.blocks.Affine`) reads the same sentence vector through its own
two-layer MLP, Linear -> ReLU -> Linear, and unsqueezes the result to (B, C, 1, 1): in ONNX four nodes per
MLP, ~230 in the built-in demo, each doing a few microseconds of work, which ONNX Runtime's CPU provider
spends more time dispatching than computing. Here all MLPs that read one input become: one `Gemm` + `Relu`
over their first layers side by side, one broadcast `MatMul` + `Add` per (hidden, output) size over their
second layers stacked, and one `Split` that hands each affine its (B, C, 1, 1) under the name it had. The same
products, in other kernels: ONNX Runtime's outputs agree with the original graph's to float32 rounding
(tests/test_text_affines.py; 6e-7 on the built-in demo's SR image).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from clipsr_export.onnx_names import free_name


@dataclass
class _Mlp:
    """One Gemm -> Relu -> Gemm -> Unsqueeze(2, 3) chain: its nodes' places in the graph, its first node's
    name, its output and its float32 weights (torch Linear layout)."""

    places: tuple[int, ...]
    name: str
    output: str
    w1: np.ndarray  # (H, D)
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (O, H)
    b2: np.ndarray  # (O,)

    @property
    def sizes(self) -> tuple[int, int]:
        return self.w1.shape[0], self.w2.shape[0]


def _linear(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """(weight, bias) of a Gemm that is a torch Linear on constant float32 weights, else None."""
    if node.op_type != "Gemm" or node.domain not in ("", "ai.onnx") or len(node.input) != 3:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("transA", 0) or not attrs.get("transB", 0) or attrs.get("alpha", 1.0) != 1.0 \
            or attrs.get("beta", 1.0) != 1.0:
        return None
    weight, bias = values.get(node.input[1]), values.get(node.input[2])
    if weight is None or bias is None or weight.dtype != np.float32 or bias.dtype != np.float32 \
            or weight.ndim != 2 or bias.shape != weight.shape[:1]:
        return None
    return weight, bias


def _mlps(graph: onnx.GraphProto, values: dict[str, np.ndarray]) -> dict[str, list[_Mlp]]:
    """Every rewritable chain, by the tensor its first layer reads, in graph order."""
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    outputs = {o.name for o in graph.output}

    def only_user(node: onnx.NodeProto, op_type: str) -> onnx.NodeProto | None:
        users = consumers[node.output[0]]
        ok = len(users) == 1 and users[0].op_type == op_type and node.output[0] not in outputs
        return users[0] if ok else None

    place = {node.output[0]: i for i, node in enumerate(graph.node) if node.output}
    found: dict[str, list[_Mlp]] = defaultdict(list)
    for first in graph.node:
        layer1 = _linear(first, values)
        relu = only_user(first, "Relu") if layer1 else None
        second = only_user(relu, "Gemm") if relu else None
        layer2 = _linear(second, values) if second else None
        unsqueeze = only_user(second, "Unsqueeze") if layer2 else None
        if unsqueeze is None or len(unsqueeze.input) != 2 or layer2[0].shape[1] != layer1[0].shape[0]:
            continue
        axes = values.get(unsqueeze.input[1])
        if axes is None or sorted(int(a) for a in np.ravel(axes)) != [2, 3]:
            continue
        chain = (first, relu, second, unsqueeze)
        found[first.input[0]].append(_Mlp(tuple(place[n.output[0]] for n in chain), first.name,
                                          unsqueeze.output[0], *layer1, *layer2))
    return found


def _batched(source: str, mlps: list[_Mlp], names: set[str], graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes computing every MLP of `mlps` (all reading `source`) and each one's unsqueezed output."""
    by_size: dict[tuple[int, int], list[_Mlp]] = defaultdict(list)
    for mlp in mlps:
        by_size[mlp.sizes].append(mlp)
    ordered = [mlp for group in by_size.values() for mlp in group]
    base = ordered[0].name or source

    def new(kind: str) -> str:
        return free_name(f"{base}_text_affines_{kind}", names)

    def const(kind: str, value: np.ndarray) -> str:
        name = new(kind)
        graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    hidden, nodes = new("hidden"), []
    nodes += [helper.make_node("Gemm", [source, const("w1", np.concatenate([m.w1 for m in ordered])),
                                        const("b1", np.concatenate([m.b1 for m in ordered]))],
                               [new("layer1")], name=new("gemm"), transB=1)]
    nodes += [helper.make_node("Relu", nodes[-1].output, [hidden], name=new("relu"))]
    parts = [hidden] if len(by_size) == 1 else [new("part") for _ in by_size]
    if len(by_size) > 1:
        sizes = np.array([len(g) * h for (h, _), g in by_size.items()], np.int64)
        nodes += [helper.make_node("Split", [hidden, const("part_sizes", sizes)], parts, name=new("split"), axis=1)]
    flat = []
    for part, ((h, o), group) in zip(parts, by_size.items()):
        count = len(group)
        stacked = [new("stacked"), new("product"), new("biased"), new("flat")]
        nodes += [
            helper.make_node("Reshape", [part, const("shape", np.array([0, count, 1, h], np.int64))], [stacked[0]],
                             name=new("reshape")),  # (B, G, 1, H)
            helper.make_node("MatMul", [stacked[0], const("w2", np.stack([m.w2.T for m in group]))], [stacked[1]],
                             name=new("matmul")),  # (B, G, 1, O)
            helper.make_node("Add", [stacked[1], const("b2", np.stack([m.b2[None] for m in group]))], [stacked[2]],
                             name=new("add")),
            helper.make_node("Reshape", [stacked[2], const("shape", np.array([0, count * o], np.int64))],
                             [stacked[3]], name=new("reshape")),
        ]
        flat.append(stacked[3])
    if len(flat) > 1:
        nodes += [helper.make_node("Concat", flat, [new("all")], name=new("concat"), axis=1)]
    total = sum(m.sizes[1] for m in ordered)
    nodes += [helper.make_node("Reshape", [nodes[-1].output[0], const("shape", np.array([0, total, 1, 1], np.int64))],
                               [new("channels")], name=new("reshape"))]
    nodes += [helper.make_node("Split", [nodes[-1].output[0], const("sizes", np.array([m.sizes[1] for m in ordered],
                                                                                      np.int64))],
                               [m.output for m in ordered], name=new("split"), axis=1)]
    return nodes


def batch_text_affines(path: str | Path) -> int:
    """Rewrite, in the ONNX file at `path`, every group of two or more such MLPs reading one tensor; returns
    how many MLPs were rewritten (0: file unchanged)."""
    model = onnx.load(str(path))
    graph = model.graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    groups = {source: mlps for source, mlps in _mlps(graph, values).items() if len(mlps) > 1}
    if not groups:
        return 0
    names = set(values) | {i.name for i in graph.input} | {o for n in graph.node for o in n.output} \
        | {n.name for n in graph.node}
    replaced = {i for mlps in groups.values() for mlp in mlps for i in mlp.places}
    first = {mlps[0].places[0]: source for source, mlps in groups.items()}
    nodes = []
    for i, node in enumerate(graph.node):
        if i in first:
            nodes += _batched(first[i], groups[first[i]], names, graph)
        if i not in replaced:
            nodes.append(node)
    graph.ClearField("node")
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in used]
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return sum(len(mlps) for mlps in groups.values())
