"""`clipsr-web`: serve the page on loopback (or `--host`) until Ctrl-C.

Everything the server writes (uploads, Gradio's cache, results) lies in one temporary folder, deleted
with the upscalers' sessions when the server stops (Ctrl-C or SIGTERM). gradio is imported inside the
command, so `--help` is instant; errors follow the one-line convention of every clipsr command.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer

from clipsr_runtime.cli_errors import OneLineErrorsCommand
from clipsr_runtime.errors import OptionError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

MAX_UPLOAD = "100mb"
_TEMP_VARIABLES = ("TMPDIR", "GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED")


def _stop(signum: int, frame: object) -> None:
    """SIGTERM ends the server the way Ctrl-C does, so the temp folder is still deleted."""
    raise KeyboardInterrupt


@app.command(cls=OneLineErrorsCommand)
def web(
    model: Optional[List[Path]] = typer.Option(None, "--model", help="A model folder to offer besides the "
                                                                      "built-in one (repeatable)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; 0.0.0.0 serves other machines too."),
    port: int = typer.Option(7860, help="Port to listen on."),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in the default browser."),
    max_output_pixels: Optional[int] = typer.Option(None, help="Largest result in pixels, checked before "
                                                               "decoding (default: 67108864 = 8192x8192)."),
) -> None:
    """Serve a page to upscale an image under a caption, or compare two captions on it."""
    if not 0 < port < 65536:
        raise OptionError(f"--port must be in 1..65535, got {port}")
    if max_output_pixels is not None and max_output_pixels < 1:
        raise OptionError(f"--max-output-pixels must be >= 1, got {max_output_pixels}")
    with _temp_folder() as tmp:
        serve(model or [], host, port, open_browser, max_output_pixels, tmp)


@contextmanager
def _temp_folder() -> Iterator[Path]:
    """A temporary folder that every library writes its temp files into while the server runs (gradio's
    uploads and cache, the session file ONNX Runtime writes into TMPDIR on import); deleted afterwards,
    and the environment as it was."""
    saved, saved_tempdir = {key: os.environ.get(key) for key in _TEMP_VARIABLES}, tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="clipsr-web-") as tmp:
        os.environ.update(TMPDIR=tmp, GRADIO_TEMP_DIR=str(Path(tmp) / "gradio"), GRADIO_ANALYTICS_ENABLED="False")
        tempfile.tempdir = tmp
        try:
            yield Path(tmp)
        finally:
            tempfile.tempdir = saved_tempdir
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def serve(folders: list[Path], host: str, port: int, open_browser: bool, max_output_pixels: int | None,
          tmp: Path) -> None:
    """Open the model folders (a bad one stops here), then serve until interrupted; always close them."""
    from clipsr_runtime.upscaler import DEFAULT_MAX_OUTPUT_PIXELS
    from clipsr_runtime.web.pool import UpscalerPool

    pool = UpscalerPool(folders, max_output_pixels or DEFAULT_MAX_OUTPUT_PIXELS)
    signal.signal(signal.SIGTERM, _stop)
    try:
        for label in pool.folders:
            pool.open(label)
        from clipsr_runtime.web.app import CSS, THEME, ResultFiles, build_page  # gradio: seconds to import

        page = build_page(pool, ResultFiles(tmp / "results"))
        try:
            page.launch(server_name=host, server_port=port, inbrowser=open_browser, share=False, theme=THEME,
                        css=CSS, ssr_mode=False, mcp_server=False, max_file_size=MAX_UPLOAD, footer_links=["gradio"])
        except OSError as exc:  # gradio's message names its own settings, not our options
            raise OSError(f"cannot listen on {host}:{port} (in use, or not an address of this machine): choose "
                          "another --port or --host") from exc
        except KeyboardInterrupt:  # a stop that lands while launch() is still starting: the same clean stop
            page.close()
    finally:
        pool.close()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="clipsr-web")
