"""`python benchmarks/bicubic_skip.py`: what exporting the generator's bicubic global skip as two matrix
products (clipsr/upsample.py) buys over the ONNX `Resize` that `F.interpolate` exports to.

The built-in demo model (tiny, 16x) is exported twice, once as shipped and once with the skip put back as
`F.interpolate(..., mode="bicubic")`; both run on ONNX Runtime's CPU provider beside PyTorch eager,
interleaved call by call. Prints medians, the pairwise ratios with their spread, how far each output is
from PyTorch (in grey levels of the saved 8-bit image) and the load average around the run."""
from __future__ import annotations

import copy
import os
import sys
import tempfile
from pathlib import Path

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # clipsr_bench, beside this script

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=__doc__.splitlines()[0])


@app.command()
def main(threads: int = typer.Option(1, help="CPU threads for PyTorch and ONNX Runtime alike."),
         runs: int = typer.Option(40, help="Interleaved rounds timed."),
         warmup: int = typer.Option(5, help="Untimed rounds first.")) -> None:
    """Time the two exports and PyTorch, interleaved; print the comparison."""
    import logging

    import numpy as np
    import onnxruntime as ort
    import torch
    import torch.nn.functional as F

    from clipsr_bench.machine import cpu_name
    from clipsr_bench.timing import interleave, pairwise_ratio
    from clipsr_export.onnx_export import export_graph, generator_spec
    from clipsr_export.pipeline import load_model, rewrite_float32_graph

    logging.getLogger().setLevel(logging.ERROR)
    torch.set_num_threads(threads)
    model, _ = load_model(None, None, 16, False)

    class Resize(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, scale_factor=model.scale, mode="bicubic", align_corners=False)

    resize = copy.deepcopy(model)
    resize.generator.bicubic = Resize()
    size = model.config.generator.lr_size
    lr = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32))
    emb = model.encode_text(model.tokenize(["a small bird with a red crown and a white belly"])).detach()
    feed = {"lr": lr.numpy(), "text_embedding": emb.numpy()}
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, m in (("ort matmul skip", model), ("ort resize skip", resize)):
            export_graph(generator_spec(m, lr, emb), Path(tmp) / "g.onnx")
            rewrite_float32_graph(Path(tmp) / "g.onnx")  # as clipsr-export writes the float32 graph
            sessions[name] = ort.InferenceSession(str(Path(tmp) / "g.onnx"), options, providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        reference = model.generator(lr, emb).numpy()
        calls = {"torch eager": lambda: model.generator(lr, emb)}
        calls |= {name: (lambda s=s: s.run(["sr"], feed)) for name, s in sessions.items()}
        load_before = os.getloadavg()
        samples, errors = interleave(calls, runs, warmup)
        load_after = os.getloadavg()
    if errors:
        raise SystemExit(f"error: {errors}")

    def grey(a):
        return np.round((np.clip(a, -1, 1) + 1) * 127.5)

    print(f"{cpu_name()}, {threads} thread(s), {runs} interleaved rounds; load average before "
          f"{'/'.join(f'{x:.2f}' for x in load_before)}, after {'/'.join(f'{x:.2f}' for x in load_after)} "
          f"({os.cpu_count()} cores)")
    for name, ms in samples.items():
        print(f"  {name:16s} median {np.median(ms):7.2f} ms  min {min(ms):7.2f} ms")
    for name, s in sessions.items():
        out = s.run(["sr"], feed)[0]
        print(f"  {name:16s} vs PyTorch: max abs {np.abs(out - reference).max():.1e}, "
              f"max grey-level difference {np.abs(grey(out) - grey(reference)).max():.0f}")
    for slow, fast in (("ort resize skip", "ort matmul skip"), ("torch eager", "ort matmul skip"),
                       ("torch eager", "ort resize skip")):
        r = pairwise_ratio(samples[slow], samples[fast])
        print(f"  {slow} / {fast}: {r['median']:.2f}x (IQR {r['q1']:.2f}-{r['q3']:.2f}, "
              f"min {r['min']:.2f}, max {r['max']:.2f})")


if __name__ == "__main__":
    app()
