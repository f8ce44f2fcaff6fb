"""The terminal report: rich tables drawn from the result dict that is also written as JSON."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clipsr_bench.paper import PAPER_GPU


def _m(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _ms(x: float) -> str:
    return f"{x:.3g}" if x < 10 else f"{x:.1f}" if x < 1000 else f"{x:,.0f}"


def params_table(params: dict) -> Table:
    t = Table(title=f"Parameters: paper-b32 in the paper's convention {_m(params['paper_convention'])} = "
                    f"{params['paper_convention_ratio']:.3f} x the paper's {_m(params['paper_quoted'])}")
    for col in ("preset", "scale", "paper conv.", "unique", "trainable", "frozen", "deploy"):
        t.add_column(col, justify="right")
    for preset, scales in params["per_preset"].items():
        for scale, c in scales.items():
            t.add_row(preset, f"{scale}x", _m(c["paper_convention"]), _m(c["unique_total"]), _m(c["trainable"]),
                      _m(c["frozen"]), _m(c["deploy"]))
    return t


def latency_table(result: dict) -> Table:
    """Rows that ran; a caption lists those that did not, with the reason."""
    s = result["settings"]
    b1, bn = str(s["batches"][0]), str(s["batches"][-1])
    t = Table(title=f"Latency, {s['preset']} {s['scale']}x: median ms (p90)")
    for col in ("backend", f"text b{b1}", f"generator b{b1}", f"gen/image b{bn}", f"img/s b{bn}", "end to end"):
        t.add_column(col, justify="right")
    skipped = []
    for row, r in result["latency"].items():
        if r["status"] != "ok":
            skipped.append(escape(f"{row}: {r['status']} ({r['reason']})"))
            continue
        text, g1, gn = r["text_encoder"][b1], r["generator"][b1], r["generator"][bn]
        t.add_row(f"{row} {r['precision']}", f"{_ms(text['median_ms'])} ({_ms(text['p90_ms'])})",
                  f"{_ms(g1['median_ms'])} ({_ms(g1['p90_ms'])})", _ms(gn["per_image_ms"]),
                  f"{gn['images_per_s']:.1f}", _ms(r["end_to_end_ms"]))
    t.caption = "\n".join(["end to end = text + generator, one image with a new prompt"] + skipped)
    return t


def ratios_table(result: dict) -> Table:
    t = Table(title="Ratios measured in this run (> 1: the first named is faster) and FLOPs")
    t.add_column("what")
    t.add_column("value", justify="right")
    for key, value in result["speedup"].items():
        if value is not None:
            t.add_row(key, f"{value:.2f}x")
    f = result["flops"]
    t.add_row("generator GFLOP / image", f"{f['generator_per_image'] / 1e9:.3g}")
    t.add_row("text encoder GFLOP / prompt", f"{f['text_encoder_per_prompt'] / 1e9:.3g}")
    for name, peak in f["peaks"].items():
        t.add_row(escape(f"peak {name}: {peak['source']}"), f"{peak['flops'] / 1e9:.1f} GFLOP/s")
    for row, fraction in f["achieved_fraction_generator"].items():
        t.add_row(f"generator {row}: fraction of peak", f"{100 * fraction:.1f}%")
    return t


def processes_table(proc: dict) -> Table:
    t = Table(title="One upscale as a whole process (CPU): peak RSS and launch -> first image written")
    for col in ("path", "peak RSS MB", "to first image s", "wall s"):
        t.add_column(col, justify="right")
    for name, label in (("runtime", "clipsr-run (torch-free)"), ("torch", "PyTorch (clipsr)")):
        p = proc[name]
        t.add_row(label, f"{p['peak_rss_mb']:.0f}", f"{p['to_output_s']:.2f}", f"{p['wall_s']:.2f}")
    t.caption = (f"RSS runtime/PyTorch {proc['rss_runtime_over_torch']:.2f}; "
                 f"cold start PyTorch/runtime {proc['cold_start_torch_over_runtime']:.2f}")
    return t


def ort_table(sweep: dict) -> Table:
    t = Table(title=f"ONNX Runtime settings, generator b{sweep['batch']}, {sweep['backend']}, "
                    f"{sweep['threads']} intra-op threads")
    for col in ("setting", "median ms", "speed vs runtime"):
        t.add_column(col, justify="right")
    for name, v in sweep["variants"].items():
        t.add_row(name, _ms(v["median_ms"]), f"{v['speedup_vs_runtime']:.2f}x")
    return t


def paper_table(result: dict) -> Table:
    t = Table(title=f"Table III: the paper's rows (quoted, {PAPER_GPU}) beside ours (measured here)")
    for col in ("method", "parameters", "ms / image", "device", "source"):
        t.add_column(col, justify="right")
    for r in result["paper"]["quoted"] + result["paper"]["ours"]:
        t.add_row(*map(escape, (r["method"], _m(r["params"]), _ms(r["ms_per_image"]), r["device"], r["source"])))
    return t


def print_report(result: dict, console: Console | None = None) -> None:
    console = console or Console()
    console.print(params_table(result["params"]))
    console.print(latency_table(result))
    console.print(ratios_table(result))
    if result.get("processes"):
        console.print(processes_table(result["processes"]))
    for sweep in result.get("ort_options", []):
        if "error" in sweep:
            console.print(f"ONNX Runtime settings on {sweep['backend']} failed: {sweep['error']}", markup=False)
        else:
            console.print(ort_table(sweep))
    console.print(paper_table(result))
