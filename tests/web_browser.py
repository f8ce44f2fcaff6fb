"""Drive `clipsr-web` in Debian's chromium with Playwright: the browser test's steps, and the README's
screenshot (`python tests/web_browser.py docs/web.png`).

Playwright's own browser download is not available on our machines, so it drives the system chromium
(`apt-get install chromium`). Every request to a host other than the page's is refused and recorded:
the page must work offline.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
LOCAL = ("127.0.0.1", "localhost")
TIMEOUT_MS = 120_000  # a first request opens ONNX Runtime sessions on a busy 2-core machine


def wings_recoloured(caption: str) -> str:
    """bird_0's caption with red wings instead of purple: caption B of the browser test and the screenshot."""
    if "purple wings" not in caption:
        raise ValueError(f"expected bird_0's caption to name purple wings: {caption!r}")
    return caption.replace("purple wings", "red wings")


def have_browser() -> bool:
    """Chromium installed and Playwright's Python package importable."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return os.access(CHROMIUM, os.X_OK)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(args: list[str], cwd: Path, tmp: Path, env: dict[str, str] | None = None):
    """`clipsr-web ARGS` on a free loopback port, its cwd and TMPDIR given; yields (url, process) and
    stops it with SIGTERM (as a service manager would), waiting for it to clean up."""
    port = free_port()
    environ = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "clipsr_runtime.web", "--port", str(port), *args], cwd=cwd,
                            env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"clipsr-web exited {proc.returncode}: {proc.stdout.read()}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def browser_page(url: str):
    """A chromium page at `url`; yields (page, outside) where `outside` lists refused non-local requests."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []

    def route(request_route) -> None:
        if urlparse(request_route.request.url).hostname in LOCAL:
            request_route.continue_()
        else:
            outside.append(request_route.request.url)
            request_route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300}, accept_downloads=True)
            page.set_default_timeout(TIMEOUT_MS)
            page.route("**/*", route)
            page.goto(url)
            page.locator("#upscale").wait_for()
            yield page, outside
        finally:
            browser.close()


def upload(page, image: Path) -> None:
    page.locator("#input-image input[type=file]").set_input_files(str(image))
    page.locator("#input-image img").first.wait_for()


# Set window.clipsrDone once the output's status tracker has shown (the request running) and hidden again:
# watched from before the click, so neither a fast request nor an earlier result is mistaken for this one.
_WATCH = """output => {
    window.clipsrDone = false;
    const tracker = document.querySelector(output + ' [data-testid=status-tracker]');
    let shown = false;
    new MutationObserver((changes, observer) => {
        if (!tracker.classList.contains('hide')) shown = true;
        else if (shown) { window.clipsrDone = true; observer.disconnect(); }
    }).observe(tracker, {attributes: true, attributeFilter: ['class']});
}"""


def click_and_wait(page, button: str, output: str) -> None:
    """Press `button` and wait until the request it starts has updated `output` (or failed)."""
    page.evaluate(_WATCH, output)
    page.locator(button).click()
    page.wait_for_function("() => window.clipsrDone")


def upscale(page, caption: str, save_as: Path) -> Path:
    """Type the caption, press Upscale, wait for the result and download it."""
    page.locator("#caption textarea").fill(caption)
    click_and_wait(page, "#upscale", "#info")
    with page.expect_download() as download:
        page.locator("#download").click()
    download.value.save_as(save_as)
    return save_as


def compare(page, caption_b: str) -> str:
    """Type caption B, press "Compare two captions", wait for and return the verdict."""
    page.locator("#caption-b textarea").fill(caption_b)
    click_and_wait(page, "#compare", "#compared")
    return page.locator("#compared").inner_text()


def choose_model(page, folder: Path) -> None:
    """Pick a `--model` folder in "model and options"."""
    page.get_by_text("model and options").click()
    page.get_by_label("model folder").click()
    page.get_by_role("option", name=str(folder)).click()


def error_message(page) -> str:
    """The text of the page's error toast once one shows."""
    toast = page.locator(".toast-body.error").first
    toast.wait_for()
    return toast.inner_text()


def screenshot(out: Path) -> None:
    """The README's picture: bird_0 upscaled under its caption, then compared with one colour changed."""
    from clipsr_runtime.prompt_files import load_prompts

    caption = load_prompts(EXAMPLES / "prompts.csv")["bird_0.png"]
    with tempfile.TemporaryDirectory() as tmp, server([], Path(tmp), Path(tmp)) as (url, _), \
            browser_page(url) as (page, _):
        upload(page, EXAMPLES / "bird_0.png")
        upscale(page, caption, Path(tmp) / "bird_0_x16.png")
        compare(page, wings_recoloured(caption))
        page.screenshot(path=str(out), full_page=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/web_browser.py OUT.png")
    screenshot(Path(sys.argv[1]))
