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
    (["{src}", "a bird", "--model", "{model}", "--batch", "0"], "batch must be between 1 and 1024", 2),
    (["{src}", "a bird", "--model", "{model}", "--batch", "1099511627776"], "batch must be between 1 and", 2),
    (["{src}", "a bird", "--model", "{model}", "--batch", "many"], "Invalid value for '--batch'", 2),
    (["{src}", "a bird", "--model", "{model}", "--outscale", "0"], "outscale must be a positive", 2),
    (["{src}", "a bird", "--model", "{model}", "--outscale", "nan"], "outscale must be a positive", 2),
    (["{src}", "a bird", "--model", "{model}", "--no-such-flag"], "No such option", 2),
    (["{src}"], "Missing argument 'prompt'", 2),
    (["{src}", "a bird", "--model", "{model}", "--overwrite", "--skip-existing"], "contradict", 2),
    (["{src}", "a bird", "--model", "{model}", "--threads", "-1"], "--threads must be between 1 and 1024", 2),
    (["{src}", "a bird", "--model", "{model}", "--threads", "1099511627776"], "--threads must be between", 2),
    (["{src}", "a bird", "--server", "http://[::1"], "is not a URL", 2),
    (["{src}", "a bird", "--model", "{model}", "--suffix", "/../../escaped"], "not a path", 2),
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


# --- outputs never destroy inputs or each other ----------------------------------------------------

def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("how", [["-o", "{src}"], ["--suffix", ""], ["--suffix", "", "--overwrite"],
                                 ["-o", "{tmp}/./in.png"]])
def test_output_equal_to_the_input_is_refused(model, tmp_path, how):
    src = _png(tmp_path / "in.png")
    before = _snapshot(tmp_path)
    result = _cli(src, "a bird", "--model", model, *[a.format(src=src, tmp=tmp_path) for a in how])
    assert result.exit_code == 2
    assert len(_error_lines(result)) == 1 and "would be overwritten by its own output" in result.stderr
    assert _snapshot(tmp_path) == before


def test_empty_suffix_on_a_folder_is_refused_not_a_silent_no_op(model, tmp_path):
    folder = tmp_path / "in"
    _png(folder / "a.png")
    _png(folder / "b.tif", seed=1)
    before = _snapshot(folder)
    result = _cli(folder, "a bird", "--model", model, "--suffix", "")
    assert result.exit_code == 2 and "would be overwritten by its own output" in _error_lines(result)[0]
    result = _cli(folder, "a bird", "--model", model, "--suffix", "", "--ext", "png")  # b.tif -> b.png: fine,
    assert result.exit_code == 2 and "a.png would be overwritten" in _error_lines(result)[0]  # a.png: not
    assert _snapshot(folder) == before
    result = _cli(folder, "a bird", "--model", model, "--suffix", "", "-o", tmp_path / "out")
    assert result.exit_code == 0 and sorted(_snapshot(tmp_path / "out")) == ["a.png", "b.tif"]


def test_a_folder_with_nothing_to_do_is_an_error(model, tmp_path):
    (tmp_path / "empty").mkdir()
    result = _cli(tmp_path / "empty", "a bird", "--model", model)
    assert result.exit_code == 1 and "no images to upscale" in _error_lines(result)[0]
    _png(tmp_path / "done" / "a_x4.png")  # only earlier outputs
    result = _cli(tmp_path / "done", "a bird", "--model", model)
    assert result.exit_code == 1 and "1 skipped: their names end with '_x4'" in _error_lines(result)[0]


def test_two_inputs_mapping_to_one_output_are_refused_before_work(model, tmp_path):
    folder = tmp_path / "in"
    _png(folder / "a.png")
    _png(folder / "a.tif", seed=1)
    result = _cli(folder, "a bird", "--model", model, "--ext", "png", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert len(_error_lines(result)) == 1 and "would both be written to" in result.stderr
    assert "a.png" in result.stderr and "a.tif" in result.stderr
    assert not (tmp_path / "out").exists() and "done:" not in result.stderr


def test_existing_outputs_need_a_choice(model, tmp_path):
    folder = tmp_path / "in"
    _png(folder / "a.png")
    _png(folder / "b.png", seed=1)
    out = tmp_path / "out"
    assert _cli(folder, "a bird", "--model", model, "-o", out).exit_code == 0
    (out / "a_x4.png").write_bytes(b"kept by the user")
    (out / "b_x4.png").unlink()
    again = _cli(folder, "a bird", "--model", model, "-o", out)
    assert again.exit_code == 2 and len(_error_lines(again)) == 1
    assert f"{out / 'a_x4.png'} exists" in again.stderr
    assert "--overwrite" in again.stderr and "--skip-existing" in again.stderr
    assert sorted(_snapshot(out)) == ["a_x4.png"]  # b was not written either: refused before work
    skip = _cli(folder, "a bird", "--model", model, "-o", out, "--skip-existing")
    assert skip.exit_code == 0 and "1 written, 0 failed, 1 kept" in skip.stderr
    assert (out / "a_x4.png").read_bytes() == b"kept by the user" and (out / "b_x4.png").is_file()
    replace = _cli(folder, "a bird", "--model", model, "-o", out, "--overwrite")
    assert replace.exit_code == 0 and "2 written" in replace.stderr
    assert Image.open(out / "a_x4.png").size == (64, 64)


def test_folder_input_with_a_file_name_output_is_refused(model, tmp_path):
    folder = tmp_path / "in"
    _png(folder / "a.png")
    result = _cli(folder, "a bird", "--model", model, "-o", tmp_path / "x.png")
    assert result.exit_code == 2 and "looks like an image file name" in _error_lines(result)[0]
    assert not (tmp_path / "x.png").exists()
    (tmp_path / "f.txt").write_text("a file")
    result = _cli(folder, "a bird", "--model", model, "-o", tmp_path / "f.txt")
    assert result.exit_code == 2 and "needs an output folder" in _error_lines(result)[0]


def test_output_name_and_ext_must_agree(model, tmp_path):
    src = _png(tmp_path / "in.png")
    result = _cli(src, "a bird", "--model", model, "-o", tmp_path / "out.webp", "--ext", "png")
    assert result.exit_code == 2 and "is a WEBP file name but --ext png asks for PNG" in _error_lines(result)[0]
    assert not (tmp_path / "out.webp").exists()
    result = _cli(src, "a bird", "--model", model, "-o", tmp_path / "out.xyz")
    assert result.exit_code == 2 and "cannot write images with extension '.xyz'" in _error_lines(result)[0]
    result = _cli(src, "a bird", "--model", model, "-o", tmp_path / "out.jpeg", "--ext", "jpg")
    assert result.exit_code == 0 and Image.open(tmp_path / "out.jpeg").format == "JPEG"


# --- refuse before spending ------------------------------------------------------------------------

def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height, with no pixel data: decoding it would fail."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("fit", ["auto", "tile", "resize"])
def test_output_size_is_checked_from_the_header_before_decoding(model, tmp_path, fit):
    src = _png_header_only(tmp_path / "huge.png", 9000, 9000)  # 36000x36000 output at x4
    result = _cli(src, "a bird", "--model", model, "--fit", fit)
    assert result.exit_code == 1
    error = _error_lines(result)[0]
    assert "output would be 36000x36000" in error and "over the limit" in error  # not "corrupt": never decoded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.png"]


def test_outscale_and_output_pixel_limit(model, tmp_path):
    src = _png(tmp_path / "in.png", size=(24, 40))
    result = _cli(src, "a bird", "--model", model, "--outscale", "2.5")
    assert result.exit_code == 0, result.stderr
    assert Image.open(tmp_path / "in_x4.png").size == (100, 60)
    assert "info: in.png: 40x24 -> 100x60 (tile, 6 tiles)" in result.stderr  # said before the work
    limited = _cli(src, "a bird", "--model", model, "--max-output-pixels", "5000", "-o", tmp_path / "o.png")
    assert limited.exit_code == 1 and "output would be 160x96 (15,360 pixels)" in _error_lines(limited)[0]
    working = _cli(src, "a bird", "--model", model, "--outscale", "1", "--max-output-pixels", "5000",
                   "-o", tmp_path / "o.png")
    assert working.exit_code == 1 and "the model's output before outscale" in _error_lines(working)[0]
    assert not (tmp_path / "o.png").exists()


def test_tile_progress_bar_for_images_of_many_tiles(model, tmp_path):
    many = _cli(_png(tmp_path / "big.png", size=(64, 64)), "a bird", "--model", model)
    assert many.exit_code == 0 and "25/25" in many.stderr and "tiles" in many.stderr
    few = _cli(_png(tmp_path / "small.png", size=(16, 40)), "a bird", "--model", model)
    assert few.exit_code == 0 and "(tile, 3 tiles)" in few.stderr and "━" not in few.stderr
    assert "" not in few.stderr.splitlines()  # no empty bar either


def test_tile_pad_making_too_many_tiles_is_refused(model, tmp_path):
    src = _png(tmp_path / "in.png", size=(64, 64))
    result = _cli(src, "a bird", "--model", model, "--tile-pad", "15")
    assert result.exit_code == 2
    assert "tile_pad must be in [0, 8] for 16 px tiles, got 15" in _error_lines(result)[0]
    assert "over four times" in result.stderr


def test_tile_the_model_cannot_take_says_which_works(tmp_path):
    fixed = make_model_dir(tmp_path / "fixed", dynamic=False)
    result = _cli(_png(tmp_path / "in.png"), "a bird", "--model", fixed, "--tile", "32")
    assert result.exit_code == 2 and "the only tile size that works is 16" in _error_lines(result)[0]
    help_text = " ".join(CliRunner().invoke(app, ["--help"]).output.split())
    from clipsr_runtime.manifest import default_model_dir, load_manifest

    from clipsr_runtime.upscaler import DEFAULT_MAX_OUTPUT_PIXELS

    builtin = load_manifest(default_model_dir()).lr_size
    help_text = help_text.replace("│ ", "")
    assert f"fixed LR shape takes only that size (the built-in one: {builtin})" in help_text
    assert f"(default: {DEFAULT_MAX_OUTPUT_PIXELS} = 8192x8192)" in help_text


def test_a_null_prompt_stops_the_run_before_work(model, tmp_path):
    folder = tmp_path / "in"
    _png(folder / "a.png")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"image": "a.png", "prompt": null}\n')
    result = _cli(folder, "-", "--model", model, "--prompts", prompts, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert _error_lines(result) == [f"error: prompt file {prompts}, line 1: no prompt"]
    assert not (tmp_path / "out").exists()


def test_animated_gif_says_only_the_first_frame_is_used(model, tmp_path):
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue", "green")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    result = _cli(tmp_path / "anim.gif", "a bird", "--model", model, "--ext", "png")
    assert result.exit_code == 0
    assert "warning: " in result.stderr and "3 frames (animated or multi-page): only the first" in result.stderr


# --- outputs stay where they were planned, and are never replaced unasked ------------------------------

def test_a_suffix_cannot_lead_outside_the_output_folder(model, tmp_path):
    folder = tmp_path / "in"
    _png(folder / "bird.png")
    victim = tmp_path / "escaped.png"
    victim.write_bytes(b"keep me")
    result = _cli(folder, "a bird", "--model", model, "-o", tmp_path / "out", "--suffix", "/../../escaped")
    assert result.exit_code == 2 and "must be part of a file name" in _error_lines(result)[0]
    assert victim.read_bytes() == b"keep me" and not (tmp_path / "out").exists()


def test_an_output_folder_linked_elsewhere_is_refused(model, tmp_path):
    src = _png(tmp_path / "in" / "sub" / "bird.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").symlink_to(elsewhere)
    result = _cli(src.parent.parent, "a bird", "--model", model, "-o", tmp_path / "out", "-r")
    assert result.exit_code == 2 and "resolves outside" in _error_lines(result)[0]
    assert list(elsewhere.iterdir()) == []


def test_an_output_that_appears_while_the_run_works_is_kept(model, tmp_path, monkeypatch):
    from clipsr_runtime.upscaler import Upscaler

    src = _png(tmp_path / "bird.png")
    dst = tmp_path / "bird_x4.png"
    real = Upscaler.upscale_image

    def racing(self, image, prompt, progress=None):  # another clipsr-run finishes the same output first
        dst.write_bytes(b"the other run's result")
        return real(self, image, prompt, progress)

    monkeypatch.setattr(Upscaler, "upscale_image", racing)
    result = _cli(src, "a bird", "--model", model, "--backend", "ort-cpu")
    assert result.exit_code == 1 and "appeared while this image was being upscaled" in _error_lines(result)[0]
    assert dst.read_bytes() == b"the other run's result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bird.png", "bird_x4.png"]  # no temporary file
    dst.unlink()
    result = _cli(src, "a bird", "--model", model, "--backend", "ort-cpu", "--overwrite")
    assert result.exit_code == 0 and Image.open(dst).size == (64, 64)  # --overwrite replaces it


def test_a_killed_runs_partial_files_are_removed_by_the_next_run(model, tmp_path):
    folder = tmp_path / "in"
    _png(folder / "bird.png")
    out = tmp_path / "out"
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)
    stale = out / f".bird_x4.png.{dead}.k3j2h1g0.part"
    live = out / f".bird_x4.png.{os.getpid()}.a1b2c3d4.part"  # a writer still running keeps its file
    other = out / f".notes.txt.{dead}.a1b2c3d4.part"  # not an output of this run
    for path in (stale, live, other):
        path.write_bytes(b"half")
    result = _cli(folder, "a bird", "--model", model, "-o", out, "--backend", "ort-cpu")
    assert result.exit_code == 0 and "removed 1 partial file(s)" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([live.name, other.name, "bird_x4.png"])
