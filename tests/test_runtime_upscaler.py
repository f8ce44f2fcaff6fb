"""Model folder checks, backend choice, the Python API, the prompt cache and the FP16 safety net."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from clipsr_runtime.backends import BackendUnavailableError, create_backend, resolve_backend_name
from clipsr_runtime.backends.tensorrt import engine_cache_key, engine_file_name, unavailable_reason
from clipsr_runtime.errors import OptionError
from clipsr_runtime.manifest import default_model_dir, load_manifest
from clipsr_runtime.upscaler import Upscaler
from runtime_fixtures import make_model_dir


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("model"), fp16="ok")


@pytest.fixture(scope="module")
def upscaler(model):
    return Upscaler(model, backend="ort")


def _edit_manifest(folder, **changes):
    data = json.loads((folder / "model.json").read_text())
    data.update(changes)
    (folder / "model.json").write_text(json.dumps(data))


# --- model folder --------------------------------------------------------------------------------

def test_missing_folder_and_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model.json"):
        Upscaler(tmp_path / "nowhere")


@pytest.mark.parametrize("change,message", [
    ({"format": "other"}, "'format' must be 'clipsr-model'"),
    ({"format_version": 3}, "format_version 3 is not supported"),
    ({"scale": 3}, "scale 3 does not divide hr_size 64"),
    ({"format_version": 1, "lr_size": 16, "scale": 8}, "lr_size 16 x scale 8 != hr_size 64"),
    ({"generator": {"files": {"fp32": "generator.onnx"}, "inputs": {"x": {}}, "outputs": {"sr": {}}}},
     "generator.inputs must be exactly"),
])
def test_invalid_manifest(tmp_path, change, message):
    folder = make_model_dir(tmp_path / "m")
    _edit_manifest(folder, **change)
    with pytest.raises(ValueError, match=message):
        load_manifest(folder)


def test_manifest_missing_key_and_bad_json(tmp_path):
    folder = make_model_dir(tmp_path / "m")
    data = json.loads((folder / "model.json").read_text())
    del data["tokenizer"]
    (folder / "model.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="tokenizer is missing"):
        load_manifest(folder)
    (folder / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_manifest(folder)


def test_tampered_missing_and_truncated_files(tmp_path):
    folder = make_model_dir(tmp_path / "m")
    onnx_bytes = bytearray((folder / "generator.onnx").read_bytes())
    onnx_bytes[-1] ^= 0xFF  # same size, different content
    (folder / "generator.onnx").write_bytes(bytes(onnx_bytes))
    with pytest.raises(ValueError, match="generator.onnx does not match its sha256"):
        Upscaler(folder)
    (folder / "generator.onnx").write_bytes(bytes(onnx_bytes[:100]))
    with pytest.raises(ValueError, match="truncated or tampered"):
        Upscaler(folder)
    (folder / "generator.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="generator.onnx is missing"):
        Upscaler(folder)


def test_precision_not_exported(tmp_path):
    with pytest.raises(ValueError, match="has no fp16 text_encoder"):
        Upscaler(make_model_dir(tmp_path / "m"), precision="fp16")


def test_default_model_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass --model DIR .* or run clipsr-export"):
        default_model_dir(tmp_path)
    make_model_dir(tmp_path / "one")
    assert default_model_dir(tmp_path) == tmp_path / "one"
    make_model_dir(tmp_path / "two")
    with pytest.raises(ValueError, match="several built-in models"):
        default_model_dir(tmp_path)


def test_fixed_size_model_refuses_other_tiles(tmp_path):
    folder = make_model_dir(tmp_path / "m", dynamic=False)
    with pytest.raises(ValueError, match="takes 16x16 LR tiles, not 24"):
        Upscaler(folder, tile=24)
    up = Upscaler(folder)
    assert up.upscale(np.zeros((40, 40, 3), np.uint8), "a bird").size == (160, 160)


# --- backends ------------------------------------------------------------------------------------

def test_auto_backend_says_which(model):
    auto = Upscaler(model)
    assert auto.backend.name == resolve_backend_name("auto")
    assert auto.backend.name in ("trt", "ort-cuda", "ort-cpu", "openvino")


@pytest.mark.skipif(unavailable_reason() is None, reason="TensorRT is available here")
def test_trt_unavailable_is_a_clear_error(model):
    with pytest.raises(BackendUnavailableError, match="backend 'trt' is not available: .*not installed"):
        Upscaler(model, backend="trt")


def test_unknown_and_unavailable_backends(model):
    with pytest.raises(ValueError, match="backend must be one of"):
        Upscaler(model, backend="cuda")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(BackendUnavailableError, match="'ort-cuda' is not available"):
            create_backend(load_manifest(model), "ort-cuda")


def test_engine_cache_key_changes_with_every_input():
    shapes = {"lr": ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}
    base = dict(onnx_sha256="a" * 64, trt_version="10.7.0", gpu_name="NVIDIA H100", precision="fp16",
                shapes=shapes)
    key = engine_cache_key(**base)
    assert len(key) == 64 and key == engine_cache_key(**base)
    variants = [{"onnx_sha256": "b" * 64}, {"trt_version": "10.8.0"}, {"gpu_name": "NVIDIA A10"},
                {"precision": "fp32"}, {"shapes": {"lr": ((1, 3, 16, 16), (4, 3, 16, 16), (16, 3, 16, 16))}}]
    assert len({engine_cache_key(**(base | v)) for v in variants} | {key}) == len(variants) + 1
    assert engine_file_name("generator", key) == f"generator-{key[:32]}.engine"


@pytest.mark.trt
def test_trt_backend_matches_ort(model):
    pytest.importorskip("tensorrt")
    if unavailable_reason():
        pytest.skip(unavailable_reason())
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    ours = np.asarray(Upscaler(model, backend="trt").upscale(img, "a bird"), dtype=np.int16)
    ref = np.asarray(Upscaler(model, backend="ort-cpu").upscale(img, "a bird"), dtype=np.int16)
    assert np.abs(ours - ref).max() <= 1


# --- API -----------------------------------------------------------------------------------------

def test_upscale_accepts_pil_array_and_path(upscaler, tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "in.png")
    a = upscaler.upscale(arr, "a red bird")
    b = upscaler.upscale(Image.fromarray(arr), "a red bird")
    c = upscaler.upscale(tmp_path / "in.png", "a red bird")
    assert a.size == (64, 64) and a.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


def test_output_depends_on_prompt_and_input(upscaler):
    arr = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    red, blue = (np.asarray(upscaler.upscale(arr, p), np.int16) for p in ("a red bird", "a blue whale"))
    assert np.abs(red - blue).max() > 2
    other = np.asarray(upscaler.upscale(255 - arr, "a red bird"), np.int16)
    assert np.abs(other - red).mean() > 20


def test_alpha_upscaled_separately(upscaler):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 3] = 0
    rgba[4:12, 4:12, 3] = 255
    out = upscaler.upscale(rgba, "a bird")
    assert out.mode == "RGBA"
    alpha = np.asarray(out)[..., 3]
    assert alpha[32, 32] == 255 and alpha[2, 2] == 0  # the square, 4x larger


def test_prompt_cache_encodes_each_prompt_once(model, monkeypatch):
    up = Upscaler(model, backend="ort-cpu")
    calls = []
    run_text = up.backend.run_text
    monkeypatch.setattr(up.backend, "run_text", lambda t: calls.append(t) or run_text(t))
    for _ in range(5):
        up.upscale(np.zeros((16, 16, 3), np.uint8), "a bird with a red crown")
    up.encode_prompt("A bird with a  RED crown")  # same tokens after cleaning -> cached
    assert len(calls) == 1 and up.prompt_cache_info().misses == 1
    up.encode_prompt("another prompt")
    assert len(calls) == 2


def test_fp16_runs_and_nan_falls_back_to_fp32(model, tmp_path):
    arr = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    good = Upscaler(model, precision="fp16")
    assert good.backend.precision == "fp16"
    good.upscale(arr, "a bird")
    assert good.backend.precision == "fp16"  # healthy fp16 output is kept
    poisoned = Upscaler(make_model_dir(tmp_path / "nan", fp16="nan"), precision="fp16")
    with pytest.warns(UserWarning, match="NaN/Inf or constant: retrying in fp32"):
        out = poisoned.upscale(arr, "a bird")
    assert poisoned.backend.precision == "fp32"
    fp32 = Upscaler(tmp_path / "nan").upscale(arr, "a bird")
    np.testing.assert_array_equal(np.asarray(out), np.asarray(fp32))


def test_output_pixel_limit(model):
    up = Upscaler(model, max_output_pixels=100 * 100)
    with pytest.raises(ValueError, match="over the limit"):
        up.upscale(np.zeros((40, 40, 3), np.uint8), "a bird")


def test_empty_prompt_fails_before_work(upscaler):
    with pytest.raises(ValueError, match="empty prompt"):
        upscaler.upscale(np.zeros((16, 16, 3), np.uint8), "  ")


# --- input validation, outscale, limits, tile progress ---------------------------------------------

def test_nan_and_empty_arrays_are_refused_before_work(upscaler):
    with pytest.raises(ValueError, match="NaN or infinite"):
        upscaler.upscale(np.full((16, 16, 3), np.nan, np.float32), "a bird")
    with pytest.raises(ValueError, match="empty"):
        upscaler.upscale(np.zeros((0, 16, 3), np.uint8), "a bird")


def test_outscale_resizes_the_model_output_with_lanczos(model):
    from clipsr_runtime.tiling import resize_float

    arr = np.random.default_rng(3).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    native = Upscaler(model, backend="ort-cpu")
    emb = native.encode_prompt("a bird")
    full = native.upscale_rgb(arr.astype(np.float32) / 255 * 2 - 1, emb)
    scaled = Upscaler(model, backend="ort-cpu", outscale=2.5)
    assert scaled.plan(40, 24).size == (100, 60)  # int(size * outscale), as Real-ESRGAN does
    out = scaled.upscale_rgb(arr.astype(np.float32) / 255 * 2 - 1, emb)
    expected = np.clip(resize_float(full, (60, 100), Image.Resampling.LANCZOS), -1, 1)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert scaled.upscale(arr, "a bird").size == (100, 60)
    assert Upscaler(model, backend="ort-cpu", outscale=0.1).upscale(arr, "a bird").size == (4, 2)


@pytest.mark.parametrize("kwargs, message", [
    ({"outscale": 0}, "outscale must be a positive number"),
    ({"outscale": float("inf")}, "outscale must be a positive number"),
    ({"max_output_pixels": 0}, "max_output_pixels must be >= 1"),
    ({"tile_pad": 9}, r"tile_pad must be in \[0, 8\] for 16 px tiles, got 9"),
    ({"tile": 4, "tile_pad": 3}, r"tile_pad must be in \[0, 2\] for 4 px tiles"),
    ({"tile": 0}, "tile must be >= 1"),
    ({"fit": "crop"}, "fit must be one of"),
])
def test_bad_options_are_option_errors(model, kwargs, message):
    from clipsr_runtime.errors import OptionError

    with pytest.raises(OptionError, match=message):
        Upscaler(model, backend="ort-cpu", **kwargs)


def test_default_tile_pad_fits_a_small_tile(model):
    assert Upscaler(model, backend="ort-cpu", tile=4).tile_pad == 2  # LR size / 4 would be 4: too much
    assert Upscaler(model, backend="ort-cpu").tile_pad == 4


def test_plan_says_mode_sizes_and_tiles(model):
    up = Upscaler(model, backend="ort-cpu")
    assert up.plan(16, 16).mode == "direct" and up.plan(16, 16).tiles == 1
    tiled = up.plan(64, 64)
    assert (tiled.mode, tiled.size, tiled.tiles) == ("tile", (256, 256), 25)
    resized = Upscaler(model, backend="ort-cpu", fit="resize").plan(64, 32)
    assert (resized.mode, resized.model_size, resized.size) == ("resize", (64, 64), (256, 128))
    with pytest.raises(ValueError, match="no pixels"):
        up.plan(0, 5)


def test_tile_progress_hears_every_tile(model):
    up = Upscaler(model, backend="ort-cpu", batch=3)
    done = []
    up.upscale_rgb(np.zeros((64, 64, 3), np.float32), up.encode_prompt("a bird"), progress=done.append)
    assert sum(done) == up.plan(64, 64).tiles == 25 and max(done) == 3


def test_upscale_file_refuses_from_the_header(model, tmp_path, monkeypatch):
    src = tmp_path / "big.png"
    Image.new("RGB", (64, 64)).save(src)
    planned = []
    up = Upscaler(model, backend="ort-cpu", max_output_pixels=100 * 100)
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded before the size check"))
    with pytest.raises(ValueError, match=r"big\.png: output would be 256x256 .* over the limit of 10,000"):
        up.upscale_file(src, tmp_path / "out.png", "a bird", on_plan=planned.append)
    assert planned == [] and not (tmp_path / "out.png").exists()


def test_upscale_of_a_path_refuses_from_the_header(model, tmp_path, monkeypatch):
    from PIL import ImageFile

    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded before the size check"))
    with pytest.raises(ValueError, match="over the limit"):
        Upscaler(model, backend="ort-cpu", max_output_pixels=100 * 100).upscale(tmp_path / "big.png", "a bird")


# --- choices and lifetime ------------------------------------------------------------------------

@pytest.mark.parametrize("option, value", [("fit", "bogus"), ("backend", "cuda"), ("precision", "int3")])
def test_choices_are_checked_before_the_model_loads(tmp_path, option, value):
    with pytest.raises(ValueError, match=f"{option} must be one of .*, got '{value}'"):
        Upscaler(tmp_path / "not-a-model", **{option: value})  # the choice, not the missing folder, is reported


def test_upscaler_and_ort_backend_close_as_context_managers(model):
    from clipsr_runtime.backends import BackendClosedError

    with Upscaler(model, backend="ort-cpu") as up:
        assert up.upscale(np.zeros((16, 16, 3), np.uint8), "a bird").size == (64, 64)
    with pytest.raises(BackendClosedError, match="ort-cpu backend was closed"):
        up.backend.run_generator(np.zeros((1, 3, 16, 16), np.float32), np.zeros((1, 8), np.float32))
    up.close()  # twice is fine


def test_trt_backend_close_frees_buffers_and_stream(monkeypatch):
    from clipsr_runtime.backends import BackendClosedError
    from clipsr_runtime.backends import tensorrt as trt_backend

    freed, destroyed = [], []
    fake = type("FakeCudart", (), {"cudaFree": staticmethod(lambda ptr: freed.append(ptr) or (0,)),
                                   "cudaStreamDestroy": staticmethod(lambda s: destroyed.append(s) or (0,))})
    monkeypatch.setattr(trt_backend, "_cudart", lambda: fake)
    engines = []
    for buffers in ({"tokens": (11, 64), "text_embedding": (12, 32)}, {"lr": (21, 64), "sr": (22, 64)}):
        engine = object.__new__(trt_backend.TrtEngine)
        engine.buffers, engine.engine, engine.context = dict(buffers), "engine", "context"
        engines.append(engine)
    backend = object.__new__(trt_backend.TrtBackend)
    backend.name, backend.precision, backend._stream = "trt", "fp32", 99
    backend._text, backend._gen = engines
    with backend:
        pass
    assert sorted(freed) == [11, 12, 21, 22] and destroyed == [99]
    assert all(e.buffers == {} and e.context is None and e.engine is None for e in engines)
    backend.close()
    assert len(freed) == 4 and destroyed == [99]  # nothing freed twice
    with pytest.raises(BackendClosedError, match="trt backend was closed"):
        backend.run_text(np.zeros((1, 77), np.int32))


# --- backends own their lifecycle -----------------------------------------------------------------

def _backends_here() -> list[str]:
    from clipsr_runtime.backends.openvino import installed

    return ["auto", "ort-cpu"] + ["openvino"] * installed()


@pytest.mark.parametrize("backend", _backends_here())
def test_every_backend_closes_as_a_context_manager(model, backend):
    from clipsr_runtime.backends import BackendClosedError

    with Upscaler(model, backend=backend) as up:
        assert up.upscale(np.zeros((16, 16, 3), np.uint8), "a bird").size == (64, 64)
    with pytest.raises(BackendClosedError, match="backend was closed"):
        up.backend.run_text(np.zeros((1, 77), np.int32))
    up.close()  # twice is fine
    Upscaler(model, backend=backend).close()


def test_every_backend_inherits_the_one_base_class():
    from clipsr_runtime.backends import Backend
    from clipsr_runtime.backends.openvino import OpenVinoBackend
    from clipsr_runtime.backends.ort import OrtBackend
    from clipsr_runtime.backends.tensorrt import TrtBackend

    assert all(issubclass(cls, Backend) for cls in (OrtBackend, OpenVinoBackend, TrtBackend))

    class Forgetful(Backend):  # says how to run but not how to free
        def _run_text(self, tokens):
            return tokens

        def _run_generator(self, lr, text_embedding):
            return lr

    with pytest.raises(TypeError, match="_release"):
        Forgetful("forgetful", "fp32")


@pytest.mark.parametrize("backend", [b for b in _backends_here() if b != "auto"])
def test_a_manifest_calling_a_fixed_input_dynamic_is_refused_at_load(tmp_path, backend):
    folder = make_model_dir(tmp_path / "m", dynamic=False)
    _edit_manifest(folder, generator={**json.loads((folder / "model.json").read_text())["generator"],
                                      "inputs": {"lr": {"shape": ["batch", 3, "h", "w"], "dtype": "float32"},
                                                 "text_embedding": {"shape": ["batch", 8], "dtype": "float32"}}})
    with pytest.raises(ValueError, match=r"generator.onnx: the graph's input lr has shape \['\?', 3, 16, 16\]"):
        Upscaler(folder, backend=backend)


def test_upscale_file_refuses_to_replace_its_input_by_any_name(upscaler, tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(src)
    before = src.read_bytes()
    (tmp_path / "link.png").symlink_to(src)
    os.link(src, tmp_path / "hard.png")
    for dst in (src, tmp_path / "sub" / ".." / "a.png", tmp_path / "link.png", tmp_path / "hard.png"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(ValueError, match="writing it would destroy the input"):
            upscaler.upscale_file(src, dst, "a bird")
    assert src.read_bytes() == before


def test_upscale_file_without_overwrite_keeps_an_existing_output(upscaler, tmp_path):
    src, dst = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(src)
    dst.write_bytes(b"someone else's")
    with pytest.raises(FileExistsError, match="kept"):
        upscaler.upscale_file(src, dst, "a bird", overwrite=False)
    assert dst.read_bytes() == b"someone else's"
    assert upscaler.upscale_file(src, dst, "a bird") == dst and Image.open(dst).size == (64, 64)


def test_plan_of_an_absurd_size_is_refused_at_once(upscaler):
    with pytest.raises(ValueError, match="over the limit"):
        upscaler.plan(10**12, 10**12)


@pytest.mark.parametrize("threads", [-1, 0, 1 << 40])
def test_thread_counts_are_checked_before_any_backend_sees_them(model, threads):
    for backend in _backends_here():
        with pytest.raises(OptionError, match="threads must be between 1 and 1024"):
            Upscaler(model, backend=backend, threads=threads)
