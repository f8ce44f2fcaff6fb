"""`clipsr-web` in a real browser (Debian's chromium, driven by Playwright): upload, caption, result
against `clipsr-run`, compare two captions, a message for an empty caption, and no request leaves the
machine."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("gradio")

from clipsr_runtime.cli import app as run_app  # noqa: E402
from clipsr_runtime.prompt_files import load_prompts  # noqa: E402
from runtime_fixtures import make_model_dir  # noqa: E402
from web_browser import (EXAMPLES, browser_page, choose_model, compare, error_message, have_browser,  # noqa: E402
                         server, upload, upscale, wings_recoloured)

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not have_browser(), reason="needs chromium (apt-get install chromium) and "
                                                            "playwright")]


def test_the_page_upscales_compares_and_says_what_is_wrong(tmp_path):
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir(), tmp.mkdir()
    src = EXAMPLES / "bird_0.png"
    caption = load_prompts(EXAMPLES / "prompts.csv")["bird_0.png"]
    with server([], cwd, tmp) as (url, proc), browser_page(url) as (page, outside):
        upload(page, src)
        got = upscale(page, caption, tmp_path / "downloaded.png")
        assert "bird_0.png: 16x16 -> 256x256 (direct)" in page.locator("#info").inner_text()

        verdict = compare(page, wings_recoloured(caption))
        assert "grey levels" in verdict or "identical" in verdict
        for element in ("#result-a", "#result-b", "#difference"):  # each image may render a moment after the verdict
            page.locator(f"{element} img").wait_for(state="visible", timeout=30_000)
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

        page.locator("#caption textarea").fill("   ")
        page.locator("#upscale").click()
        assert "empty caption" in error_message(page)
        assert outside == []  # no fonts, analytics or anything else fetched from outside
    assert proc.returncode == 0
    assert not list(tmp.iterdir()) and not list(cwd.iterdir())  # nothing left behind, nothing written elsewhere

    with Image.open(got) as img:
        assert img.size == (256, 256)
        downloaded = np.asarray(img.convert("RGB"), dtype=int)
    expected = tmp_path / "bird_0_x16.png"
    result = CliRunner().invoke(run_app, [str(src), caption, "-o", str(expected)])
    assert result.exit_code == 0, result.stderr
    assert np.abs(downloaded - np.asarray(Image.open(expected).convert("RGB"), dtype=int)).max() <= 1
    with Image.open(tmp_path / "page.png") as shot:
        assert shot.width >= 1000 and shot.height >= 800


def test_the_page_runs_an_exported_folder_given_with_model(tmp_path):
    folder = make_model_dir(tmp_path / "fake-x4")  # 4x, LR 16, any input size
    src = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(src)
    with server(["--model", str(folder)], tmp_path, tmp_path) as (url, _), browser_page(url) as (page, outside):
        choose_model(page, folder)
        upload(page, src)
        got = upscale(page, "a bird with a red crown", tmp_path / "downloaded.png")
        assert "wide.png: 40x24 -> 160x96 (tile, " in page.locator("#info").inner_text()
        assert outside == []
    expected = tmp_path / "expected.png"
    result = CliRunner().invoke(run_app, [str(src), "a bird with a red crown", "--model", str(folder), "-o",
                                          str(expected)])
    assert result.exit_code == 0, result.stderr
    with Image.open(got) as a, Image.open(expected) as b:
        assert a.size == b.size == (160, 96)
        assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 1
