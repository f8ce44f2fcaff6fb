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


def _ratio(r: dict) -> str:
    """A pairwise ratio: median [min-max] over n rounds."""
    return f"{r['median']:.2f}x [{r['min']:.2f}-{r['max']:.2f}, n={r['pairs']}]"


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


def reference_params_table(counts: dict) -> Table:
    t = Table(title=f"Parameters of the authors' released generator (total = "
                    f"{counts['total'] / counts['paper_quoted']:.3f} x the paper's {_m(counts['paper_quoted'])})")
    for col in ("generator live", "dead in their checkpoint", "CLIP text", "deploy (live + text)", "total"):
        t.add_column(col, justify="right")
    t.add_row(*(_m(counts[k]) for k in ("generator_live", "checkpoint_dead", "clip_text", "deploy", "total")))
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
    t = Table(title=escape("Ratios, median of per-round ratios [min-max] of interleaved calls (> 1: the first "
                           "named is faster), and FLOPs"))
    t.add_column("what")
    t.add_column("value", justify="right")
    for key, value in result["speedup"].items():
        if value is not None:
            t.add_row(key, escape(_ratio(value)))
    f = result["flops"]
    t.add_row("generator GFLOP / image", f"{f['generator_per_image'] / 1e9:.3g}")
    t.add_row("text encoder GFLOP / prompt", f"{f['text_encoder_per_prompt'] / 1e9:.3g}")
    for name, peak in f["peaks"].items():
        t.add_row(escape(f"peak {name}: best of {len(peak['candidates'])} (is {peak['source']})"),
                  f"{peak['flops'] / 1e9:.1f} GFLOP/s")
    for row, a in f["achieved_fraction_generator"].items():
        flag = " (above the measured peak: capped)" if a["above_peak"] else ""
        t.add_row(f"generator {row}: fraction of peak{flag}", f"{100 * a['fraction']:.1f}%")
    return t


def processes_table(proc: dict) -> Table:
    t = Table(title=escape(f"One upscale as a whole process (CPU), {proc['runs']} runs each: median [min-max]"))
    for col in ("path", "peak RSS MB", "to first image s", "wall s"):
        t.add_column(col, justify="right")
    for name, label in (("runtime", "clipsr-run (torch-free)"), ("torch", "PyTorch (clipsr)")):
        p = proc[name]
        t.add_row(label, *(escape(f"{p[k]['median']:.{d}f} [{p[k]['min']:.{d}f}-{p[k]['max']:.{d}f}]")
                           for k, d in (("peak_rss_mb", 0), ("to_output_s", 2), ("wall_s", 2))))
    t.caption = escape(f"RSS runtime/PyTorch {_ratio(proc['rss_runtime_over_torch'])}; "
                       f"cold start PyTorch/runtime {_ratio(proc['cold_start_torch_over_runtime'])}")
    return t


def ort_table(sweep: dict) -> Table:
    t = Table(title=f"ONNX Runtime settings, generator b{sweep['batch']}, {sweep['backend']}, "
                    f"{sweep['threads']} intra-op threads, interleaved")
    for col in ("setting", "median ms", "speed vs runtime"):
        t.add_column(col, justify="right")
    for name, v in sweep["variants"].items():
        if "error" in v:
            t.add_row(name, "failed", escape(v["error"]))
        else:
            t.add_row(name, _ms(v["median_ms"]), escape(_ratio(v["speedup_vs_runtime"])))
    return t


def load_line(machine: dict) -> str:
    load = machine["load"]
    note = (f"  OVERLOADED: above {load['cores']} cores, other processes shared the CPU" if load["overloaded"]
            else "")
    return (f"{machine['cpu']}, {machine['cpu_count']} cores; load average (1/5/15 min) before "
            f"{'/'.join(f'{x:.2f}' for x in load['before'])}, after {'/'.join(f'{x:.2f}' for x in load['after'])}"
            f"{note}")


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
    if "reference_params" in result:
        console.print(reference_params_table(result["reference_params"]))
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
    console.print(load_line(result["machine"]), markup=False, highlight=False)
