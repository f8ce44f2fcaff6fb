"""The model-folder contract is defined once, in clipsr_runtime: change it there and the export follows.
Also the export's cheap front door: scale from the checkpoint, names, --overwrite, choices checked
before any work. No model is exported here (test_export.py does that), so these run in seconds."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from clipsr_export import manifest as export_manifest
from clipsr_export import parity, pipeline
from clipsr_export import tensorrt as export_trt
from clipsr_export.cli import app
from clipsr_export.pipeline import ExportOptions
from clipsr_runtime import manifest as contract
from clipsr_runtime.backends import ort as runtime_ort
from clipsr_runtime.backends import tensorrt as runtime_trt
from runtime_fixtures import make_model_dir


@pytest.fixture(scope="module")
def fake_folder(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("contract") / "m", fp16="ok")


def _manifest_of(folder: Path) -> dict:
    raw = json.loads((folder / contract.MANIFEST).read_text())
    return export_manifest.build_manifest(
        folder, name="fake", preset="fake", scale=raw["scale"], hr_size=raw["hr_size"], opset=18,
        tokenizer=raw["tokenizer"], stage_files={s: raw[s]["files"] for s in contract.STAGES}, parity={}, source={})


def test_the_written_manifest_follows_the_runtime_format(fake_folder, monkeypatch):
    written = _manifest_of(fake_folder)
    assert (written["format"], written["format_version"]) == (contract.FORMAT, contract.FORMAT_VERSION)
    assert "lr_size" not in written and written["hr_size"] // written["scale"] == 16  # the scale, stated once
    monkeypatch.setattr(contract, "FORMAT_VERSION", 7)
    monkeypatch.setattr(contract, "READABLE_VERSIONS", (1, 2, 7))
    monkeypatch.setattr(contract, "FORMAT", "clipsr-model-next")
    written = _manifest_of(fake_folder)
    assert (written["format"], written["format_version"]) == ("clipsr-model-next", 7)


def test_export_refuses_to_write_what_the_runtime_would_refuse(fake_folder, monkeypatch):
    monkeypatch.setattr(contract, "STAGE_IO", {**contract.STAGE_IO, "generator": {
        "inputs": {"lr": ("float32", 4), "text_embedding": ("float32", 2), "mask": ("float32", 4)},
        "outputs": {"sr": ("float32", 4)}}})
    with pytest.raises(contract.ManifestError, match="generator.inputs must be exactly"):
        _manifest_of(fake_folder)


def test_export_precisions_are_the_runtimes(monkeypatch):
    ExportOptions(precisions=("fp32", "fp16"))
    monkeypatch.setattr(contract, "PRECISIONS", ("fp32",))
    with pytest.raises(ValueError, match="come from fp32, got fp32,fp16"):
        ExportOptions(precisions=("fp32", "fp16"))
    monkeypatch.setattr(contract, "PRECISIONS", ("fp32", "fp16", "int8"))
    assert ExportOptions(precisions=("fp32", "int8")).precisions == ("fp32", "int8")


def test_parity_runs_the_runtimes_backend_and_session_options(fake_folder, monkeypatch):
    seen = []
    real = runtime_ort.session_options

    def spy(name, precision, threads=None):
        seen.append((name, precision))
        return real(name, precision, threads)

    monkeypatch.setattr(runtime_ort, "session_options", spy)
    import numpy as np

    samples = parity.Samples(tokens=np.zeros((2, 77), np.int32), lr=np.zeros((2, 3, 16, 16), np.float32))
    out = parity.onnx_outputs(fake_folder / "text_encoder.fp16.onnx", fake_folder / "generator.fp16.onnx",
                              samples, "fp16")
    assert seen == [("ort-cpu", "fp16")] and out.sr.shape == (2, 3, 64, 64)


class _FakeLogger:
    WARNING = 2

    def __init__(self, level: int) -> None:
        self.level = level


def test_export_engines_use_the_runtimes_shapes_key_and_gpu_name(fake_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(runtime_trt, "unavailable_reason", lambda: None)
    monkeypatch.setattr(runtime_trt, "gpu_name", lambda: "Fake GPU 80GB")
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="10.9.0", Logger=_FakeLogger))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert export_trt.require_tensorrt() == ("10.9.0", "Fake GPU 80GB")
    calls, built = [], []
    real = runtime_trt.profile_shapes
    monkeypatch.setattr(runtime_trt, "profile_shapes", lambda *a: calls.append(a) or real(*a))

    def build(engine, onnx_path, shapes, timing_cache=None):  # the runtime's one builder, recorded
        built.append(shapes)
        assert timing_cache == runtime_trt.timing_cache_file("10.9.0", "Fake GPU 80GB")
        assert timing_cache.is_relative_to(tmp_path / "cache" / "clipsr")

    monkeypatch.setattr(runtime_trt.TrtEngine, "build", build)
    model = SimpleNamespace(config=SimpleNamespace(generator=SimpleNamespace(lr_size=16)),
                            text_encoder=SimpleNamespace(embed_dim=8, context_length=77))
    shutil.copytree(fake_folder, tmp_path / "m")
    files = {s: {"fp32": f"{s}.onnx"} for s in contract.STAGES}
    engines = pipeline._build_engines(model, tmp_path / "m", files, "fp32", 4, "10.9.0", "Fake GPU 80GB")
    assert calls == [(s, 4, 16, 8, 77) for s in contract.STAGES]
    for engine, shapes in zip(engines, built):
        key = runtime_trt.engine_cache_key(contract.file_sha256(tmp_path / "m" / files[engine["stage"]]["fp32"]),
                                           "10.9.0", "Fake GPU 80GB", "fp32", shapes)
        assert engine["file"] == f"{contract.ENGINES}/{runtime_trt.engine_file_name(engine['stage'], key)}"


# --- the front door: scale, name, destination, choices ----------------------------------------------

def _cli(*args) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, [line for line in result.output.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def checkpoint_x8(tmp_path_factory) -> Path:
    import torch

    from clipsr.checkpoint import save_checkpoint
    from clipsr.factory import create_model

    torch.manual_seed(8)
    model = create_model("tiny", scale=8, **{"clip.pretrained": None})
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "birds-x8.safetensors")


def test_the_scale_comes_from_the_checkpoint_and_is_only_checked(checkpoint_x8):
    model, source = pipeline.load_model(checkpoint_x8, None, None, random=False)
    assert model.scale == 8 and source == str(checkpoint_x8)
    assert pipeline.load_model(checkpoint_x8, None, 8, random=False)[0].scale == 8
    with pytest.raises(ValueError, match="holds a 8x model, not 16x"):
        pipeline.load_model(checkpoint_x8, None, 16, random=False)


def test_scale_without_a_checkpoint_picks_the_demo_of_that_scale(tmp_path, monkeypatch):
    assert pipeline.demo_checkpoint(16) == pipeline.DEMO_CHECKPOINT
    code, errors = _cli("--scale", 8, "--out", tmp_path / "m")
    assert code == 1 and errors == ["error: there is no built-in 8x demo model (built in: 16x): pass "
                                    "--checkpoint PATH (or --random for an untrained model)"]
    code, errors = _cli("--scale", 5, "--out", tmp_path / "m")
    assert code == 2 and "scale must be one of (4, 8, 16)" in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_a_training_run_exports_under_the_run_folders_name(tmp_path, checkpoint_x8):
    run = tmp_path / "birds-run-3"
    (run / "nested").mkdir(parents=True)
    (run / "train_config.json").write_text("{}")
    for ckpt in (run / "checkpoint.safetensors", run / "nested" / "checkpoint.safetensors"):
        shutil.copy(checkpoint_x8, ckpt)
        assert pipeline.default_name(ckpt, None, None, False) == "birds-run-3"
    assert pipeline.default_name(checkpoint_x8, None, None, False) == "birds-x8"
    assert pipeline.default_name(None, "tiny", 4, True) == "random-tiny-x4"
    assert pipeline.default_name(None, None, None, False) == pipeline.DEMO_CHECKPOINT.stem


def test_an_existing_model_folder_is_refused_without_overwrite_before_any_work(tmp_path, checkpoint_x8,
                                                                               fake_folder, monkeypatch):
    run = tmp_path / "birds-run-3"
    run.mkdir()
    (run / "train_config.json").write_text("{}")
    shutil.copy(checkpoint_x8, run / "checkpoint.safetensors")
    monkeypatch.chdir(tmp_path)
    shutil.copytree(fake_folder, tmp_path / "birds-run-3-export")
    before = sorted(p.name for p in (tmp_path / "birds-run-3-export").iterdir())
    monkeypatch.setattr(pipeline, "load_model", lambda *a: pytest.fail("the model loaded before the refusal"))
    code, errors = _cli("--checkpoint", run / "checkpoint.safetensors", "--out", "birds-run-3-export")
    assert code == 1 and errors == [f"error: output folder {tmp_path / 'birds-run-3-export'} already holds a "
                                    "model: pass --overwrite to replace it"]
    assert sorted(p.name for p in (tmp_path / "birds-run-3-export").iterdir()) == before
    # The default --out is ./<run folder name>: run from the run's parent, that is the run itself, kept safe.
    code, errors = _cli("--checkpoint", run / "checkpoint.safetensors", "--overwrite")
    assert code == 1 and errors == [f"error: output folder {run} is not empty and holds no model.json: "
                                    "refusing to replace it (choose another --out)"]


def test_export_choices_are_checked_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "load_model", lambda *a: pytest.fail("the model loaded before the check"))
    for args, message in ((["--precision", "fp32,int4"], "precisions must include fp32 and come from fp32, fp16"),
                          (["--precision", "fp32,fp64"], "precisions must include fp32 and come from"),
                          (["--precision", "fp16"], "precisions must include fp32"),
                          (["--opset", 1], "opset must be between 13 and 21"),
                          (["--name", "../up"], "model name must be a plain name"),
                          (["--name", "../../evil"], "model name must be a plain name"),
                          (["--checkpoint", tmp_path / "x.safetensors"], "--random and --checkpoint exclude"),
                          (["--scale", 5], "scale must be one of"),
                          (["--scale", 3], "scale must be one of")):
        code, errors = _cli("--random", "--out", tmp_path / "m", *args)
        assert code == 2 and len(errors) == 1 and message in errors[0], errors  # usage: the README's rule
    assert list(tmp_path.iterdir()) == []


def _checkpoint_with(source: Path, dest: Path, **metadata: str) -> Path:
    """A copy of a checkpoint whose safetensors metadata says something else."""
    import safetensors
    import safetensors.torch

    with safetensors.safe_open(str(source), framework="pt") as f:
        meta = {**f.metadata(), **metadata}
    safetensors.torch.save_file(safetensors.torch.load_file(str(source)), str(dest), metadata=meta)
    return dest


def test_a_checkpoint_that_cannot_be_built_or_read_is_one_clear_error(tmp_path, checkpoint_x8):
    from clipsr.checkpoint import read_metadata

    config = json.loads(read_metadata(checkpoint_x8)["config"])
    config["generator"]["scale"] = 3
    odd = _checkpoint_with(checkpoint_x8, tmp_path / "odd.safetensors", config=json.dumps(config))
    future = _checkpoint_with(checkpoint_x8, tmp_path / "future.safetensors", version="999")
    for path, message in ((odd, "scale must be one of (4, 8, 16)"), (future, "format version '999'")):
        code, errors = _cli("--checkpoint", path, "--out", tmp_path / "m")
        assert code == 1 and len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "m").exists()
