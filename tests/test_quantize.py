"""INT8 export (clipsr_export.quantize): only token-wise MatMul/Gemm become INT8, the gate on the model's
domain refuses a variant that changes the picture (and nothing is written), and the runtime reads an
INT8 folder like an FP16 one (`precision="int8"`)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from clipsr_export import parity, quantize
from clipsr_export.manifest import file_entries


def _mixed_graph() -> onnx.ModelProto:
    """tokens (1,4,8) -> Gemm-like MatMul; image (1,3,4,4) -> Conv and a 4-D MatMul by a constant."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(size=(3, 3, 3, 3)).astype(np.float32), "k"),
             numpy_helper.from_array(rng.normal(size=(4, 8)).astype(np.float32), "up")]
    nodes = [helper.make_node("MatMul", ["tokens", "w"], ["t_out"], name="linear"),
             helper.make_node("Conv", ["image", "k"], ["c_out"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("MatMul", ["image", "up"], ["u_out"], name="upsample")]
    graph = helper.make_graph(
        nodes, "mixed",
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, [1, 4, 8]),
         helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, [1, 4, 8]),
         helper.make_tensor_value_info("c_out", TensorProto.FLOAT, [1, 3, 4, 4]),
         helper.make_tensor_value_info("u_out", TensorProto.FLOAT, [1, 3, 4, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_only_token_matmuls_become_int8(tmp_path):
    src = tmp_path / "mixed.onnx"
    onnx.save(_mixed_graph(), str(src))
    assert quantize.image_matmuls(onnx.load(str(src))) == ["upsample"]
    out = onnx.load(str(quantize.quantize_int8(src, tmp_path / "mixed.int8.onnx")))
    ops = [n.op_type for n in out.graph.node]
    assert "MatMulInteger" in ops and "Conv" in ops  # the convolution stays FP32
    assert [n.name for n in out.graph.node if n.op_type == "MatMul"] == ["upsample"]  # the image MatMul too


def _outputs(sr: np.ndarray) -> parity.Outputs:
    return parity.Outputs(np.ones((len(sr), 4), np.float32), sr)


def test_the_gate_refuses_a_noisy_variant_with_a_clear_message(monkeypatch):
    sr = np.random.default_rng(0).uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    results = {"fp32": _outputs(sr), "int8": _outputs(sr + 0.01)}  # 0.01 on [-1, 1]: 46 dB
    monkeypatch.setattr(parity, "onnx_outputs", lambda t, g, samples, precision: results[precision])
    inputs = quantize.GateInputs(parity.Samples(np.zeros((2, 77), np.int32), sr[:, :, :2, :2]), "photos")
    with pytest.raises(quantize.QuantizationGateError, match=r"tiny 16x: .* 46\.0 dB against FP32 .*without int8"):
        quantize.check_gate(inputs, ("t", "g"), ("t8", "g8"), "tiny 16x")
    results["int8"] = _outputs(sr + 1e-4)  # 86 dB passes
    assert quantize.check_gate(inputs, ("t", "g"), ("t8", "g8"), "tiny 16x")["gate_psnr_db"] == pytest.approx(86, abs=0.1)


def test_colour_accuracy_reads_the_birds_parts_and_the_gate_holds_it_within_a_point(monkeypatch):
    from clipsr.synthbirds.render import DESCRIBED_PARTS, render, sample_spec

    specs = [sample_spec(seed) for seed in (1, 2)]
    rendered = [render(spec) for spec in specs]
    parts = [(masks, {p: getattr(spec, p) for p in DESCRIBED_PARTS}) for spec, (_, masks) in zip(specs, rendered)]
    hr = np.stack([img.astype(np.float32) / 127.5 - 1 for img, _ in rendered]).transpose(0, 3, 1, 2)
    assert quantize.colour_accuracy(hr, parts) == 1.0
    grey = np.zeros_like(hr)
    assert quantize.colour_accuracy(grey, parts) < 1.0
    results = {"fp32": _outputs(hr), "int8": _outputs(hr)}
    monkeypatch.setattr(parity, "onnx_outputs", lambda t, g, samples, precision: results[precision])
    inputs = quantize.GateInputs(parity.Samples(np.zeros((2, 77), np.int32), hr[:, :, :16, :16]), "synthbirds", parts)
    figures = quantize.check_gate(inputs, ("t", "g"), ("t8", "g8"), "demo")
    assert figures["gate_colour_accuracy_int8"] == figures["gate_colour_accuracy_fp32"] == 1.0


@pytest.fixture(scope="module")
def demo_int8(tmp_path_factory):
    """The built-in demo folder with INT8 graphs added as the exporter names them."""
    from clipsr_runtime.manifest import default_model_dir

    folder = tmp_path_factory.mktemp("demo") / "demo"
    shutil.copytree(default_model_dir(), folder)
    data = json.loads((folder / "model.json").read_text())
    for stage in ("text_encoder", "generator"):
        quantize.quantize_int8(folder / data[stage]["files"]["fp32"], folder / f"{stage}.int8.onnx")
        data[stage]["files"]["int8"] = f"{stage}.int8.onnx"
    data["files"] = file_entries(folder)
    (folder / "model.json").write_text(json.dumps(data))
    return folder


def test_the_runtime_reads_int8_like_fp16_and_keeps_the_picture(demo_int8):
    from clipsr.synthbirds.dataset import SynthBirdsDataset
    from clipsr_runtime.upscaler import Upscaler

    bird = SynthBirdsDataset(split="val", scale=16, train=False, count=1)[0]  # the demo's domain, as the gate
    lr = Image.fromarray(np.round((bird["lr"].numpy().transpose(1, 2, 0) + 1) * 127.5).astype(np.uint8))
    fp32 = np.asarray(Upscaler(demo_int8, backend="ort-cpu", precision="fp32", threads=1).upscale(lr, bird["caption"]),
                      float)
    int8 = Upscaler(demo_int8, backend="ort-cpu", precision="int8", threads=1)
    assert int8.backend.precision == "int8"
    out = np.asarray(int8.upscale(lr, bird["caption"]), float)
    assert out.shape == fp32.shape
    psnr = 10 * np.log10(255 ** 2 / max(np.mean((out - fp32) ** 2), 1e-12))  # the saved 8-bit images
    assert psnr >= quantize.MIN_PSNR_DB


@pytest.mark.slow
def test_export_writes_int8_with_its_gate_figures_or_nothing(tmp_path, monkeypatch):
    import torch
    from typer.testing import CliRunner

    from clipsr.checkpoint import save_checkpoint
    from clipsr.factory import create_model
    from clipsr_export.cli import app
    from clipsr_runtime.manifest import load_manifest

    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model("tiny", scale=16, **{"clip.pretrained": None}).eval(), tmp_path / "m.safetensors")
    args = ["--checkpoint", str(ckpt), "--precision", "fp32,int8"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "ok")])
    assert result.exit_code == 0, result.output
    manifest = load_manifest(tmp_path / "ok")
    assert manifest.generator.files["int8"] == "generator.int8.onnx"
    gate = json.loads((tmp_path / "ok" / "model.json").read_text())["parity"]["int8"]
    assert gate["gate_psnr_db"] >= quantize.MIN_PSNR_DB  # the tiny preset's CLIP: gated on SynthBirds birds
    assert abs(gate["gate_colour_accuracy_int8"] - gate["gate_colour_accuracy_fp32"]) <= 0.01
    monkeypatch.setattr(quantize, "MIN_PSNR_DB", 1000.0)
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "refused")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "fails its gate on synthbirds inputs" in result.output
    assert not (tmp_path / "refused").exists()


def test_int8_never_goes_to_tensorrt(demo_int8, monkeypatch):
    from clipsr_export.pipeline import ExportOptions
    from clipsr_runtime.backends import create_backend, resolve_backend_name, tensorrt
    from clipsr_runtime.manifest import load_manifest

    monkeypatch.setattr(tensorrt, "unavailable_reason", lambda: None)  # as on a machine with TensorRT
    assert resolve_backend_name("auto", "fp32") == "trt"
    assert resolve_backend_name("auto", "int8") in ("ort-cpu", "ort-cuda")
    with pytest.raises(ValueError, match="int8 graphs run on ONNX Runtime"):
        create_backend(load_manifest(demo_int8), "trt", precision="int8")
    steps = ExportOptions(precisions=("fp32", "int8"), trt=True).steps()
    assert "TensorRT fp32 engines" in steps and "TensorRT int8 engines" not in steps
