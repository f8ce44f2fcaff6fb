"""`clipsr-web` without a browser: the page's actions as the page calls them, their messages, the
command line, and a server's life (torch-free, temp folder deleted, nothing written elsewhere)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

gr = pytest.importorskip("gradio")

from clipsr_runtime import Upscaler  # noqa: E402
from clipsr_runtime.web.app import Requests, ResultFiles  # noqa: E402
from clipsr_runtime.web.cli import app  # noqa: E402
from clipsr_runtime.web.pictures import CHANGED, difference  # noqa: E402
from clipsr_runtime.web.pool import BUILT_IN, UpscalerPool  # noqa: E402
from runtime_fixtures import make_model_dir  # noqa: E402
from web_browser import server  # noqa: E402

CAPTION = "a bird with a red crown"


def _quiet(*args, **kwargs) -> None:
    """Stands in for gr.Progress outside a running page."""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("model"))  # 4x, dynamic LR size


@pytest.fixture(scope="module")
def pool(folder):
    pool = UpscalerPool([folder], max_output_pixels=1 << 20)
    yield pool
    pool.close()


def _upload(path: Path, name: str | None = None) -> dict:
    """What the page sends for an uploaded image (preprocess=False)."""
    return {"path": str(path), "orig_name": name or path.name}


def _png(path: Path, size=(8, 8), seed=0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(path)
    return path


def _upscale(requests: Requests, upload, caption=CAPTION, model=None, outscale=None, precision="fp32"):
    return requests.upscale(upload, caption, model, "ort-cpu", precision, outscale, progress=_quiet)


def test_upscale_on_an_exported_folder_matches_the_upscaler(pool, folder, tmp_path):
    requests = Requests(pool, ResultFiles(tmp_path / "results"))
    src = _png(tmp_path / "in.png", (16, 16))
    (before, result), button, info = _upscale(requests, _upload(src, "mine.png"), model=str(folder))
    assert result.size == before.size == (64, 64)
    saved = Path(button["value"])
    assert saved.name == "mine_x4.png" and saved.is_relative_to(tmp_path / "results")
    with Upscaler(folder, backend="ort-cpu") as up:
        expected = np.asarray(up.upscale(src, CAPTION), dtype=int)
    assert np.abs(np.asarray(Image.open(saved), dtype=int) - expected).max() <= 1
    assert np.abs(np.asarray(result, dtype=int) - expected).max() <= 1
    assert "`mine.png`: 16x16 -> 64x64 (direct), backend ort-cpu, fp32" in info
    (_, half), _, _ = _upscale(requests, _upload(src), model=str(folder), outscale=2)
    assert half.size == (32, 32)


def test_runtime_notices_are_warnings_in_the_page(pool, folder, tmp_path):
    requests = Requests(pool, ResultFiles(tmp_path / "results"))
    with pytest.warns(UserWarning, match="input 8x6 resized to the model&#x27;s 16x16"):
        (_, result), _, info = _upscale(requests, _upload(_png(tmp_path / "small.png", (8, 6))), model=str(folder))
    assert result.size == (32, 24) and "(resize)" in info


def test_the_built_in_model_and_a_tiled_input_report_progress(pool, tmp_path):
    requests = Requests(pool, ResultFiles(tmp_path / "results"))
    seen = []
    (_, result), _, info = requests.upscale(_upload(_png(tmp_path / "wide.png", (40, 20))), CAPTION, BUILT_IN,
                                            "ort-cpu", "fp32", None, progress=lambda *a, **k: seen.append(a[0]))
    assert result.size == (640, 320) and "(tile, 6 tiles)" in info
    done = [p for p in seen if isinstance(p, tuple)]
    assert done[-1] == (6, 6) and [d for d, _ in done] == sorted(d for d, _ in done)


def test_two_captions_side_by_side(pool, folder, tmp_path):
    requests = Requests(pool, ResultFiles(tmp_path / "results"))
    upload = _upload(_png(tmp_path / "in.png", (16, 16)))
    a, b, diff, verdict = requests.compare(upload, CAPTION, "a bird with a blue crown", str(folder), "ort-cpu",
                                           "fp32", None, progress=_quiet)
    assert a.size == b.size == (64, 64) and diff.shape == (64, 64, 3)
    assert "grey levels or more; the largest change is" in verdict
    same = requests.compare(upload, CAPTION, CAPTION, str(folder), "ort-cpu", "fp32", None, progress=_quiet)
    assert "identical" in same[3] and same[2][..., 0].max() == same[2][..., 1].max()  # nothing red


def test_difference_highlights_changed_pixels_in_red():
    a = np.full((4, 4, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0] = 140   # the largest change: full red
    b[1, 1, 2] = 120
    b[2, 2] = 100 + CHANGED - 1  # rounding, not shown
    diff = difference(Image.fromarray(a), Image.fromarray(b))
    assert diff.largest == 40 and diff.changed == pytest.approx(2 / 16)
    assert tuple(diff.image[0, 0]) == (255, 0, 0)
    red, green = int(diff.image[1, 1, 0]), int(diff.image[1, 1, 1])
    assert red > 128 > green and tuple(diff.image[2, 2]) == tuple(diff.image[3, 3])


@pytest.mark.parametrize("case, expected", [
    ("no image", "no image: upload one or pick an example"),
    ("empty caption", "empty caption"),
    ("not an image", "notes.png"),
    ("over the cap", "over the limit of 1,048,576"),
    ("no int8 in the folder", "int8"),
])
def test_bad_input_is_a_message_in_the_page(pool, folder, tmp_path, case, expected):
    requests = Requests(pool, ResultFiles(tmp_path / "results"))
    upload, caption, precision = _upload(_png(tmp_path / "in.png")), CAPTION, "fp32"
    if case == "no image":
        upload = None
    elif case == "empty caption":
        caption = "  "
    elif case == "not an image":
        (tmp_path / "upload.png").write_text("not a picture")
        upload = _upload(tmp_path / "upload.png", "notes.png")
    elif case == "over the cap":
        upload = _upload(_png(tmp_path / "big.png", (300, 300)))
    else:
        precision = "int8"
    with pytest.raises(gr.Error) as err:
        _upscale(requests, upload, caption, model=str(folder), precision=precision)
    assert expected in err.value.message and str(tmp_path) not in err.value.message
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_result_files_keep_only_the_newest(tmp_path):
    files = ResultFiles(tmp_path / "r", keep=2)
    paths = [files.write(Image.new("RGB", (2, 2)), f"{i}.png") for i in range(3)]
    assert [p.exists() for p in paths] == [False, True, True]


def test_help_and_option_errors_follow_the_cli_conventions(tmp_path):
    runner, before = CliRunner(), tempfile.gettempdir()
    shown = runner.invoke(app, ["--help"])
    assert shown.exit_code == 0 and all(flag in shown.stdout for flag in ("--model", "--host", "--port", "--open"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        for args, status, message in (
                (["--port", "0"], 2, "error: --port must be in 1..65535, got 0"),
                (["--bogus"], 2, "error: No such option: --bogus"),
                (["--model", str(tmp_path / "nowhere")], 1, "error: "),
                (["--port", str(taken.getsockname()[1])], 1, "error: cannot listen on 127.0.0.1:")):
            result = runner.invoke(app, args)
            assert result.exit_code == status and result.stderr.startswith(message), result.stderr
            assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "GRADIO_TEMP_DIR" not in os.environ and tempfile.gettempdir() == before  # the process as it was


@pytest.mark.slow
def test_a_server_is_torch_free_and_leaves_nothing_behind(folder, tmp_path):
    guard, cwd, tmp = tmp_path / "guard", tmp_path / "cwd", tmp_path / "tmp"
    for path in (guard, cwd, tmp):
        path.mkdir()
    (guard / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None  # import torch fails\n")
    env = {"PYTHONPATH": os.pathsep.join([str(guard), *sys.path])}
    with server(["--model", str(folder)], cwd, tmp, env) as (url, proc):
        page = urllib.request.urlopen(url, timeout=30).read().decode()
        assert "clipsr: text-guided super-resolution" in page
        assert len(list(tmp.iterdir())) == 1  # the server's one temp folder
    assert proc.returncode == 0, proc.stdout.read()
    assert not list(tmp.iterdir()) and not list(cwd.iterdir())
    blocked = subprocess.run([sys.executable, "-c", "import torch"], env={**os.environ, **env}, capture_output=True)
    assert blocked.returncode != 0  # the guard works
