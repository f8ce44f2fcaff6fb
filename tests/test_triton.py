"""Serving on Triton: repositories whose configs Triton's own ModelConfig protobuf accepts, and a real
tritonserver (from the nvidia-pytriton wheel, on loopback) serving the Python-backend repository."""

from __future__ import annotations

import shutil
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from clipsr_runtime.cli import app as run_app
from clipsr_runtime.manifest import default_model_dir, load_manifest
from clipsr_runtime.triton import local_server
from clipsr_runtime.triton.cli import app as triton_app
from clipsr_runtime.triton.configs import ServeOptions
from clipsr_runtime.triton.repository import write_repository

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="needs clipsr[serve]")
from google.protobuf import text_format  # noqa: E402  (tritonclient brings protobuf)

MODEL = default_model_dir()
STEPS = ("tokenizer", "preprocess", "text_encoder", "generator", "postprocess")


def _configs(repo: Path) -> dict[str, object]:
    """Every config.pbtxt parsed into Triton's ModelConfig: unknown fields or wrong types raise."""
    parsed = {}
    for path in sorted(repo.glob("*/config.pbtxt")):
        parsed[path.parent.name] = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return parsed


def _ensemble_is_wired(configs: dict) -> None:
    """Each step reads tensors its model declares, fed by the ensemble's inputs or an earlier step."""
    ensemble = configs["clipsr"]
    available = {t.name for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        assert set(step.input_map) == {t.name for t in model.input}
        assert set(step.input_map.values()) <= available, step.model_name
        assert set(step.output_map) == {t.name for t in model.output}
        available |= set(step.output_map.values())
    assert {t.name for t in ensemble.output} <= available


def _model_with_engines(tmp_path: Path) -> Path:
    """A copy of the built-in model with one (placeholder) engine per stage, as --backend trt leaves."""
    folder = shutil.copytree(MODEL, tmp_path / "model")
    (folder / "engines").mkdir()
    for stage in ("text_encoder", "generator"):
        (folder / "engines" / f"{stage}-0123456789abcdef0123456789abcdef.engine").write_bytes(b"plan")
    return folder


def test_onnxruntime_repository_is_valid_triton_config(tmp_path):
    opts = ServeOptions(platform="onnxruntime", precision="fp16", max_batch=16, ort_trt="fp16", instances=2)
    repo = write_repository(MODEL, tmp_path / "repo", opts)
    configs = _configs(repo)
    assert sorted(configs) == sorted([*STEPS, "clipsr"])
    manifest = load_manifest(MODEL)
    for stage in ("text_encoder", "generator"):
        config = configs[stage]
        assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 16
        assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]
        assert config.instance_group[0].count == 2
        assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
        assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
        spec = getattr(manifest, stage)
        assert {t.name: list(t.dims) for t in config.input} == {n: s["shape"][1:] for n, s in spec.inputs.items()}
        onnx_file = repo / stage / "1" / "model.onnx"
        assert onnx_file.read_bytes() == manifest.stage_file(stage, "fp16").read_bytes()
    assert configs["tokenizer"].backend == "python"
    assert configs["clipsr"].platform == "ensemble" and not configs["clipsr"].instance_group
    assert [t.data_type for t in configs["clipsr"].input] == [model_config_pb2.TYPE_STRING,
                                                              model_config_pb2.TYPE_UINT8]
    _ensemble_is_wired(configs)


def test_tensorrt_and_python_repositories_are_valid_triton_config(tmp_path):
    model = _model_with_engines(tmp_path)
    trt = _configs(write_repository(model, tmp_path / "trt", ServeOptions(platform="tensorrt")))
    assert trt["generator"].platform == "tensorrt_plan"
    assert (tmp_path / "trt" / "generator" / "1" / "model.plan").read_bytes() == b"plan"
    _ensemble_is_wired(trt)
    python = _configs(write_repository(model, tmp_path / "py", ServeOptions(platform="python", gpu=False)))
    assert python["generator"].backend == "python" and not python["generator"].platform
    assert python["generator"].parameters["stage"].string_value == "generator"
    assert (tmp_path / "py" / "generator" / "1" / "model" / "model.json").is_file()
    _ensemble_is_wired(python)


def test_clipsr_triton_writes_the_repository_and_prints_it(tmp_path):
    (tmp_path / "empty").mkdir()  # an empty folder may be the target
    result = CliRunner().invoke(triton_app, [str(MODEL), str(tmp_path / "empty"), "--platform", "python",
                                             "--cpu", "--max-batch", "4", "--queue-delay-us", "500"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "empty")
    configs = _configs(tmp_path / "empty")
    assert {c.max_batch_size for c in configs.values()} == {4}
    assert {c.dynamic_batching.max_queue_delay_microseconds for n, c in configs.items() if n != "clipsr"} == {500}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no temporary folder left


@pytest.mark.parametrize("args,message,status", [
    (["{model}", "{tmp}/repo", "--platform", "tensorrt"], "no text_encoder TensorRT engine", 1),
    (["{model}", "{tmp}/repo", "--platform", "onnx"], "platform must be one of", 2),
    (["{model}", "{tmp}/repo", "--platform", "python", "--ort-trt", "fp16"], "ONNX Runtime backend option", 2),
    (["{model}", "{tmp}/repo", "--max-batch", "0"], "must be >= 1", 2),
    (["{model}", "{tmp}/repo", "--cpu", "--ort-trt", "fp16"], "accelerator runs on GPUs", 2),
    (["{model}", "{tmp}/repo", "--platform", "python", "--threads", "-1"], "--threads must be between 1", 2),
    (["{model}", "{tmp}/repo", "--max-batch", "many"], "Invalid value for '--max-batch'", 2),
    (["{tmp}/nomodel", "{tmp}/repo"], "has no model.json", 1),
    (["{model}", "{tmp}/taken"], "already exists", 1),
])
def test_clipsr_triton_errors_are_one_line(tmp_path, args, message, status):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(triton_app, [a.format(model=MODEL, tmp=tmp_path) for a in args])
    assert result.exit_code == status and "Traceback" not in result.stderr
    assert "Usage:" not in result.stderr and "╭" not in result.stderr  # no click/rich error box
    assert result.stderr.count("error:") == 1 and message in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no repository, no temporary folder
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


# --- a real server ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    reason = local_server.unavailable_reason()
    if reason:
        pytest.skip(reason)
    repo = tmp_path_factory.mktemp("triton") / "repo"
    opts = ServeOptions(platform="python", gpu=False, runtime_backend="ort-cpu", threads=1, max_batch=8,
                        queue_delay_us=20000)
    write_repository(MODEL, repo, opts)
    with local_server.start(repo) as running:
        yield running


def _png(path: Path, size=(16, 16), seed=0, mode="RGB") -> Path:
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).convert(mode).save(path)
    return path


def _errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def _run(*args):
    result = CliRunner().invoke(run_app, [str(a) for a in args])
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture(scope="module")
def local_outputs(tmp_path_factory):
    """A folder of inputs (LR-size RGB, a larger grayscale one to tile, a broken file) run locally."""
    root = tmp_path_factory.mktemp("inputs")
    for i in range(3):
        _png(root / "in" / f"bird{i}.png", seed=i)
    _png(root / "in" / "tall.png", size=(40, 24), seed=7, mode="L")
    (root / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    result = _run(root / "in", "a bird with a red crown", "--backend", "ort-cpu", "--threads", "1",
                  "-o", root / "local")
    assert result.exit_code == 1 and "4 written, 1 failed" in result.stderr
    (root / "local-errors.txt").write_text("\n".join(_errors(result)))
    return root


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_server_outputs_equal_local_run(server, local_outputs, scheme):
    url = server.http_url if scheme == "http" else server.grpc_url
    out = local_outputs / f"served-{scheme}"
    result = _run(local_outputs / "in", "a bird with a red crown", "--server", url, "-o", out)
    assert result.exit_code == 1  # the broken file, as in the local run
    assert _errors(result) == (local_outputs / "local-errors.txt").read_text().splitlines()  # broken.png
    assert "4 written, 1 failed, 1 prompt(s) encoded" in result.stderr
    names = sorted(p.name for p in (local_outputs / "local").iterdir())
    assert names == sorted(p.name for p in out.iterdir()) and len(names) == 4
    for name in names:
        local, served = (Image.open(folder / name) for folder in (local_outputs / "local", out))
        assert served.mode == local.mode and served.size == local.size
        diff = np.abs(np.asarray(local, np.int16) - np.asarray(served, np.int16))
        assert diff.max() <= 1, name


def test_client_errors_are_one_line(server, tmp_path):
    src = _png(tmp_path / "in.png")
    for args, message, status in [
        ([src, "   ", "--server", server.grpc_url], "empty prompt", 2),
        ([src, "a bird", "--server", server.http_url, "--tile", "8"], "takes 16x16 LR tiles", 2),
        ([src, "a bird", "--server", server.http_url, "--tile-pad", "9"], "tile_pad must be in [0, 8]", 2),
        ([src, "a bird", "--server", "ftp://127.0.0.1:1"], "--server must look like", 2),
        ([src, "a bird", "--server", server.http_url, "--threads", "0"], "--threads must be between 1 and 1024", 2),
        ([src, "a bird", "--server", server.http_url, "--model", MODEL], "--model cannot apply with --server", 2),
        ([src, "a bird", "--server", server.http_url, "--precision", "fp16"], "--precision cannot apply", 2),
        ([src, "a bird", "--server", server.http_url, "-o", src], "overwritten by its own output", 2),
        ([src, "a bird", "--server", f"http://127.0.0.1:{local_server.free_ports(1)[0]}"], "cannot reach", 1),
        ([src, "a bird", "--server", server.http_url, "--max-output-pixels", "1000"], "over the limit", 1),
    ]:
        result = _run(*args)
        errors = _errors(result)
        assert result.exit_code == status and len(errors) == 1 and message in errors[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]  # nothing written


def test_server_run_plans_outputs_and_reads_prompts_as_a_local_run(server, tmp_path):
    """Existing outputs, collisions and prompt files: the same planning and reader as a local run."""
    folder = tmp_path / "in"
    _png(folder / "a.png", seed=1)
    _png(folder / "b.png", seed=2)
    out = tmp_path / "out"
    (out / "a_x16.png").parent.mkdir()
    (out / "a_x16.png").write_bytes(b"kept by the user")
    refused = _run(folder, "a bird", "--server", server.http_url, "-o", out)
    assert refused.exit_code == 2 and f"{out / 'a_x16.png'} exists" in _errors(refused)[0]
    assert sorted(p.name for p in out.iterdir()) == ["a_x16.png"]  # b was not written either
    kept = _run(folder, "a bird", "--server", server.grpc_url, "-o", out, "--skip-existing")
    assert kept.exit_code == 0 and "1 written, 0 failed, 1 kept" in kept.stderr
    assert (out / "a_x16.png").read_bytes() == b"kept by the user"
    assert Image.open(out / "b_x16.png").size == (256, 256)
    _png(folder / "a.tif", seed=3)
    collide = _run(folder, "a bird", "--server", server.http_url, "--ext", "png", "-o", tmp_path / "other")
    assert collide.exit_code == 2 and "would both be written to" in _errors(collide)[0]
    assert not (tmp_path / "other").exists()
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"image": "a.png", "prompt": 3}\n')
    strict = _run(folder, "-", "--server", server.http_url, "--prompts", prompts, "-o", tmp_path / "other")
    assert strict.exit_code == 1
    assert _errors(strict) == [f"error: prompt file {prompts}, line 1: prompt must be text, got int 3"]
    replaced = _run(folder / "a.png", "a bird", "--server", server.http_url, "-o", out, "--overwrite",
                    "--outscale", "2")
    assert replaced.exit_code == 0 and replaced.stdout.strip() == str(out / "a_x16.png")
    assert "info: a.png: 16x16 -> 32x32 (direct)" in replaced.stderr
    assert Image.open(out / "a_x16.png").size == (32, 32)
    assert not (tmp_path / "other").exists()


def _request(http, prompt, image, prompt_type="BYTES", image_type="UINT8"):
    text = http.InferInput("PROMPT", list(prompt.shape), prompt_type)
    text.set_data_from_numpy(prompt)
    pixels = http.InferInput("IMAGE", list(image.shape), image_type)
    pixels.set_data_from_numpy(image)
    return [text, pixels]


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(server):
    import tritonclient.http as http

    client = http.InferenceServerClient(server.http_url.removeprefix("http://"))
    prompt = np.array([[b"a bird"]], dtype=np.object_)
    image = np.zeros((1, 16, 16, 3), np.uint8)
    png = np.frombuffer(Path(MODEL / "model.json").read_bytes()[:64], np.uint8)[None]
    cases = [
        (_request(http, np.array([[b" "]], dtype=np.object_), image), "empty prompt"),
        (_request(http, np.array([[b"\xff\xfe"]], dtype=np.object_), image), "not UTF-8"),
        (_request(http, prompt, image.astype(np.float32), image_type="FP32"), "data-type"),
        (_request(http, prompt, np.zeros((1, 20, 20, 3), np.uint8)), "shape"),
        (_request(http, prompt, png), "shape"),  # a file's bytes, not pixels
        (_request(http, prompt, np.zeros((1, 2048, 2048, 3), np.uint8)), "shape"),  # oversized
    ]
    for inputs, message in cases:
        with pytest.raises(http.InferenceServerException) as caught:
            client.infer("clipsr", inputs)
        assert message in caught.value.message(), caught.value.message()
        good = client.infer("clipsr", _request(http, prompt, image)).as_numpy("SR_IMAGE")
        assert good.shape == (1, 256, 256, 3) and good.dtype == np.uint8


def test_dynamic_batching_merges_concurrent_requests(server):
    import tritonclient.http as http

    def stats(client):
        entry = client.get_inference_statistics("generator")["model_stats"][0]
        return entry["inference_count"], entry["execution_count"]

    probe = http.InferenceServerClient(server.http_url.removeprefix("http://"))
    before = stats(probe)
    errors: list[Exception] = []

    def send(seed: int) -> None:
        client = http.InferenceServerClient(server.http_url.removeprefix("http://"))
        image = np.random.default_rng(seed).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
        try:
            for _ in range(2):
                client.infer("clipsr", _request(http, np.array([[b"a red bird"]], dtype=np.object_), image))
        except Exception as exc:  # collected: a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    inferences, executions = (after - earlier for after, earlier in zip(stats(probe), before))
    assert inferences == 16  # 16 single-image requests ...
    assert executions < inferences  # ... ran in fewer generator calls: batches > 1
    sizes = {b["batch_size"] for b in probe.get_inference_statistics("generator")["model_stats"][0]["batch_stats"]}
    assert max(sizes) > 1


def test_a_python_network_step_closes_its_backend_when_triton_unloads_it(tmp_path, monkeypatch):
    import json
    import sys

    from google.protobuf.json_format import MessageToDict

    from clipsr_runtime.backends import BackendClosedError
    from clipsr_runtime.triton.steps import NetworkStep

    repo = write_repository(MODEL, tmp_path / "py", ServeOptions(platform="python", gpu=False,
                                                                  runtime_backend="ort-cpu"))
    config = MessageToDict(_configs(repo)["text_encoder"], preserving_proto_field_name=True)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    step = NetworkStep()
    step.initialize({"model_config": json.dumps(config), "model_repository": str(repo / "text_encoder"),
                     "model_version": "1"})
    tokens = np.zeros((1, 77), np.int32)
    assert step.compute(tokens)[0].shape == (1, 64)
    step.finalize()  # what Triton calls on unload
    with pytest.raises(BackendClosedError):
        step.compute(tokens)


def test_a_remote_upscaler_closes_its_connections(monkeypatch):
    from clipsr_runtime.triton import client as triton_client

    closed = []

    class FakeClient:
        def __init__(self, address):
            self.address = address

        def is_model_ready(self, name):
            return True

        def get_model_config(self, name):
            return {"max_batch_size": 4, "input": [{"name": "IMAGE", "dims": [16, 16, 3]}],
                    "output": [{"name": "SR_IMAGE", "dims": [256, 256, 3]}]}

        def close(self):
            closed.append(self.address)

    fake = types.SimpleNamespace(InferenceServerClient=FakeClient)
    monkeypatch.setattr(triton_client, "_client_module", lambda protocol: fake)
    with triton_client.RemoteUpscaler("http://localhost:8000") as remote:
        assert remote.manifest.scale == 16
    assert closed == ["localhost:8000"]
    remote.close()  # twice is fine
    assert closed == ["localhost:8000"]
