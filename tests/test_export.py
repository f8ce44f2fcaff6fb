"""`clipsr-export` / clipsr_export: folders the runtime accepts, parity with PyTorch at every scale,
FP16, all-or-nothing output, clear errors, the TensorRT engine key. Exports are slow on 2 cores, so
each scale is exported once per session (`tiny_export`, shared with test_parity_runtime.py)."""
from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from clipsr.checkpoint import save_checkpoint
from clipsr.factory import create_model
from clipsr.model import CLIPSR
from clipsr_export import fp16, onnx_export, parity, pipeline
from clipsr_export.cli import app
from clipsr_export.manifest import sha256
from clipsr_export.pipeline import ExportOptions, export_model
from clipsr_runtime.backends import tensorrt as runtime_trt
from clipsr_runtime.backends.ort import OrtBackend
from clipsr_runtime.manifest import load_manifest, verify_files

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@dataclass(frozen=True)
class Exported:
    model: CLIPSR
    folder: Path
    checkpoint: Path | None
    log: str


def _cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


@functools.cache
def tiny_export(scale: int, base: Path) -> Exported:
    """16x: through the CLI from a checkpoint, fp32 + fp16; 4x and 8x: the Python API, fp32 only. 8x also
    carries the opt-in text palette and text clamp, so the exporter meets them too."""
    torch.manual_seed(scale)
    model = create_model("tiny", scale=scale, **({"text_palette": 4, "text_clamp": 4.0} if scale == 8 else {})).eval()
    folder = base / f"tiny-x{scale}"
    if scale != 16:
        steps: list[str] = []
        options = ExportOptions(precisions=("fp32",))
        result = export_model(model, folder, options, on_step=steps.append)
        assert steps == options.steps() == list(result.seconds)  # what a progress bar relies on
        return Exported(model, folder, None, "")
    ckpt = save_checkpoint(model, base / "tiny-x16.safetensors")
    code, log = _cli("--checkpoint", ckpt, "--out", folder)  # the scale comes from the checkpoint
    assert code == 0, log
    return Exported(create_model(ckpt).eval(), folder, ckpt, log)


@pytest.fixture(scope="session")
def export_base(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "exports"


@pytest.fixture(scope="module")
def x16(export_base) -> Exported:
    return tiny_export(16, export_base)


@pytest.mark.parametrize("scale", [4, 8, 16])
def test_every_scale_exports_a_folder_the_runtime_accepts_and_matches_pytorch(scale, export_base):
    exp = tiny_export(scale, export_base)
    manifest = load_manifest(exp.folder)
    size = 256 // scale
    assert (manifest.scale, manifest.lr_size, manifest.hr_size) == (scale, size, 256)
    assert manifest.generator.inputs["lr"]["shape"] == ["batch", 3, size, size]
    assert manifest.generator.outputs["sr"]["shape"] == ["batch", 3, 256, 256]
    verify_files(manifest, sorted(manifest.files))
    parity.check(json.loads((exp.folder / "model.json").read_text())["parity"]["fp32"], "fp32", "manifest")
    # Independently of the export's own check: other inputs, batch 1 and 2 (dynamic batch).
    for batch in (1, 2):
        samples = parity.sample_inputs(exp.model, batch)
        samples = parity.Samples(samples.tokens, np.flip(samples.lr, axis=3).copy())
        figures = parity.compare(parity.torch_outputs(exp.model, samples),
                                 parity.onnx_outputs(exp.folder / "text_encoder.onnx", exp.folder / "generator.onnx",
                                                     samples, "fp32"))
        parity.check(figures, "fp32", f"{scale}x batch {batch}")
        assert figures["sr_max_abs"] < 1e-4 and figures["text_max_abs"] < 1e-5


def test_manifest_lists_what_the_contract_asks(x16):
    raw = json.loads((x16.folder / "model.json").read_text())
    on_disk = {p.name for p in x16.folder.iterdir() if p.is_file()} - {"model.json"}
    assert set(raw["files"]) == on_disk == {"text_encoder.onnx", "generator.onnx", "text_encoder.fp16.onnx",
                                            "generator.fp16.onnx", "bpe_simple_vocab_16e6.txt.gz"}
    for name, entry in raw["files"].items():
        assert entry == {"sha256": sha256(x16.folder / name), "bytes": (x16.folder / name).stat().st_size}
    assert (raw["preset"], raw["opset"], raw["value_range"]) == ("tiny", 18, [-1.0, 1.0])
    assert raw["tokenizer"] == {"vocab": "bpe_simple_vocab_16e6.txt.gz", "context_length": 77,
                                "sot_token": 49406, "eot_token": 49407, "lowercase": True}
    dim = x16.model.text_encoder.embed_dim
    assert raw["text_encoder"]["inputs"] == {"tokens": {"shape": ["batch", 77], "dtype": "int32"}}
    assert raw["text_encoder"]["outputs"] == {"text_embedding": {"shape": ["batch", dim], "dtype": "float32"}}
    assert raw["name"] == "tiny-x16" and raw["source"]["checkpoint"] == x16.checkpoint.name
    assert raw["source"]["checkpoint_sha256"] == sha256(x16.checkpoint)
    assert raw["source"]["exporter"] == {"text_encoder": "dynamo", "generator": "dynamo"}
    assert set(raw["parity"]) == {"fp32", "fp16"}
    assert "fp32 parity vs PyTorch" in x16.log and "wrote" in x16.log


def test_fp16_variant_is_mixed_precision_finite_and_close_to_fp32(x16):
    raw = json.loads((x16.folder / "model.json").read_text())
    parity.check(raw["parity"]["fp16"], "fp16", "manifest")
    half = onnx.load(str(x16.folder / "generator.fp16.onnx"))
    floats = [i.data_type for i in half.graph.initializer if i.data_type in (onnx.TensorProto.FLOAT,
                                                                               onnx.TensorProto.FLOAT16)]
    assert floats.count(onnx.TensorProto.FLOAT16) > len(floats) // 2  # the weights did go to fp16
    assert {v.type.tensor_type.elem_type for v in (*half.graph.input, *half.graph.output)} == {onnx.TensorProto.FLOAT}
    names = {i.name: i.data_type for i in half.graph.initializer}
    norms = [n for n in half.graph.node if n.op_type == "LayerNormalization"]
    assert norms and all(names.get(n.input[1], onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT for n in norms)
    samples = parity.sample_inputs(x16.model, 2)
    files = {p: (x16.folder / f"text_encoder{s}.onnx", x16.folder / f"generator{s}.onnx")
             for p, s in (("fp32", ""), ("fp16", ".fp16"))}
    full, mixed = (parity.onnx_outputs(*files[p], samples, p) for p in ("fp32", "fp16"))
    assert np.isfinite(mixed.text_embedding).all() and np.isfinite(mixed.sr).all()
    assert np.abs(mixed.sr - full.sr).max() < 0.05
    assert parity.compare(full, mixed)["sr_psnr_db"] > 50
    assert not np.array_equal(mixed.sr, full.sr)  # it really ran another graph


@pytest.mark.parametrize("part, param", [("generator", "upsampler.out.bias"),
                                         ("text_encoder", "ln_final.bias")])
def test_parity_check_catches_a_small_real_difference(x16, part, param):
    """A weight off by 0.01 (far smaller than an export bug) already fails the fp32 thresholds."""
    samples = parity.sample_inputs(x16.model, 2)
    exported = parity.onnx_outputs(x16.folder / "text_encoder.onnx", x16.folder / "generator.onnx", samples, "fp32")
    parity.check(parity.compare(parity.torch_outputs(x16.model, samples), exported), "fp32", "as exported")
    other = copy.deepcopy(x16.model)
    with torch.no_grad():
        getattr(other, part).get_parameter(param).add_(0.01)
    with pytest.raises(parity.ParityError, match="fp32 ONNX output differs from PyTorch: .*max_abs"):
        parity.check(parity.compare(parity.torch_outputs(other, samples), exported), "fp32", "perturbed")


def test_fp16_block_list_keeps_layernorm_softmax_and_reductions():
    kept = fp16.block_list()
    assert {"LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "Resize"} <= set(kept)


def test_engine_profiles_and_keys_differ_per_stage_and_gpu():
    shapes = runtime_trt.profile_shapes("generator", 4, 16, 64, 77)
    assert shapes == {"lr": ((1, 3, 16, 16), (2, 3, 16, 16), (4, 3, 16, 16)),
                      "text_embedding": ((1, 64), (2, 64), (4, 64))}
    cases = [("a" * 64, "10.7.0", "NVIDIA H100", "fp16", shapes),
             ("b" * 64, "11.0.1", "NVIDIA A10", "fp32", runtime_trt.profile_shapes("text_encoder", 8, 16, 512, 77)),
             ("c" * 64, "10.7.0", "NVIDIA H100", "fp16", runtime_trt.profile_shapes("generator", 1, 64, 512, 77))]
    keys = set()
    for case in cases:
        key = runtime_trt.engine_cache_key(*case)
        assert runtime_trt.engine_file_name("generator", key) == f"generator-{key[:32]}.engine"
        keys.add(key)
    assert len(keys) == len(cases)


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_trt_without_tensorrt_is_a_clear_error_and_writes_nothing(tmp_path):
    out = tmp_path / "model"
    code, output = _cli("--random", "--preset", "tiny", "--out", out, "--trt")
    assert code == 1
    assert _error_lines(output) == ["error: --trt needs TensorRT and a CUDA GPU: tensorrt is not installed "
                                    "(pip install 'clipsr[trt]' gives tensorrt)"]
    assert not out.exists()


@pytest.mark.trt
def test_tensorrt_engines_are_found_by_the_runtime(x16, tmp_path):
    pytest.importorskip("tensorrt")
    if runtime_trt.unavailable_reason():
        pytest.skip(runtime_trt.unavailable_reason())
    from clipsr_runtime.upscaler import Upscaler

    out = tmp_path / "trt"
    result = export_model(x16.model, out, ExportOptions(trt=True, batch_max=4), source=str(x16.checkpoint))
    engines = sorted((out / "engines").glob("*.engine"))
    assert len(engines) == 4 and len(result.manifest["engines"]) == 4
    load_manifest(out)
    stamps = {p: p.stat().st_mtime_ns for p in engines}
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    images = {}
    for precision in ("fp32", "fp16"):
        upscaler = Upscaler(out, backend="trt", precision=precision, batch=4)
        assert upscaler.backend.name == "trt"
        images[precision] = np.asarray(upscaler.upscale(rgb, "a red bird"), dtype=np.float64)
    assert {p: p.stat().st_mtime_ns for p in (out / "engines").glob("*.engine")} == stamps  # none rebuilt
    reference = np.asarray(Upscaler(out, backend="ort-cpu").upscale(rgb, "a red bird"), dtype=np.float64)
    assert np.abs(images["fp32"] - reference).max() <= 2
    assert 10 * np.log10(255 ** 2 / np.mean((images["fp16"] - reference) ** 2)) > 35


def test_missing_demo_checkpoint_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "DEMO_CHECKPOINT", tmp_path / "demo.safetensors")
    with pytest.raises(FileNotFoundError, match="demo checkpoint .*demo.safetensors does not exist yet"):
        pipeline.load_model(None, None, 16, random=False)


def _bad_checkpoints(x16: Exported, folder: Path) -> dict[str, tuple[Path, list[str], str]]:
    truncated = folder / "truncated.safetensors"
    truncated.write_bytes(x16.checkpoint.read_bytes()[:5000])
    return {
        "missing": (folder / "nope.safetensors", [], "checkpoint not found: .*nope.safetensors"),
        "truncated": (truncated, [], "truncated.safetensors is damaged or not a safetensors file"),
        "preset": (x16.checkpoint, ["--preset", "paper-b32"], "holds preset 'tiny', not 'paper-b32'"),
        "scale": (x16.checkpoint, ["--scale", "8"], "holds a 16x model, not 8x"),
    }


@pytest.mark.parametrize("case", ["missing", "truncated", "preset", "scale"])
def test_bad_checkpoint_is_one_error_line_and_nothing_written(case, x16, tmp_path):
    import re

    path, extra, message = _bad_checkpoints(x16, tmp_path)[case]
    out = tmp_path / "out" / "model"
    code, output = _cli("--checkpoint", path, "--out", out, *extra)
    assert code == 1
    errors = _error_lines(output)
    assert len(errors) == 1 and re.search(message, errors[0]), output
    assert not (tmp_path / "out").exists()


def test_unwritable_output_is_a_clear_error_and_leaves_nothing(x16, tmp_path):
    blocker = tmp_path / "in-the-way"
    blocker.write_text("a file where a folder should be")
    code, output = _cli("--checkpoint", x16.checkpoint, "--out", blocker / "model")
    assert code == 1 and len(_error_lines(output)) == 1
    assert f"cannot write to {blocker}" in _error_lines(output)[0]
    assert blocker.read_text() == "a file where a folder should be"
    if os.geteuid() != 0:  # root writes anywhere: a read-only folder stops only other users
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        code, output = _cli("--checkpoint", x16.checkpoint, "--out", locked / "model")
        assert code == 1 and f"cannot write to {locked}" in output
        assert list(locked.iterdir()) == []


def test_a_folder_that_is_not_a_model_is_never_replaced(x16, tmp_path):
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "holiday.jpg").write_bytes(b"not really a jpeg")
    code, output = _cli("--checkpoint", x16.checkpoint, "--out", precious)
    assert code == 1 and "holds no model.json: refusing to replace it" in _error_lines(output)[0]
    assert [p.name for p in precious.iterdir()] == ["holiday.jpg"]


def test_failure_midway_leaves_nothing_and_keeps_the_earlier_export(x16, tmp_path, monkeypatch):
    dest = tmp_path / "model"
    shutil.copytree(x16.folder, dest)
    before = {p.name: sha256(p) for p in dest.iterdir()}
    real = onnx_export.export_graph

    def fail_on_generator(spec, path, opset):
        if Path(path).name == "generator.onnx":
            assert (Path(path).parent / "text_encoder.onnx").is_file()  # a half-written folder exists
            raise RuntimeError("simulated crash during the generator export")
        return real(spec, path, opset)

    monkeypatch.setattr(onnx_export, "export_graph", fail_on_generator)
    with pytest.raises(RuntimeError, match="simulated crash"):
        export_model(x16.model, dest, ExportOptions(precisions=("fp32",), overwrite=True))
    assert {p.name: sha256(p) for p in dest.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left


def test_options_are_checked_before_any_work(tmp_path):
    for args, message in ((["--precision", "fp16"], "precisions must include fp32"),
                          (["--precision", "fp32,bf16"], "precisions must include fp32"),
                          (["--opset", "9"], "opset must be between 13 and 21"),
                          (["--batch-max", "0"], "batch-max must be >= 1"),
                          (["--checkpoint", tmp_path / "x.safetensors"], "--random and --checkpoint exclude")):
        code, output = _cli("--random", "--out", tmp_path / "m", *args)
        assert code == 2 and message in _error_lines(output)[0], output  # the command line cannot work
    assert list(tmp_path.iterdir()) == []


def test_legacy_exporter_is_the_fallback_when_dynamo_fails(x16, tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("dynamo cannot")

    monkeypatch.setattr(onnx_export, "_export_dynamo", broken)
    samples = parity.sample_inputs(x16.model, 2)
    path = tmp_path / "text.onnx"
    assert onnx_export.export_graph(onnx_export.text_encoder_spec(x16.model, torch.from_numpy(samples.tokens)),
                                    path) == "legacy"
    with OrtBackend(path, x16.folder / "generator.onnx") as backend:
        ours = backend.run_text(samples.tokens[:1])
    expected = x16.model.encode_text(torch.from_numpy(samples.tokens[:1])).numpy()
    assert np.abs(ours - expected).max() < parity.THRESHOLDS["fp32"].text_max_abs
    monkeypatch.setattr(onnx_export, "_export_legacy", broken)
    with pytest.raises(RuntimeError, match="dynamo exporter: RuntimeError: dynamo cannot; legacy exporter"):
        onnx_export.export_graph(onnx_export.text_encoder_spec(x16.model, torch.from_numpy(samples.tokens)),
                                 tmp_path / "again.onnx")
    assert not (tmp_path / "again.onnx").exists()


@pytest.mark.slow
def test_paper_b32_exports_at_16x(tmp_path):
    torch.manual_seed(0)
    model = create_model("paper-b32", scale=16, **{"clip.pretrained": None}).eval()
    result = export_model(model, tmp_path / "paper", ExportOptions(precisions=("fp32",)))  # fp16: +20 s
    manifest = load_manifest(tmp_path / "paper")
    assert manifest.text_encoder.outputs["text_embedding"]["shape"] == ["batch", 512]
    assert manifest.generator.inputs["lr"]["shape"] == ["batch", 3, 16, 16]
    parity.check(result.manifest["parity"]["fp32"], "fp32", "paper-b32")
    assert result.manifest["parity"]["fp32"]["sr_max_abs"] < 1e-4


def test_export_from_a_source_checkout_records_that_no_version_is_installed():
    from clipsr_export.pipeline import _installed_version

    assert _installed_version("onnx") == onnx.__version__
    assert _installed_version("clipsr-not-a-distribution") == "not installed (source checkout)"


DOC = Path(__file__).resolve().parents[1] / "docs" / "model-folder.md"


def documented_example(manifest: dict) -> dict:
    """What docs/model-folder.md shows of a real export: digests, sizes, parity figures and versions
    (which change with every build) replaced by placeholders; everything else as written."""
    shown = copy.deepcopy(manifest)
    shown["files"] = {name: {"sha256": "<sha256>", "bytes": "<bytes>"} for name in shown["files"]}
    shown["parity"] = {p: {k: "<float>" for k in figures} for p, figures in shown["parity"].items()}
    shown["source"] = {k: f"<{k}>" for k in shown["source"]}
    return shown


def compact_json(value, indent: int = 0) -> str:
    """JSON with every object or list of scalars (or of such small lists) on one line, as the doc shows it."""
    flat = json.dumps(value)
    if not isinstance(value, (dict, list)) or len(flat) + indent <= 100:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, list):
        return "[\n" + ",\n".join(pad + compact_json(v, indent + 2) for v in value) + "\n" + " " * indent + "]"
    return ("{\n" + ",\n".join(f"{pad}{json.dumps(k)}: {compact_json(v, indent + 2)}" for k, v in value.items())
            + "\n" + " " * indent + "}")


def test_the_documented_model_json_is_what_export_writes(x16):
    import re

    example = re.search(r"```json\n(.*?)\n```", DOC.read_text(), re.S)
    assert example, f"{DOC} has no ```json example"
    shown = documented_example(json.loads((x16.folder / "model.json").read_text()))
    assert json.loads(example.group(1)) == shown, f"regenerate the example in {DOC}:\n{compact_json(shown)}"
