"""INT8 copies of the exported graphs for CPUs, written only when they keep the picture.

Dynamic quantization (ONNX Runtime's `quantize_dynamic`: INT8 weights, activations quantized per call,
so no calibration set is needed) of the token-wise MatMul/Gemm ops only: the CLIP transformers, the
prompt and text layers. Convolutions stay FP32 (measured: INT8 convolutions gave 26 dB, a broken image),
and so do the 4-D MatMuls, which are the bicubic upsampling of the image itself.

The gate: the INT8 pair (text encoder + generator) against the FP32 pair on real inputs of the model's
domain must reach `MIN_PSNR_DB`, and for a SynthBirds model keep the part-colour accuracy within
`MAX_COLOUR_POINTS` of FP32. A variant that fails raises `QuantizationGateError` and nothing is written.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from clipsr.model import CLIPSR
from clipsr_export import parity

MIN_PSNR_DB = 50.0
MAX_COLOUR_POINTS = 1.0
GATE_BIRDS = 24
QUANTIZED_OPS = ("MatMul", "Gemm")
SYNTHBIRDS_CLIP = "clipsr-tiny"  # the stand-in CLIP that only SynthBirds models use


class QuantizationGateError(ValueError):
    """The INT8 graphs change the output more than the gate allows."""


def image_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul nodes with a 4-D input (images, not tokens), by ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {v.name: len(v.type.tensor_type.shape.dim)
             for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
             if v.type.tensor_type.HasField("shape")}
    return [node.name for node in model.graph.node
            if node.op_type == "MatMul" and any(ranks.get(i) == 4 for i in node.input)]


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """Write the INT8 copy of the FP32 graph `src` to `dst` (token-wise MatMul/Gemm only)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    for i, node in enumerate(model.graph.node):  # the quantizer selects and excludes nodes by name
        node.name = node.name or f"{node.op_type}_{i}"
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the quantizer logs a hint per model about pre-processing
    try:
        quantize_dynamic(model, str(dst), op_types_to_quantize=list(QUANTIZED_OPS), weight_type=QuantType.QInt8,
                         nodes_to_exclude=image_matmuls(model))
    finally:
        logging.disable(previous)
    return Path(dst)


@dataclass(frozen=True)
class GateInputs:
    """LR images and tokens of the model's domain; for SynthBirds also each bird's part masks and colours."""

    samples: parity.Samples
    domain: str
    parts: list[tuple[dict, dict]] | None = None


def gate_inputs(model: CLIPSR, birds: int = GATE_BIRDS) -> GateInputs:
    """Held-out SynthBirds birds (validation seeds, canonical captions) for a SynthBirds model; the
    natural photos of the parity check for any other."""
    if model.config.clip.arch != SYNTHBIRDS_CLIP:
        return GateInputs(parity.sample_inputs(model), "photos")
    from clipsr.synthbirds.dataset import SynthBirdsDataset
    from clipsr.synthbirds.render import DESCRIBED_PARTS, render, sample_spec

    data = SynthBirdsDataset(split="val", scale=model.scale, train=False, count=birds)
    items = [data[i] for i in range(len(data))]
    lr = np.stack([item["lr"].numpy() for item in items]).astype(np.float32)
    tokens = model.tokenize([item["caption"] for item in items]).numpy().astype(np.int32)
    parts = []
    for item in items:
        spec = sample_spec(item["seed"])
        parts.append((render(spec)[1], {part: getattr(spec, part) for part in DESCRIBED_PARTS}))
    return GateInputs(parity.Samples(tokens=tokens, lr=lr), "synthbirds", parts)


def colour_accuracy(sr: np.ndarray, parts: list[tuple[dict, dict]]) -> float:
    """Share of described parts whose colour in the SR images (as saved, 8-bit) is the caption's."""
    from clipsr.synthbirds.measure import part_colour_accuracy

    images = np.round((np.clip(sr, -1, 1) + 1) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)
    hits = [hit for image, (masks, colours) in zip(images, parts)
            for hit in part_colour_accuracy(image, masks, colours).values()]
    return float(np.mean(hits))


def check_gate(inputs: GateInputs, fp32: tuple[Path, Path], int8: tuple[Path, Path], what: str) -> dict[str, float]:
    """Gate figures of the INT8 pair against the FP32 pair (`(text_encoder, generator)` each); raises
    QuantizationGateError when they fail."""
    reference = parity.onnx_outputs(*fp32, inputs.samples, "fp32")
    actual = parity.onnx_outputs(*int8, inputs.samples, "int8")
    figures = {"gate_psnr_db": parity.compare(reference, actual)["sr_psnr_db"]}
    bad = []
    if not figures["gate_psnr_db"] >= MIN_PSNR_DB:
        bad.append(f"{figures['gate_psnr_db']:.1f} dB against FP32 (needs >= {MIN_PSNR_DB:g})")
    if inputs.parts:
        acc32, acc8 = colour_accuracy(reference.sr, inputs.parts), colour_accuracy(actual.sr, inputs.parts)
        figures |= {"gate_colour_accuracy_fp32": acc32, "gate_colour_accuracy_int8": acc8}
        if abs(acc8 - acc32) * 100 > MAX_COLOUR_POINTS:
            bad.append(f"part-colour accuracy {acc8:.1%} vs FP32 {acc32:.1%} (needs within "
                       f"{MAX_COLOUR_POINTS:g} point)")
    if bad:
        raise QuantizationGateError(f"{what}: the INT8 variant fails its gate on {inputs.domain} inputs: "
                                    f"{'; '.join(bad)}; export without int8")
    return figures
