"""The export's DepthToSpace -> grouped ConvTranspose rewrite: same numbers bit for bit, only where it applies."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

from clipsr_export.depth_to_space import depth_to_space_as_conv_transpose, one_hot_kernel
from clipsr_export.onnx_export import GraphSpec, export_graph


class ShuffleNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 12, 3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(2)
        self.shuffle4 = torch.nn.PixelShuffle(4)

    def forward(self, x):
        return self.shuffle(self.conv(x)), self.shuffle4(torch.cat([x] * 16, dim=1))


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})


def test_pixel_shuffles_become_grouped_conv_transposes_with_the_same_numbers(tmp_path):
    torch.manual_seed(0)
    module, x = ShuffleNet().eval(), torch.randn(2, 3, 8, 8)
    path = tmp_path / "shuffle.onnx"
    export_graph(GraphSpec(module, (x,), ("x",), ("y", "y4")), path)
    before = _run(path, x.numpy())
    assert depth_to_space_as_conv_transpose(path) == 2
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "DepthToSpace" not in ops and ops.count("ConvTranspose") == 2
    for a, b in zip(before, _run(path, x.numpy())):
        assert np.array_equal(a, b)
    with torch.no_grad():
        # the batch stays dynamic (ONNX Runtime's convolution rounds differently from PyTorch's)
        np.testing.assert_allclose(_run(path, x[:1].numpy())[0], module(x[:1])[0].numpy(), atol=1e-6, rtol=0)
    assert depth_to_space_as_conv_transpose(path) == 0, "nothing left to rewrite: the file is left as it is"


def test_one_hot_kernel_picks_pixel_shuffles_channel_order():
    kernel = one_hot_kernel(channels=2, block=2)
    assert kernel.shape == (8, 1, 2, 2) and kernel.sum() == 8
    assert kernel[4 + 1 * 2 + 0, 0, 1, 0] == 1  # channel c * 4 + 2 i + j -> offset (i, j) of output channel c


def test_dcr_mode_and_unknown_channels_are_left_alone(tmp_path):
    nodes = [helper.make_node("DepthToSpace", ["x"], ["a"], blocksize=2, mode="DCR"),
             helper.make_node("DepthToSpace", ["z"], ["b"], blocksize=2, mode="CRD")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4]),
                                           helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, "c", 4, 4])],
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 2, 8, 8]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, None)])
    path = tmp_path / "dcr.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    written = path.read_bytes()
    assert depth_to_space_as_conv_transpose(path) == 0 and path.read_bytes() == written
