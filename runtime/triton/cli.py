"""`clipsr-triton MODEL_FOLDER DIR`: write a Triton Inference Server model repository (docs/serving.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clipsr_runtime.cli_errors import OneLineErrorsCommand

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Write a Triton Inference Server model repository from a clipsr model folder.")


@app.command(cls=OneLineErrorsCommand)
def triton(
    model: Path = typer.Argument(..., metavar="MODEL_FOLDER", help="Model folder (written by clipsr-export; has model.json)."),
    out: Path = typer.Argument(..., metavar="DIR", help="New folder for the repository (must not exist or be empty)."),
    platform: str = typer.Option("onnxruntime", help="text encoder + generator on: onnxruntime "
                                 "(onnxruntime_onnx) | tensorrt (tensorrt_plan from engines/) | python "
                                 "(clipsr_runtime's backends on Triton's Python backend)."),
    precision: str = typer.Option("fp32", help="fp32 | fp16: which exported ONNX graphs to serve."),
    max_batch: int = typer.Option(8, help="max_batch_size of every model (dynamic batching up to it)."),
    queue_delay_us: int = typer.Option(2000, help="How long a request may wait for others to batch with."),
    instances: int = typer.Option(1, help="Model instances per GPU (per server on CPU)."),
    gpu: bool = typer.Option(True, "--gpu/--cpu", help="Network instances on GPUs or CPU (onnxruntime, "
                                                       "tensorrt platforms)."),
    ort_trt: Optional[str] = typer.Option(None, help="fp32 | fp16: enable ONNX Runtime's TensorRT "
                                                     "execution accelerator at that precision."),
    runtime_backend: str = typer.Option("auto", help="python platform: auto | ort-cpu | ort-cuda | trt ..."),
    threads: Optional[int] = typer.Option(None, help="python platform: CPU threads per network instance."),
) -> None:
    """Writes DIR with the models tokenizer, preprocess, text_encoder, generator, postprocess and the
    ensemble `clipsr` (PROMPT + IMAGE -> SR_IMAGE); serve it with `tritonserver --model-repository DIR`."""
    from clipsr_runtime.triton.configs import ServeOptions
    from clipsr_runtime.triton.repository import write_repository

    opts = ServeOptions(platform=platform, precision=precision, max_batch=max_batch,
                        queue_delay_us=queue_delay_us, instances=instances, gpu=gpu, ort_trt=ort_trt,
                        runtime_backend=runtime_backend, threads=threads)
    print(write_repository(model, out, opts))


def main() -> None:
    """Console-script entry point."""
    app(prog_name="clipsr-triton")
