"""clipsr.upsample: the bicubic global skip and the locator's bilinear upsampling as two matrix products must
equal torch's, stay out of checkpoints, and export to MatMuls (no Resize) with the generator."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipsr.upsample import MatrixUpsample, bicubic_matrix


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
@pytest.mark.parametrize("size,scale", [(16, 16), (32, 8), (64, 4), (5, 3), (1, 2)])
def test_equals_torch_within_float_rounding(size, scale, mode):
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size)) * 2 - 1
    expected = F.interpolate(x, scale_factor=scale, mode=mode, align_corners=False)
    actual = MatrixUpsample(size, scale, mode)(x)
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max() < 2e-6


def test_rows_are_partitions_of_unity_with_edge_taps_clamped():
    m = bicubic_matrix(4, 4)
    assert m.shape == (16, 4)
    assert abs(m.sum(1) - 1).max() < 1e-12  # a flat image stays flat
    assert m[0, 0] > 1  # the first outputs lean on the repeated edge sample (overshoot of Keys' cubic)
    with pytest.raises(ValueError, match="size and scale"):
        bicubic_matrix(0, 4)
    with pytest.raises(ValueError, match="mode must be one of"):
        MatrixUpsample(4, 4, "nearest")


def test_the_generator_keeps_its_checkpoint_keys_and_follows_dtype():
    from clipsr.factory import create_model

    model = create_model("tiny", scale=16, **{"clip.pretrained": None})
    assert not any("bicubic" in key for key in model.state_dict())
    assert model.generator.bicubic.matrix.shape == (256, 16)
    assert model.generator.half().bicubic.matrix.dtype == torch.float16


def test_the_exported_graph_has_matmuls_not_a_resize(tmp_path):
    import onnx

    from clipsr.factory import create_model
    from clipsr_export.onnx_export import GraphSpec, export_graph

    module = MatrixUpsample(16, 16).eval()
    path = tmp_path / "up.onnx"
    export_graph(GraphSpec(module, (torch.zeros(1, 3, 16, 16),), ("lr",), ("up",)), path)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "MatMul" in ops and "Resize" not in ops
    locator = create_model("synthbirds", scale=16, **{"clip.pretrained": None}).generator.locator.eval()
    export_graph(GraphSpec(_Choice(locator), (torch.zeros(1, 3, 16, 16),), ("lr",), ("choice",)), path)
    assert "Resize" not in {node.op_type for node in onnx.load(str(path)).graph.node}, "the locator's too"


class _Choice(torch.nn.Module):
    def __init__(self, locator):
        super().__init__()
        self.locator = locator

    def forward(self, lr):
        return self.locator.choice(lr)
