"""The whole benchmark: export a random model of the preset asked for, time every backend on it, count
parameters and FLOPs, measure processes, and gather one result dict (the JSON file and the report)."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clipsr.config import SCALES
from clipsr.factory import list_presets
from clipsr.model import CLIPSR
from clipsr.params import reference_report
from clipsr_bench import ort_options, paper, processes
from clipsr_bench.flops import count_flops
from clipsr_bench.params import parameter_section
from clipsr_bench.machine import load_section, machine_info
from clipsr_bench.targets import RUNTIME_BACKENDS, RowSpec, Target, Unavailable, open_target, plan_rows
from clipsr_bench.timing import Timing, fraction_of_peak, interleave, matmul_peak, pairwise_ratio

PROMPT = "a small bird with a red crown, a white belly and short black wings"
CPU_MATMUL = (512, 1024, 2048)
GPU_MATMUL = (4096, 8192)


@dataclass(frozen=True)
class Settings:
    preset: str
    scale: int
    backends: tuple[str, ...]
    batches: tuple[int, ...]
    runs: int
    warmup: int
    threads: int
    cpu_only: bool
    processes: bool
    ort_sweep: bool
    process_runs: int = 3
    peak_runs: int = 5

    def __post_init__(self) -> None:
        if self.preset not in list_presets():
            raise ValueError(f"--preset must be one of {', '.join(list_presets())}, got {self.preset!r}")
        if self.scale not in SCALES:
            raise ValueError(f"--scale must be one of {SCALES}, got {self.scale}")
        if not self.batches or min(self.batches) < 1:
            raise ValueError(f"--batch takes positive sizes, got {self.batches}")
        if self.process_runs < 1 or self.peak_runs < 1:
            raise ValueError(f"need process runs and peak runs >= 1 (got {self.process_runs}, {self.peak_runs})")
        if self.runs < 1 or self.warmup < 0 or self.threads < 1:
            raise ValueError(f"need runs >= 1, warmup >= 0, threads >= 1 (got {self.runs}, {self.warmup}, "
                             f"{self.threads})")

    @property
    def use_cuda(self) -> bool:
        return not self.cpu_only and torch.cuda.is_available()

    @property
    def needs_export(self) -> bool:
        """ONNX files are needed by the runtime rows and the process comparison; PyTorch rows alone skip
        the export (minutes for paper-b32, FP16 and parity included)."""
        return self.processes or any(b in RUNTIME_BACKENDS for b in self.backends)


class Inputs:
    """One batch of random LR images, tokens and text embeddings, sliced per batch size."""

    def __init__(self, model: CLIPSR, batch: int) -> None:
        size = model.config.generator.lr_size
        self.lr = np.random.default_rng(0).uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)
        tokens = model.tokenize([PROMPT] * batch)
        self.tokens = tokens.numpy().astype(np.int32)
        self.emb = model.encode_text(tokens).numpy().astype(np.float32)


STAGES = ("text_encoder", "generator")


def latency_section(model: CLIPSR, manifest, settings: Settings, inputs: Inputs,
                    on_step: Callable[[str], None]) -> tuple[dict, list[dict]]:
    """Every row: timings, or status unavailable/failed with the reason; plus the ONNX Runtime settings
    sweeps. All rows that opened are timed together, interleaved call by call, per stage and batch size,
    and keep their per-round samples (`samples_ms`) for the pairwise ratios. `manifest` is the exported
    model's, None when only PyTorch rows run."""
    rows: dict[str, dict] = {}
    targets: dict[str, Target] = {}
    fp16 = manifest is not None and "fp16" in manifest.text_encoder.files
    for spec in plan_rows(list(settings.backends), fp16=fp16):
        on_step(f"opening {spec.row}")
        try:
            targets[spec.row] = open_target(spec, model, manifest, settings.threads, max(settings.batches),
                                            settings.cpu_only)
        except Unavailable as exc:
            rows[spec.row] = _not_run(spec, "unavailable", str(exc))
        except Exception as exc:  # one broken backend must not end the benchmark: report it
            rows[spec.row] = _not_run(spec, "failed", _first_line(exc))
    times: dict[str, dict] = {row: {stage: {} for stage in STAGES} for row in targets}
    for b in settings.batches:
        for stage in STAGES:
            live = [row for row in targets if row not in rows]
            on_step(f"timing {stage} b{b}: {', '.join(live)} interleaved")
            calls = {}
            for row in live:
                try:
                    calls[row] = _stage_call(targets[row], stage, inputs, b)
                except Exception as exc:
                    rows[row] = _not_run(targets[row].spec, "failed", _first_line(exc))
            samples, errors = interleave(calls, settings.runs, settings.warmup,
                                         {row: targets[row].sync for row in calls})
            for row, error in errors.items():
                rows[row] = _not_run(targets[row].spec, "failed", error)
            for row, ms in samples.items():
                times[row][stage][str(b)] = {**Timing.of(ms, b).to_dict(), "samples_ms": ms}
    first = str(settings.batches[0])
    for row, target in targets.items():
        if row not in rows:
            t = times[row]
            rows[row] = {"status": "ok", "device": target.spec.device, "precision": target.spec.precision, **t,
                         "end_to_end_ms": t["text_encoder"][first]["per_image_ms"]
                         + t["generator"][first]["per_image_ms"]}
    sweeps = []
    for row in ("ort-cpu", "ort-cuda"):
        if settings.ort_sweep and rows.get(row, {}).get("status") == "ok":
            on_step(f"ONNX Runtime settings on {row}")
            sweeps.append(_sweep(manifest, row, targets[row], inputs, settings))
    targets.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return dict(sorted(rows.items(), key=lambda kv: _row_order(settings, kv[0]))), sweeps


def _row_order(settings: Settings, row: str) -> int:
    names = [spec.row for spec in plan_rows(list(settings.backends), fp16=True)]
    return names.index(row) if row in names else len(names)


def _stage_call(target: Target, stage: str, inputs: Inputs, batch: int) -> Callable[[], object]:
    if stage == "text_encoder":
        return target.text_call(inputs.tokens[:batch])
    return target.generator_call(inputs.lr[:batch], inputs.emb[:batch])


def _first_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


def _sweep(manifest, backend: str, target: Target, inputs: Inputs, settings: Settings) -> dict:
    """ort_options.sweep at batch 1; a setting this ONNX Runtime rejects is reported, not fatal."""
    lr, emb = inputs.lr[:1], inputs.emb[:1]
    try:
        return ort_options.sweep(manifest, backend, lr, emb, settings.threads, settings.runs, settings.warmup,
                                 target.generator_call(lr, emb))
    except Exception as exc:  # ORT raises its own exception types
        return {"backend": backend, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}


def _not_run(spec: RowSpec, status: str, reason: str) -> dict:
    return {"status": status, "reason": reason, "device": spec.device, "precision": spec.precision}


def _ratio(rows: dict, slow: str, fast: str, stage: str = "generator", *, batch: int) -> dict | None:
    """Median (and spread) of the per-round slow / fast ratios at one batch size (> 1: `fast` is
    faster), None unless both ran."""
    a, b = rows.get(slow, {}), rows.get(fast, {})
    if a.get("status") != "ok" or b.get("status") != "ok" or str(batch) not in a[stage]:
        return None
    return pairwise_ratio(a[stage][str(batch)]["samples_ms"], b[stage][str(batch)]["samples_ms"])


def speedup_section(rows: dict, batches: tuple[int, ...]) -> dict:
    b1, bn = batches[0], batches[-1]
    speed = {"generator_ort_vs_torch_cpu": _ratio(rows, "torch-cpu", "ort-cpu", batch=b1)}
    if bn != b1:
        speed[f"generator_ort_vs_torch_cpu_batch{bn}"] = _ratio(rows, "torch-cpu", "ort-cpu", batch=bn)
        speed[f"generator_openvino_vs_ort_cpu_batch{bn}"] = _ratio(rows, "ort-cpu", "openvino", batch=bn)
    speed |= {"generator_openvino_vs_ort_cpu": _ratio(rows, "ort-cpu", "openvino", batch=b1),
              "generator_openvino_vs_torch_cpu": _ratio(rows, "torch-cpu", "openvino", batch=b1),
              "text_encoder_ort_vs_torch_cpu": _ratio(rows, "torch-cpu", "ort-cpu", "text_encoder", batch=b1),
              "generator_torch_cuda_vs_cpu": _ratio(rows, "torch-cpu", "torch-cuda", batch=b1),
              "generator_torch_fp16_vs_fp32": _ratio(rows, "torch-cuda", "torch-fp16", batch=bn),
              "generator_torch_compile_vs_eager": _ratio(rows, "torch-cuda", "torch-compile", batch=bn),
              "generator_torch_cudagraphs_vs_eager": _ratio(rows, "torch-cuda", "torch-cudagraphs", batch=b1)}
    for backend in ("ort-cuda", "ort-trt", "trt"):
        key = backend.replace("-", "_")
        speed[f"generator_{key}_fp16_vs_fp32"] = _ratio(rows, backend, f"{backend}-fp16", batch=bn)
        speed[f"generator_{key}_vs_torch_cuda"] = _ratio(rows, "torch-cuda", backend, batch=bn)
    return speed


def flops_section(model: CLIPSR, inputs: Inputs, rows: dict, settings: Settings) -> dict:
    """FLOPs per image / prompt, measured matmul peaks, and each row's achieved fraction (capped at 1,
    flagged when it would pass it) at the largest batch."""
    lr, emb, tokens = (torch.from_numpy(a[:1]) for a in (inputs.lr, inputs.emb, inputs.tokens))
    gen = count_flops(lambda: model.generator(lr, emb))
    text = count_flops(lambda: model.encode_text(tokens.long()))
    peaks = {"cpu-fp32": matmul_peak("cpu", torch.float32, CPU_MATMUL, settings.peak_runs)}
    peaks["cpu-fp32"]["threads"] = settings.threads
    if settings.use_cuda:
        for name, dtype in (("cuda-fp32", torch.float32), ("cuda-fp16", torch.float16)):
            peaks[name] = matmul_peak("cuda", dtype, GPU_MATMUL, settings.peak_runs)
    achieved = {}
    bn = str(settings.batches[-1])
    for row, r in rows.items():
        peak = peaks.get(f"{r['device']}-{r['precision']}")
        if r["status"] == "ok" and peak:
            achieved[row] = fraction_of_peak(gen / (r["generator"][bn]["per_image_ms"] / 1e3), peak["flops"])
    return {"counter": "torch.utils.flop_counter.FlopCounterMode (matmul and convolution FLOPs)",
            "generator_per_image": gen, "text_encoder_per_prompt": text, "peaks": peaks,
            "achieved_fraction_generator": achieved, "achieved_at_batch": int(bn)}


def paper_section(counts: dict, rows: dict, settings: Settings) -> dict:
    """The paper's quoted rows and ours: our count beside theirs (the paper convention; for the authors'
    generator, everything their checkpoint and the text tower hold) and what a deployment carries, with
    our fastest end-to-end row."""
    ours = []
    done = {k: r for k, r in rows.items() if r["status"] == "ok"}
    if done:
        best = min(done, key=lambda k: done[k]["end_to_end_ms"])
        device = machine_label(done[best]["device"])
        whole = ("total", "total") if "total" in counts else ("paper convention", "paper_convention")
        for label, key in (whole, ("deploy", "deploy")):
            ours.append({"method": f"CLIP-SR {settings.preset} ({label})", "params": counts[key],
                         "ms_per_image": done[best]["end_to_end_ms"], "device": device,
                         "source": f"measured ({best}, {settings.scale}x, batch {settings.batches[0]})"})
    return {"quoted": paper.quoted_rows(), "ours": ours}


def machine_label(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores)"


def run_suite(settings: Settings, on_step: Callable[[str], None] = lambda step: None) -> dict:
    """Everything, in one process: the dict written as JSON."""
    from clipsr.checkpoint import save_checkpoint
    from clipsr_export.pipeline import ExportOptions, export_model, load_model
    from clipsr_runtime.manifest import load_manifest

    torch.set_num_threads(settings.threads)
    load_before = os.getloadavg()
    result = {"machine": machine_info(), "settings": {**settings.__dict__, "batches": list(settings.batches),
                                                 "backends": list(settings.backends)}}
    on_step("parameter counts")
    model, _ = load_model(None, settings.preset, settings.scale, True)
    if model.config.architecture == "reference":
        result["params"] = parameter_section([], SCALES, 16)
        result["reference_params"] = {**reference_report(model), "paper_quoted": paper.PAPER_CLIPSR_PARAMS}
    else:
        result["params"] = parameter_section([settings.preset], SCALES, settings.scale)
    inputs = Inputs(model, max(settings.batches))
    with tempfile.TemporaryDirectory(prefix="clipsr-bench-") as tmp:
        work = Path(tmp)
        manifest = None
        if settings.needs_export:
            on_step(f"export {settings.preset} {settings.scale}x")
            precisions = ("fp32", "fp16") if settings.use_cuda else ("fp32",)
            export_model(model, work / "model", ExportOptions(precisions=precisions))
            manifest = load_manifest(work / "model")
        rows, sweeps = latency_section(model, manifest, settings, inputs, on_step)
        result["latency"], result["ort_options"] = rows, sweeps
        result["speedup"] = speedup_section(rows, settings.batches)
        on_step("FLOPs and matmul peaks")
        result["flops"] = flops_section(model, inputs, rows, settings)
        if settings.processes:
            on_step("processes: clipsr-run vs PyTorch")
            save_checkpoint(model, work / "model.safetensors")
            image = work / "lr.png"
            Image.fromarray(((inputs.lr[0].transpose(1, 2, 0) + 1) * 127.5).round().astype(np.uint8)).save(image)
            result["processes"] = processes.compare_processes(work / "model", work / "model.safetensors", image,
                                                              PROMPT, work, settings.threads,
                                                              settings.process_runs)
    counts = result.get("reference_params") or result["params"]["per_preset"][settings.preset][str(settings.scale)]
    result["paper"] = paper_section(counts, rows, settings)
    result["machine"]["load"] = load_section(load_before, os.getloadavg(), os.cpu_count())
    return result
