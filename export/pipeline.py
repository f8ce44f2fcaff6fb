"""The export as a whole: model -> staged folder (ONNX, FP16, parity, vocabulary, engines, manifest) ->
moved into place. Every check that can fail fast (options, TensorRT, the destination) runs before the
slow tracing, and any failure after it leaves nothing behind (`writer.staged_folder`)."""
from __future__ import annotations

import contextlib
import importlib.metadata
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch

from clipsr.checkpoint import DEMO_CHECKPOINT
from clipsr.config import HR_SIZE, check_scale
from clipsr.factory import create_model
from clipsr.model import CLIPSR
from clipsr.run_folder import CHECKPOINT_FILE
from clipsr.train_config import CONFIG_FILE
from clipsr_export import depth_to_space, exact_fp16, fp16, onnx_export, parity, quantize, tensorrt, text_affines
from clipsr_export.manifest import build_manifest, sha256, write_manifest
from clipsr_export.writer import staged_folder
from clipsr_runtime import manifest as contract
from clipsr_runtime.backends import TRT_SKIPS
from clipsr_runtime.backends import tensorrt as runtime_trt

DEFAULT_SCALE = 16
DEMO_SCALE = 16  # the scale of the built-in demo checkpoint
VOCAB = "bpe_simple_vocab_16e6.txt.gz"
# Progress step names (the CLI's bar counts them)
STEP_ONNX = {"text_encoder": "text encoder -> ONNX", "generator": "generator -> ONNX"}
STEP_FP16 = "FP16 conversion"
STEP_INT8 = "INT8 quantization and gate"
STEP_PARITY = "{} parity vs PyTorch"
STEP_TRT = "TensorRT {} engines"
STEP_MANIFEST = "manifest"


@dataclass(frozen=True)
class ExportOptions:
    precisions: tuple[str, ...] = ("fp32", "fp16")
    opset: int = onnx_export.DEFAULT_OPSET
    trt: bool = False
    batch_max: int = 4  # the runtime's default --batch, so its TensorRT backend finds these engines
    name: str | None = None
    overwrite: bool = False  # replace an existing model folder at the destination

    def __post_init__(self) -> None:
        unknown = [p for p in self.precisions if p not in contract.PRECISIONS]
        if unknown or "fp32" not in self.precisions:
            raise ValueError(f"precisions must include fp32 and come from {', '.join(contract.PRECISIONS)}, "
                             f"got {','.join(self.precisions)}")
        if not 13 <= self.opset <= 21:
            raise ValueError(f"opset must be between 13 and 21 (18 recommended), got {self.opset}")
        if self.batch_max < 1:
            raise ValueError(f"batch-max must be >= 1, got {self.batch_max}")
        if self.name is not None:
            contract.check_name(self.name)

    def trt_precisions(self) -> list[str]:
        """The precisions that get TensorRT engines (with `trt`)."""
        return [p for p in self.precisions if p not in TRT_SKIPS]

    def steps(self) -> list[str]:
        """Names of the steps `export_model` reports, in order (for progress bars)."""
        steps = [STEP_ONNX[stage] for stage in contract.STAGES]
        steps += [STEP_FP16] * ("fp16" in self.precisions)
        steps += [STEP_INT8] * ("int8" in self.precisions)
        steps += [STEP_PARITY.format(p) for p in self.precisions]
        steps += [STEP_TRT.format(p) for p in self.trt_precisions()] * self.trt
        return steps + [STEP_MANIFEST]


@dataclass
class ExportResult:
    folder: Path
    manifest: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def demo_checkpoint(scale: int) -> Path:
    """The built-in demo checkpoint of `scale`; a clear error when there is none yet."""
    check_scale(scale)
    if scale != DEMO_SCALE:
        raise ValueError(f"there is no built-in {scale}x demo model (built in: {DEMO_SCALE}x): pass "
                         "--checkpoint PATH (or --random for an untrained model)")
    if not DEMO_CHECKPOINT.is_file():
        raise FileNotFoundError(f"the built-in demo checkpoint {DEMO_CHECKPOINT} does not exist yet: pass "
                                "--checkpoint PATH (or --random for an untrained model)")
    return DEMO_CHECKPOINT


def load_model(checkpoint: str | Path | None, preset: str | None, scale: int | None,
               random: bool, clip_weights: str | None = None) -> tuple[CLIPSR, str]:
    """Which model to export, built by the factory, and a description of its source for the manifest.

    A checkpoint (clipsr's, or the authors' with `clip_weights`) carries its own scale: `scale`, when
    given, is only checked against it. Without a checkpoint, the built-in demo of `scale` (default 16x);
    `random` builds an untrained model of `preset` at `scale` (benchmarks and tests only; CLIP weights
    random too, nothing is downloaded)."""
    if random:
        if checkpoint is not None:
            raise ValueError("--random and --checkpoint exclude each other")
        torch.manual_seed(0)
        return create_model(preset or "tiny", scale=scale or DEFAULT_SCALE,
                            **{"clip.pretrained": clip_weights}).eval(), "random"
    path = Path(checkpoint) if checkpoint is not None else demo_checkpoint(scale or DEFAULT_SCALE)
    return create_model(path, scale=scale, preset=preset, clip_weights=clip_weights).eval(), str(path)


def _source(source: str) -> dict[str, str]:
    """Where the weights came from; a checkpoint's digest ties the folder to the exact file."""
    if source == "random":
        return {"checkpoint": source}
    return {"checkpoint": Path(source).name, "checkpoint_sha256": sha256(Path(source))}


def default_name(checkpoint: str | Path | None, preset: str | None, scale: int | None, random: bool) -> str:
    """The model's name (and default output folder), known before the model loads: the checkpoint's
    stem, or for a training run's checkpoint the run folder's name."""
    if random:
        return f"random-{preset or 'tiny'}-x{scale or DEFAULT_SCALE}"
    path = Path(checkpoint) if checkpoint is not None else DEMO_CHECKPOINT
    if path.stem != Path(CHECKPOINT_FILE).stem:
        return path.stem
    path = path.absolute()
    run = next((p for p in path.parents if (p / CONFIG_FILE).is_file()), path.parent)  # a training run folder
    return run.name


def _model_name(model: CLIPSR, source: str) -> str:
    return default_name(None if source == "random" else source, model.config.preset, model.scale,
                        source == "random")


def onnx_file(stage: str, precision: str) -> str:
    """text_encoder.onnx for fp32, text_encoder.fp16.onnx for fp16 (and so on for any precision)."""
    return f"{stage}.onnx" if precision == "fp32" else f"{stage}.{precision}.onnx"


def vocab_file() -> Path:
    path = Path(open_clip.__file__).parent / VOCAB
    if not path.is_file():
        raise FileNotFoundError(f"open_clip's BPE vocabulary {path} is missing (reinstall open_clip_torch)")
    return path


def _tokenizer(model: CLIPSR) -> dict[str, Any]:
    tok = model.tokenizer
    if not isinstance(tok, open_clip.tokenizer.SimpleTokenizer):
        raise ValueError(f"the runtime reads CLIP's BPE tokenizer only; this model uses {type(tok).__name__}")
    return {"vocab": VOCAB, "context_length": model.text_encoder.context_length,
            "sot_token": tok.sot_token_id, "eot_token": tok.eot_token_id, "lowercase": True}


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"clipsr_version": _installed_version("clipsr"), "torch": torch.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "onnxconverter_common": _installed_version("onnxconverter-common")}


def _installed_version(name: str) -> str:
    """A package's version; a source checkout on PYTHONPATH (not pip-installed) has none to read."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed (source checkout)"


class _Steps:
    """Announces each step as it starts (progress) and times it."""

    def __init__(self, on_step: Callable[[str], None] | None) -> None:
        self.on_step = on_step
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.on_step:
            self.on_step(name)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 2)


def export_model(model: CLIPSR, out: str | Path, options: ExportOptions = ExportOptions(), source: str = "random",
                 on_step: Callable[[str], None] | None = None) -> ExportResult:
    """Export `model` into the model folder `out` (with `options.overwrite`, replacing an earlier export
    there, atomically).

    Raises ParityError when ONNX Runtime disagrees with PyTorch beyond `parity.THRESHOLDS`,
    TensorRTUnavailableError for `trt` without TensorRT, OutputError for an unwritable `out`;
    `on_step(name)` is called as each of `options.steps()` starts."""
    model = model.eval()
    trt_info = tensorrt.require_tensorrt() if options.trt else None
    vocab = vocab_file()
    tokenizer = _tokenizer(model)
    samples = parity.sample_inputs(model)
    reference = parity.torch_outputs(model, samples)
    step = _Steps(on_step)
    with staged_folder(out, options.overwrite) as folder:
        files = {stage: {p: onnx_file(stage, p) for p in options.precisions} for stage in contract.STAGES}
        specs = {"text_encoder": onnx_export.text_encoder_spec(model, torch.from_numpy(samples.tokens)),
                 "generator": onnx_export.generator_spec(model, torch.from_numpy(samples.lr),
                                                         torch.from_numpy(reference.text_embedding))}
        exporter = {}
        for stage in contract.STAGES:
            with step(STEP_ONNX[stage]):
                exporter[stage] = onnx_export.export_graph(specs[stage], folder / files[stage]["fp32"], options.opset)
        if "fp16" in options.precisions:
            with step(STEP_FP16):
                for stage in contract.STAGES:
                    fp16.convert_fp16(folder / files[stage]["fp32"], folder / files[stage]["fp16"])
        gate = {}
        if "int8" in options.precisions:
            with step(STEP_INT8):
                for stage in contract.STAGES:
                    quantize.quantize_int8(folder / files[stage]["fp32"], folder / files[stage]["int8"])
                pair = {p: tuple(folder / files[stage][p] for stage in contract.STAGES) for p in ("fp32", "int8")}
                gate = quantize.check_gate(quantize.gate_inputs(model), pair["fp32"], pair["int8"],
                                           f"{model.config.preset} {model.scale}x")
        for stage in contract.STAGES:  # after the variants above, which read the plain float32 files
            rewrite_float32_graph(folder / files[stage]["fp32"])
        figures = {}
        for precision in options.precisions:
            with step(STEP_PARITY.format(precision)):
                actual = parity.onnx_outputs(folder / files["text_encoder"][precision],
                                             folder / files["generator"][precision], samples, precision)
                figures[precision] = parity.compare(reference, actual)
                parity.check(figures[precision], precision, f"{model.config.preset} {model.scale}x")
        figures.get("int8", {}).update(gate)
        shutil.copyfile(vocab, folder / VOCAB)
        engines = []
        for precision in options.trt_precisions() if trt_info else ():
            with step(STEP_TRT.format(precision)):
                engines += _build_engines(model, folder, files, precision, options.batch_max, *trt_info)
        with step(STEP_MANIFEST):
            cfg = model.config
            manifest = build_manifest(
                folder, name=options.name or _model_name(model, source), preset=cfg.preset,
                scale=cfg.generator.scale, hr_size=HR_SIZE, opset=options.opset,
                tokenizer=tokenizer, stage_files=files, parity=figures,
                source={**_source(source), **_versions(), "exporter": exporter}, engines=engines,
                model_card=model.card)
            write_manifest(folder, manifest)
    return ExportResult(Path(out), manifest, step.seconds)


def rewrite_float32_graph(path: Path) -> None:
    """The CPU rewrites of a traced float32 graph, in place, as the model folder holds it: `DepthToSpace` as
    a grouped `ConvTranspose`, the FiLM MLPs batched, exact-float16 weights stored as float16."""
    depth_to_space.depth_to_space_as_conv_transpose(path)
    text_affines.batch_text_affines(path)
    exact_fp16.store_exact_fp16(path)


def _build_engines(model: CLIPSR, folder: Path, files: dict[str, dict[str, str]], precision: str,
                   batch_max: int, trt_version: str, gpu: str) -> list[dict[str, Any]]:
    """Both stages' engines at one precision, built and named as the runtime's engine cache does."""
    built = []
    for stage in contract.STAGES:
        onnx_path = folder / files[stage][precision]
        shapes = runtime_trt.profile_shapes(stage, batch_max, model.config.generator.lr_size,
                                            model.text_encoder.embed_dim, model.text_encoder.context_length)
        engine, key = runtime_trt.cached_engine(folder / contract.ENGINES, stage, onnx_path, sha256(onnx_path),
                                                precision, shapes, trt_version, gpu)
        built.append({"stage": stage, "precision": precision, "file": f"{contract.ENGINES}/{engine.path.name}",
                      "key": key, "tensorrt": trt_version, "gpu": gpu,
                      "shapes": {k: [list(s) for s in v] for k, v in shapes.items()}})
    return built
