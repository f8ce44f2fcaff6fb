"""The `openvino` backend: same numbers as ONNX Runtime on the built-in model, one compile per input
shape, chosen by `auto` on a CPU only for fp32, and a clear error when OpenVINO is absent."""
from __future__ import annotations

import builtins

import numpy as np
import pytest

from clipsr_runtime.backends import BackendUnavailableError, create_backend, resolve_backend_name
from clipsr_runtime.backends import openvino as ov_backend
from clipsr_runtime.backends import ort as ort_backend
from clipsr_runtime.manifest import default_model_dir, load_manifest

needs_openvino = pytest.mark.skipif(not ov_backend.installed(), reason="OpenVINO is not installed")


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(default_model_dir())


@needs_openvino
def test_openvino_matches_onnx_runtime_on_the_built_in_model(manifest):
    ov = create_backend(manifest, "openvino", threads=1)
    ort = create_backend(manifest, "ort-cpu", threads=1)
    assert ov.name == "openvino" and ov.precision == "fp32"
    tokens = np.zeros((2, 77), np.int32)
    tokens[:, :3] = [49406, 320, 49407]  # <start> "a" <end>
    emb = ort.run_text(tokens)
    assert np.abs(ov.run_text(tokens) - emb).max() < 1e-4
    lr = np.random.default_rng(0).uniform(-1, 1, (2, 3, manifest.lr_size, manifest.lr_size)).astype(np.float32)
    for batch in (2, 1, 2):  # a new batch size compiles once more; the earlier one is reused
        out = ov.run_generator(lr[:batch], emb[:batch])
        assert out.shape == (batch, 3, manifest.hr_size, manifest.hr_size)
        assert np.abs(out - ort.run_generator(lr[:batch], emb[:batch])).max() < 1e-4  # far below a grey level
    assert len(ov._compiled) == 3  # text b2, generator b2, generator b1


@needs_openvino
def test_openvino_runs_fp32_only(manifest):
    with pytest.raises(ValueError, match="fp32 graphs only"):
        create_backend(manifest, "openvino", precision="fp16")


def test_auto_prefers_openvino_on_a_cpu_for_fp32_only(monkeypatch):
    from clipsr_runtime.backends import tensorrt

    monkeypatch.setattr(tensorrt, "unavailable_reason", lambda: "no TensorRT")
    monkeypatch.setattr(ort_backend, "best_ort_backend", lambda: "ort-cpu")
    monkeypatch.setattr(ov_backend, "installed", lambda: True)
    assert resolve_backend_name("auto") == "openvino"
    assert resolve_backend_name("auto", "fp16") == resolve_backend_name("auto", "int8") == "ort-cpu"
    assert resolve_backend_name("ort") == "ort-cpu"
    monkeypatch.setattr(ov_backend, "installed", lambda: False)
    assert resolve_backend_name("auto") == "ort-cpu"
    monkeypatch.setattr(ov_backend, "installed", lambda: True)
    monkeypatch.setattr(ort_backend, "best_ort_backend", lambda: "ort-cuda")
    assert resolve_backend_name("auto") == "ort-cuda"  # a GPU comes first


def test_missing_openvino_is_a_clear_unavailable_error(manifest, monkeypatch):
    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino":
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'clipsr\[openvino\]'"):
        create_backend(manifest, "openvino")
