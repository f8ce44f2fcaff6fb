"""`clipsr-run` end to end: torch-free process, folders with bad files, prompt files, one-line errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from clipsr_runtime.cli import app
from runtime_fixtures import make_model_dir


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("model"))


def _png(path: Path, size=(16, 16), seed=0, mode="RGB") -> Path:
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).convert(mode).save(path)
    return path


def _cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.stderr
    return result


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_runs_in_a_process_where_torch_cannot_be_imported(model, tmp_path):
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None  # import torch fails\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(guard), *sys.path]))
    blocked = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0 and "ModuleNotFoundError" in blocked.stderr  # the guard works
    src = _png(tmp_path / "bird.png")
    script = shutil.which("clipsr-run", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-c", "from clipsr_runtime.cli import main; main()"]
    done = subprocess.run([*command, str(src), "a bird with a red crown", "--model", str(model),
                           "--backend", "ort-cpu"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "bird_x4.png"
    assert done.stdout.strip() == str(out)
    assert Image.open(out).size == (64, 64)
    assert "backend ort-cpu" in done.stderr and "1 written, 0 failed" in done.stderr


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys; from clipsr_runtime.cli import main; sys.argv=['clipsr-run','--help']\n"
            "try: main()\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('onnxruntime', 'numpy', 'PIL', 'torch') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "--tile-pad" in done.stdout and "HEAVY []" in done.stdout


def test_folder_with_a_bad_file_processes_the_rest(model, tmp_path):
    folder = tmp_path / "in"
    _png(folder / "a.png", seed=1)
    _png(folder / "b.jpg", seed=2)
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "notes.txt").write_text("not an image, not listed")
    result = _cli(folder, "a bird", "--model", model, "-o", tmp_path / "out")
    assert result.exit_code == 1
    errors = _error_lines(result)
    assert len(errors) == 1 and "bad.png" in errors[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_x4.png", "b_x4.jpg"]
    assert "2 written, 1 failed, 1 prompt(s) encoded" in result.stderr  # one prompt, encoded once


def test_recursive_ext_and_earlier_outputs_skipped(model, tmp_path):
    folder = tmp_path / "in"
    _png(folder / "top.png")
    _png(folder / "sub" / "deep.png", mode="L")
    _png(folder / "top_x4.png")  # an earlier output: not upscaled again
    result = _cli(folder, "a bird", "--model", model, "-r", "--ext", "tif", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert Image.open(tmp_path / "out" / "top_x4.tif").size == (64, 64)
    assert Image.open(tmp_path / "out" / "sub" / "deep_x4.tif").mode == "L"  # grayscale stays grayscale
    assert "2 written, 0 failed" in result.stderr


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_per_image_prompts(model, tmp_path, kind):
    folder = tmp_path / "in"
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        _png(folder / name, seed=0)
    if kind == "csv":
        (tmp_path / "p.csv").write_text('image,prompt\na.png,a red bird\nb.png,"a blue bird, small"\n')
    else:
        (tmp_path / "p.jsonl").write_text('{"image": "a.png", "prompt": "a red bird"}\n'
                                          '{"image": "b.png", "prompt": "a blue bird, small"}\n')
    result = _cli(folder, "-", "--model", model, "--prompts", tmp_path / f"p.{kind}", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert len(_error_lines(result)) == 1 and "c.png: no prompt for it" in result.stderr
    a, b = (np.asarray(Image.open(tmp_path / "out" / f"{n}_x4.png"), np.int16) for n in "ab")
    assert np.abs(a - b).max() > 2  # same pixels, different prompts
    assert "2 written, 1 failed, 2 prompt(s) encoded" in result.stderr


def test_single_file_to_named_output(model, tmp_path):
    src = _png(tmp_path / "x.png", size=(40, 24))
    result = _cli(src, "a bird", "--model", model, "-o", tmp_path / "big.webp", "--batch", "2")
    assert result.exit_code == 0, result.stderr
    assert Image.open(tmp_path / "big.webp").size == (96, 160)


@pytest.mark.parametrize("args,message,status", [
    (["{src}", "   ", "--model", "{model}"], "empty prompt", 2),
    (["{tmp}/missing.png", "a bird", "--model", "{model}"], "missing.png: no such file", 2),
    (["{src}", "a bird", "--model", "{tmp}/nomodel"], "has no model.json", 1),
    (["{src}", "a bird", "--model", "{model}", "--backend", "trt"], "backend 'trt' is not available", 1),
    (["{src}", "a bird", "--model", "{model}", "--ext", "gif"], "--ext must be one of", 2),
    (["{src}", "-", "--model", "{model}"], "needs --prompts", 2),
    (["{src}", "a bird", "--model", "{model}", "--precision", "fp8"], "precision must be one of", 2),
    (["{src}", "a bird", "--model", "{model}", "--fit", "bogus"], "--fit must be one of", 2),
    (["{src}", "a bird", "--model", "{model}", "--backend", "cuda"], "--backend must be one of", 2),
    (["{src}", "a bird", "--model", "{model}", "--batch", "0"], "batch must be >= 1", 2),
    (["{src}", "a bird", "--model", "{model}", "--batch", "many"], "Invalid value for '--batch'", 2),
    (["{src}", "a bird", "--model", "{model}", "--outscale", "0"], "outscale must be a positive", 2),
    (["{src}", "a bird", "--model", "{model}", "--outscale", "nan"], "outscale must be a positive", 2),
    (["{src}", "a bird", "--model", "{model}", "--no-such-flag"], "No such option", 2),
    (["{src}"], "Missing argument 'prompt'", 2),
    (["{src}", "a bird", "--model", "{model}", "--overwrite", "--skip-existing"], "contradict", 2),
])
def test_errors_are_one_line(model, tmp_path, args, message, status):
    pytest.importorskip("onnxruntime")
    if "trt" in args:
        from clipsr_runtime.backends.tensorrt import unavailable_reason

        if unavailable_reason() is None:
            pytest.skip("TensorRT is available here")
    src = _png(tmp_path / "in.png")
    result = _cli(*[a.format(src=src, model=model, tmp=tmp_path) for a in args])
    assert result.exit_code == status
    assert len(_error_lines(result)) == 1 and message in _error_lines(result)[0]
    assert "Usage:" not in result.stderr and "╭" not in result.stderr  # no click/rich error box
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]  # nothing written


def test_tampered_model_is_refused(tmp_path):
    folder = make_model_dir(tmp_path / "m")
    data = bytearray((folder / "text_encoder.onnx").read_bytes())
    data[-1] ^= 1
    (folder / "text_encoder.onnx").write_bytes(bytes(data))
    result = _cli(_png(tmp_path / "in.png"), "a bird", "--model", folder)
    assert result.exit_code == 1 and "does not match its sha256" in _error_lines(result)[0]


def test_unwritable_output_leaves_no_partial_file(model, tmp_path):
    src = _png(tmp_path / "in.png")
    (tmp_path / "out" / "in_x4.png").mkdir(parents=True)  # a folder where the output file should go
    result = _cli(src, "a bird", "--model", model, "-o", tmp_path / "out", "--overwrite")
    assert result.exit_code == 1 and "cannot write" in _error_lines(result)[0]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["in_x4.png"]  # no temp file left
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the output folder should be")
    result = _cli(src, "a bird", "--model", model, "-o", blocker / "o.png")
    assert result.exit_code == 1 and len(_error_lines(result)) == 1
    assert blocker.read_text().startswith("a file") and not list(tmp_path.glob("**/*.part"))
