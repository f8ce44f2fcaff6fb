"""The export's rewrite of the generator's FiLM MLPs into a few batched products: same numbers to float32
rounding, far fewer nodes, only where the pattern is."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch

from clipsr.blocks import Affine
from clipsr_export.onnx_export import GraphSpec, export_graph
from clipsr_export.text_affines import batch_text_affines


class FiLMNet(torch.nn.Module):
    """Affines of two widths reading one text vector, and a text MLP whose output is not unsqueezed."""

    def __init__(self):
        super().__init__()
        self.affines = torch.nn.ModuleList([Affine(6, 4), Affine(6, 8), Affine(6, 4)])
        self.other = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
        for p in self.parameters():  # Affine starts as the identity: give every layer weights to carry
            torch.nn.init.normal_(p, std=0.5)

    def forward(self, x, text):
        a = self.affines[2](self.affines[0](x, text), text)
        return a.sum(1) + self.affines[1](torch.cat([x, x], 1), text).mean(1), self.other(text)


def _run(path, x, text):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x, "text": text})


def test_film_mlps_become_batched_products_with_the_same_numbers(tmp_path):
    torch.manual_seed(0)
    module, x, text = FiLMNet().eval(), torch.randn(2, 4, 5, 5), torch.randn(2, 6)
    path = tmp_path / "film.onnx"
    export_graph(GraphSpec(module, (x, text), ("x", "text"), ("y", "z")), path)
    before, nodes = _run(path, x.numpy(), text.numpy()), len(onnx.load(str(path)).graph.node)
    assert batch_text_affines(path) == 6, "the gamma and beta MLPs of three affines; the other MLP stays"
    graph = onnx.load(str(path)).graph
    assert len(graph.node) <= nodes - 6 * 4 + 14
    assert [n.op_type for n in graph.node].count("Gemm") == 1 + 2, "one for all first layers, two for the other MLP"
    assert not any(i.name.startswith("affines.") for i in graph.initializer), "the replaced weights are dropped"
    for a, b in zip(before, _run(path, x.numpy(), text.numpy())):
        np.testing.assert_allclose(b, a, atol=1e-6, rtol=0)
    with torch.no_grad():  # the batch stays dynamic
        np.testing.assert_allclose(_run(path, x[:1].numpy(), text[:1].numpy())[0], module(x[:1], text[:1])[0].numpy(),
                                   atol=1e-5, rtol=0)
    assert batch_text_affines(path) == 0, "nothing left to rewrite: the file is left as it is"

