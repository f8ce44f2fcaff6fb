"""`python benchmarks/triton_load.py`: a bounded load test of the Triton repository on loopback against
single-process upscaling, on the same images in the same run.

A local tritonserver (the nvidia-pytriton wheel's) serves the Python-backend repository of the demo model;
CONCURRENCY client threads send REQUESTS single-image requests to the `clipsr` ensemble (each loop
bounded in count and by --deadline seconds). The same images go through an in-process `Upscaler`
(what `clipsr-run` does), one at a time. Both run in alternating rounds, so load from other processes on a
shared machine falls on both. Reports failures, throughput, p50/p99 latency and the load average."""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=__doc__.splitlines()[0])
PROMPTS = ["a bird with a red crown", "a small yellow bird with black wings", "a blue bird with a white belly",
           "this bird has a black crown, purple wings and a blue beak"]


def _images(count: int, size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def _summary(latencies: list[float], wall: float, failures: int) -> dict:
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "failures": failures, "wall_s": round(wall, 3),
            "throughput_per_s": round(len(latencies) / wall, 2) if wall else 0.0,
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None}


def _local_round(upscaler, images, start: int, count: int, latencies: list[float]) -> float:
    began = time.perf_counter()
    for i in range(start, start + count):
        t = time.perf_counter()
        upscaler.upscale(images[i % len(images)], PROMPTS[i % len(PROMPTS)])
        latencies.append(time.perf_counter() - t)
    return time.perf_counter() - began


def _server_round(url: str, images, start: int, count: int, concurrency: int, deadline: float,
                  latencies: list[float], failures: list[str]) -> float:
    import tritonclient.http as http

    next_index, lock = [start], threading.Lock()

    def worker() -> None:
        client = http.InferenceServerClient(url.removeprefix("http://"))
        while time.monotonic() < deadline:
            with lock:
                i = next_index[0]
                if i >= start + count:
                    return
                next_index[0] += 1
            prompt = http.InferInput("PROMPT", [1, 1], "BYTES")
            prompt.set_data_from_numpy(np.array([[PROMPTS[i % len(PROMPTS)].encode()]], dtype=np.object_))
            image = http.InferInput("IMAGE", [1, *images[i % len(images)].shape], "UINT8")
            image.set_data_from_numpy(images[i % len(images)][None])
            t = time.perf_counter()
            try:
                client.infer("clipsr", [prompt, image])
                elapsed = time.perf_counter() - t
                with lock:
                    latencies.append(elapsed)
            except Exception as exc:  # counted and reported, the load goes on
                with lock:
                    failures.append(str(exc)[:200])

    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - began


@app.command()
def main(
    requests: int = typer.Option(200, help="Requests to the server (and images through the local Upscaler)."),
    concurrency: int = typer.Option(8, help="Concurrent client threads."),
    rounds: int = typer.Option(4, help="Alternating local/server rounds the requests are split into."),
    threads: int = typer.Option(1, help="ONNX Runtime CPU threads per network, server and local alike."),
    max_batch: int = typer.Option(8, help="max_batch_size of the served models."),
    queue_delay_us: int = typer.Option(2000, help="Dynamic batching queue delay."),
    deadline: float = typer.Option(300.0, help="Stop sending after this many seconds in all."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results here too."),
) -> None:
    from clipsr_runtime import Upscaler
    from clipsr_runtime.manifest import default_model_dir
    from clipsr_runtime.triton import local_server
    from clipsr_runtime.triton.configs import ServeOptions
    from clipsr_runtime.triton.repository import write_repository

    load_before = os.getloadavg()
    model = default_model_dir()
    upscaler = Upscaler(model, backend="ort-cpu", threads=threads)
    images = _images(64, upscaler.manifest.lr_size)
    stop_at = time.monotonic() + deadline
    local_lat: list[float] = []
    server_lat: list[float] = []
    failures: list[str] = []
    local_wall = server_wall = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        opts = ServeOptions(platform="python", gpu=False, runtime_backend="ort-cpu", threads=threads,
                            max_batch=max_batch, queue_delay_us=queue_delay_us)
        repo = write_repository(model, Path(tmp) / "repo", opts)
        with local_server.start(repo) as server:
            _server_round(server.http_url, images, 0, 2 * concurrency, concurrency, stop_at, [], [])  # warm-up
            _local_round(upscaler, images, 0, 4, [])
            per_round = -(-requests // rounds)
            for r in range(rounds):
                start, count = r * per_round, min(per_round, requests - r * per_round)
                if count <= 0 or time.monotonic() >= stop_at:
                    break
                local_wall += _local_round(upscaler, images, start, count, local_lat)
                server_wall += _server_round(server.http_url, images, start, count, concurrency, stop_at,
                                             server_lat, failures)
            stats = _generator_batches(server.http_url)
    result = {"model": model.name, "requests": requests, "concurrency": concurrency, "rounds": rounds,
              "threads_per_network": threads, "max_batch": max_batch, "queue_delay_us": queue_delay_us,
              "cpu_count": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
              "loadavg_after": [round(x, 2) for x in os.getloadavg()],
              "local": _summary(local_lat, local_wall, 0),
              "server": {**_summary(server_lat, server_wall, len(failures)), "generator_batches": stats},
              "failure_examples": failures[:3]}
    _print(result)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2) + "\n")
    if failures:
        raise typer.Exit(1)


def _generator_batches(url: str) -> dict[str, int]:
    """How many generator executions ran at each batch size (dynamic batching at work)."""
    import tritonclient.http as http

    stats = http.InferenceServerClient(url.removeprefix("http://")).get_inference_statistics("generator")
    return {str(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["model_stats"][0]["batch_stats"]}


def _print(result: dict) -> None:
    table = Table(title=f"{result['model']}: {result['requests']} requests, {result['concurrency']} clients "
                        f"(load average {result['loadavg_before'][0]} -> {result['loadavg_after'][0]})")
    for column in ("", "requests", "failures", "images/s", "p50 ms", "p99 ms"):
        table.add_column(column)
    for name in ("local", "server"):
        row = result[name]
        table.add_row("in-process Upscaler" if name == "local" else "Triton (Python backend, HTTP)",
                      str(row["requests"]), str(row["failures"]), str(row["throughput_per_s"]),
                      str(row["p50_ms"]), str(row["p99_ms"]))
    Console().print(table)
    Console().print(f"generator batches (size: executions): {result['server']['generator_batches']}")


if __name__ == "__main__":
    app()
