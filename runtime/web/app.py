"""The page: an image and a caption in, the text-guided result against bicubic out (a before/after
slider and a download), and the same input under two captions side by side with their difference.

Every expected failure (no image, an unreadable file, an empty caption, an image or result over the
pixel caps, a backend or precision the machine or folder lacks) is one message in the page; runtime
notices (a resized input, an FP16 retry) are warnings in the page.
"""

from __future__ import annotations

import html
import shutil
import tempfile
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
from PIL import Image

from clipsr_runtime.backends import BACKENDS
from clipsr_runtime.cli_errors import FAILURES
from clipsr_runtime.images import RuntimeImage, read_image, to_pil, write_image
from clipsr_runtime.manifest import PRECISIONS
from clipsr_runtime.prompt_files import load_prompts
from clipsr_runtime.upscaler import Plan
from clipsr_runtime.web.pictures import CHANGED, bicubic, difference
from clipsr_runtime.web.pool import BUILT_IN, UpscalerPool

EXAMPLES = Path(__file__).parent / "examples"
# Loopback or not, the page is offline: no web fonts (system ones), no analytics, no share links.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])
# A 16x16 input shown at the size of its box, its pixels sharp, so it can be compared with the result.
CSS = "#input-image img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"
QUEUED = 16  # requests waiting beyond this are refused with "queue full" instead of waiting minutes
ONE_AT_A_TIME = "model"  # every upscaling event shares one slot: a run already uses all CPU threads
SAVE = ["download", "fullscreen"]  # an image's corner buttons: no "share", it posts to a hub


class ResultFiles:
    """The downloadable results, under the server's temp folder; beyond the newest `keep` they are
    deleted, so a long-running page does not fill the disk."""

    def __init__(self, root: Path, keep: int = 32) -> None:
        self.root, self.keep = root, keep
        self._dirs: deque[Path] = deque()
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)

    def write(self, image: Image.Image, name: str) -> Path:
        folder = Path(tempfile.mkdtemp(dir=self.root))
        path = write_image(image, folder / name, image.info.get("icc_profile"))
        with self._lock:
            self._dirs.append(folder)
            while len(self._dirs) > self.keep:
                shutil.rmtree(self._dirs.popleft(), ignore_errors=True)
        return path


def _examples() -> list[list[str]]:
    """The shipped SynthBirds LRs with their true captions."""
    captions = load_prompts(EXAMPLES / "prompts.csv")
    return [[str(EXAMPLES / name), caption] for name, caption in sorted(captions.items())]


def _upload(value: dict | None) -> tuple[str, str]:
    """(path on the server, the name the user knows) of the image field's upload."""
    if not value or not value.get("path"):
        raise gr.Error("no image: upload one or pick an example")
    return value["path"], Path(value.get("orig_name") or value["path"]).name


def _caption(text: str | None, which: str = "caption") -> str:
    if not text or not text.strip():
        raise gr.Error(f"empty {which}: describe the image, e.g. 'a bird with a red crown'")
    return text


def _outscale(value: float | None) -> float | None:
    """0 (or empty): the model's own scale."""
    return None if value in (None, 0) else float(value)


@contextmanager
def _in_page(path: str, name: str) -> Iterator[None]:
    """Expected failures become the page's error message and notices its warnings, naming the file
    as the user knows it (not by its upload path on the server). Requests run one at a time, so
    catching warnings here sees only this request's."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    except FAILURES as exc:
        message = str(exc).replace(path, name) or type(exc).__name__
        raise gr.Error(html.escape(message), print_exception=False) from None
    for notice in caught:
        gr.Warning(html.escape(str(notice.message).replace(path, name)))


def _upscale_all(pool: UpscalerPool, upload: dict | None, prompts: list[str], model: str, backend: str,
                 precision: str, outscale: float | None,
                 progress: Callable[..., object]) -> tuple[RuntimeImage, list[Image.Image], Plan, str, str]:
    """The upload under each prompt: (the input as read, results, plan, file name, where it ran). The
    input's size and the result's are checked from the file header before the pixels are decoded."""
    path, name = _upload(upload)
    with _in_page(path, name), pool.use(model, backend, precision, _outscale(outscale)) as upscaler:
        plans: list[Plan] = []
        image = read_image(path, upscaler.max_pixels, before_decode=lambda w, h: plans.append(upscaler.plan(w, h)))
        total, done = plans[0].tiles * len(prompts), 0

        def tiles_done(count: int) -> None:
            nonlocal done
            done += count
            progress((done, total), desc="tiles", unit="tiles")

        progress(0, desc="upscaling")
        results = [to_pil(upscaler.upscale_image(image, prompt, tiles_done)) for prompt in prompts]
        return image, results, plans[0], name, upscaler.runs_on


def _summary(plan: Plan, name: str, runs_on: str, seconds: float) -> str:
    (w, h), (out_w, out_h) = plan.input_size, plan.size
    tiles = f", {plan.tiles} tiles" if plan.mode == "tile" else ""
    return f"`{name}`: {w}x{h} -> {out_w}x{out_h} ({plan.mode}{tiles}), {runs_on}, {seconds:.2f} s"


class Requests:
    """The page's two actions, as methods so a test can call them as the page does."""

    def __init__(self, pool: UpscalerPool, results: ResultFiles) -> None:
        self.pool, self.results = pool, results

    def upscale(self, upload: dict | None, text: str | None, model: str, backend: str, precision: str,
                outscale: float | None, progress=gr.Progress()) -> tuple:
        """-> ((bicubic, result) for the slider, the download button, a line on what ran)."""
        start = time.perf_counter()
        image, (result,), plan, name, runs_on = _upscale_all(self.pool, upload, [_caption(text)], model, backend,
                                                     precision, outscale, progress)
        saved = self.results.write(result, f"{Path(name).stem}_x{self.pool.manifests[model].scale}.png")
        before = bicubic(image, result.size)
        return ((before, result), gr.update(value=str(saved), interactive=True),
                _summary(plan, name, runs_on, time.perf_counter() - start))

    def compare(self, upload: dict | None, text_a: str | None, text_b: str | None, model: str, backend: str,
                precision: str, outscale: float | None, progress=gr.Progress()) -> tuple:
        """-> (result A, result B, the difference map, a line on how much the captions changed)."""
        prompts = [_caption(text_a, "caption"), _caption(text_b, "caption B")]
        start = time.perf_counter()
        _, (a, b), plan, name, runs_on = _upscale_all(self.pool, upload, prompts, model, backend, precision,
                                                   outscale, progress)
        diff = difference(a, b)
        verdict = (f"The captions change {diff.changed:.1%} of the pixels by {CHANGED} grey levels or more; "
                   f"the largest change is {diff.largest} grey levels." if diff.largest else
                   "The two captions give identical results.")
        return a, b, diff.image, f"{verdict} {_summary(plan, name, runs_on, time.perf_counter() - start)}"


def build_page(pool: UpscalerPool, results: ResultFiles) -> gr.Blocks:
    """The Blocks app (not launched): `clipsr-web` queues and launches it."""
    choices = [(pool.describe(label), label) for label in pool.folders]
    with gr.Blocks(title="clipsr: text-guided super-resolution", delete_cache=(600, 3600)) as page:
        gr.Markdown("# clipsr: text-guided super-resolution\nA small image and a caption in, an image "
                    "whose details follow the caption out. The built-in model is a small demo trained on "
                    "SynthBirds (procedural birds), not a photo model.")
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="input", type="filepath", image_mode=None, sources=["upload"], height=320,
                                 elem_id="input-image")
                caption = gr.Textbox(label="caption", placeholder="a bird with a red crown", elem_id="caption")
                caption_b = gr.Textbox(label="caption B (compare two captions)",
                                       placeholder="the same caption with one word changed", elem_id="caption-b")
                with gr.Accordion("model and options", open=False):
                    model = gr.Dropdown(choices, value=BUILT_IN, label="model folder")
                    backend = gr.Dropdown(list(BACKENDS), value="auto", label="backend")
                    precision = gr.Dropdown(list(PRECISIONS), value="fp32", label="precision")
                    outscale = gr.Number(0, label="outscale (0: the model's scale; else Lanczos)", minimum=0)
                with gr.Row():
                    run = gr.Button("Upscale", variant="primary", elem_id="upscale")
                    compare = gr.Button("Compare two captions", elem_id="compare")
                gr.Examples(_examples(), [image, caption], label="SynthBirds examples (true captions)")
            with gr.Column():
                slider = gr.ImageSlider(label="bicubic | clipsr", format="png", type="pil", elem_id="result")
                download = gr.DownloadButton("Download result", interactive=False, elem_id="download")
                info = gr.Markdown(elem_id="info")
        with gr.Row():
            result_a = gr.Image(label="caption A", format="png", type="pil", interactive=False, elem_id="result-a",
                                buttons=SAVE)
            result_b = gr.Image(label="caption B", format="png", type="pil", interactive=False, elem_id="result-b",
                                buttons=SAVE)
            changed = gr.Image(label="difference (red: changed, brighter = larger)", format="png", type="numpy",
                               interactive=False, elem_id="difference", buttons=SAVE)
        compared = gr.Markdown(elem_id="compared")
        options = [model, backend, precision, outscale]
        requests = Requests(pool, results)
        # preprocess=False: the handlers read the upload themselves (header first, size caps before decoding)
        run.click(requests.upscale, [image, caption, *options], [slider, download, info], preprocess=False,
                  concurrency_id=ONE_AT_A_TIME)
        compare.click(requests.compare, [image, caption, caption_b, *options],
                      [result_a, result_b, changed, compared], preprocess=False, concurrency_id=ONE_AT_A_TIME)
    page.queue(max_size=QUEUED, default_concurrency_limit=1)
    return page
