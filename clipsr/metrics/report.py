"""Evaluation report for `clipsr-eval`: per-image and mean PSNR/SSIM (both conventions), NIQE and,
when Ma's model is given, Ma and PI, for the SR output, the bicubic baseline and the HR itself (NIQE/PI
only), written as JSON + CSV, a rich table, and a LR | bicubic | SR | HR grid with captions."""
from __future__ import annotations

import csv
import json
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rich.table import Table

from clipsr.data.resize import imresize
from clipsr.metrics.fidelity import psnr, ssim
from clipsr.metrics.ma import ma_score, perceptual_index
from clipsr.metrics.niqe import NiqeParams, load_niqe_params, niqe

# (sr, hr, lr, caption), uint8 (H, W, 3) arrays
Sample = tuple[np.ndarray, np.ndarray, np.ndarray, str]
METHODS = ("sr", "bicubic", "hr")
CONVENTIONS = {
    "psnr_y, ssim_y": "BasicSR: Y channel (BT.601, MATLAB rgb2ycbcr), crop border = scale, "
                      "MATLAB-style SSIM (11x11 gaussian, sigma 1.5)",
    "psnr_rgb, ssim_rgb": "CLIP-SR reference code: RGB, no crop, scikit-image SSIM (7x7 window)",
    "niqe": "Mittal et al. with the published pristine parameters, Y channel, no crop",
    "ma, pi": "Ma et al. NRQM and PI = ((10 - Ma) + NIQE) / 2, only when Ma's model file is given",
}


@dataclass
class EvalReport:
    """Per-image rows (one per sample and method), per-method means, and the metrics that could not be
    computed here, with why (the others are reported all the same)."""

    scale: int
    rows: list[dict] = field(default_factory=list)
    means: dict[str, dict[str, float | None]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def bicubic_upsample(lr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The baseline: MATLAB-style bicubic upsampling of a uint8 LR to `size` = (h, w), as uint8."""
    up = imresize(lr.astype(np.float32) / 255.0, size)
    return np.round(np.clip(up, 0.0, 1.0) * 255.0).astype(np.uint8)


def evaluate(samples: Sequence[Sample], *, niqe_params: NiqeParams | str | Path | None = None,
             ma_model: str | Path | None = None) -> EvalReport:
    """Score every sample; the scale is read from the HR/LR sizes and must be the same for all. A given
    file that does not exist is an error; a no-reference metric that fails on these images or on this
    machine (Ma without pyiqa, NIQE on images under 96x96) is left out and named in `skipped`."""
    if not samples:
        raise ValueError("no samples to evaluate")
    if ma_model is not None and not Path(ma_model).is_file():
        raise FileNotFoundError(f"Ma model file not found: {ma_model}")
    params = niqe_params if isinstance(niqe_params, NiqeParams) else load_niqe_params(niqe_params)
    report = EvalReport(scale=_scale_of(samples[0]))
    images = []
    for index, sample in enumerate(samples):
        sr, hr, lr, caption = sample
        if _scale_of(sample) != report.scale or sr.shape != hr.shape:
            raise ValueError(f"sample {index}: SR {sr.shape}, HR {hr.shape} and LR {lr.shape} do not match "
                             f"a x{report.scale} evaluation")
        for method, image in {"sr": sr, "bicubic": bicubic_upsample(lr, hr.shape[:2]), "hr": hr}.items():
            row = {"index": index, "method": method, "caption": caption}
            if method != "hr":
                row |= {"psnr_y": psnr(image, hr, convention="basicsr", crop_border=report.scale),
                        "ssim_y": ssim(image, hr, convention="basicsr", crop_border=report.scale),
                        "psnr_rgb": psnr(image, hr, convention="rgb"),
                        "ssim_rgb": ssim(image, hr, convention="rgb")}
            report.rows.append(row)
            images.append(image)
    no_reference = {"niqe": lambda image: niqe(image, params)}
    if ma_model is not None:
        no_reference["ma"] = lambda image: ma_score(image, ma_model)
    for key, score in no_reference.items():
        try:
            values = [score(image) for image in images]
        except Exception as err:  # third-party pipelines raise many kinds; the other metrics stand
            report.skipped[key] = f"{type(err).__name__}: {err}"
            continue
        for row, value in zip(report.rows, values):
            row[key] = value
    if {"niqe", "ma"} <= report.rows[0].keys():
        for row in report.rows:
            row["pi"] = perceptual_index(row["niqe"], row["ma"])
    for method in METHODS:
        rows = [r for r in report.rows if r["method"] == method]
        report.means[method] = {k: float(np.mean([r[k] for r in rows])) for k in _metric_keys(rows[0])}
    return report


def write_report(report: EvalReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write `metrics.json` (conventions, means, per-image rows) and `metrics.csv` (per-image rows);
    infinite PSNRs (identical images) become null / empty."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / "metrics.json", out / "metrics.csv"
    payload = {"scale": report.scale, "conventions": CONVENTIONS, "skipped": report.skipped,
               "means": {m: _finite(v) for m, v in report.means.items()}, "images": [_finite(r) for r in report.rows]}
    json_path.write_text(json.dumps(payload, indent=2, allow_nan=False))
    columns = list(dict.fromkeys(k for row in report.rows for k in row))
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(_finite(r) for r in report.rows)
    return json_path, csv_path


def summary_table(report: EvalReport) -> Table:
    """Per-method means as a rich table (BasicSR-convention columns first, as we report them)."""
    keys = _metric_keys(report.means["sr"])
    table = Table(title=f"x{report.scale} mean over {len(report.rows) // len(METHODS)} images "
                        f"(_y: BasicSR Y/crop {report.scale}; _rgb: reference RGB/no crop)")
    table.add_column("method")
    for key in keys:
        table.add_column(key, justify="right")
    for method, values in report.means.items():
        table.add_row(method, *("-" if values.get(k) is None else f"{values[k]:.4f}" for k in keys))
    return table


def save_grid(samples: Sequence[Sample], path: str | Path, *, max_rows: int = 8) -> Path:
    """A PNG with one row per sample: LR (nearest-enlarged) | bicubic | SR | HR, caption underneath."""
    if not samples:
        raise ValueError("no samples for the grid")
    rows = []
    for sr, hr, lr, caption in samples[:max_rows]:
        lr_big = np.asarray(Image.fromarray(lr).resize(hr.shape[1::-1], Image.Resampling.NEAREST))
        rows.append(([lr_big, bicubic_upsample(lr, hr.shape[:2]), sr, hr], caption))
    return image_grid(rows, ("LR", "bicubic", "SR", "HR"), path)


def image_grid(rows: Sequence[tuple[Sequence[np.ndarray], str]], labels: Sequence[str], path: str | Path) -> Path:
    """Rows of equally sized uint8 tiles under column labels, each row with its caption underneath."""
    font = ImageFont.load_default()
    line_height = font.getbbox("Ag")[3] + 4
    height, width = rows[0][0][0].shape[:2]
    columns = len(labels)
    header = line_height + 6
    blocks = []
    for tiles, caption in rows:
        if len(tiles) != columns or any(t.shape[:2] != (height, width) for t in tiles):
            raise ValueError(f"grid rows need {columns} tiles of {height}x{width}")
        char_width = font.getlength(caption) / max(1, len(caption))
        lines = textwrap.wrap(caption, width=max(20, int(0.95 * columns * width / max(1.0, char_width)))) or [""]
        block = Image.new("RGB", (columns * width, height + line_height * len(lines) + 6), "white")
        for column, tile in enumerate(tiles):
            block.paste(Image.fromarray(tile), (column * width, 0))
        draw = ImageDraw.Draw(block)
        for number, line in enumerate(lines):
            draw.text((4, height + 3 + number * line_height), line, fill="black", font=font)
        blocks.append(block)
    grid = Image.new("RGB", (columns * width, header + sum(b.height for b in blocks)), "white")
    draw = ImageDraw.Draw(grid)
    for column, label in enumerate(labels):
        draw.text((column * width + 4, 3), label, fill="black", font=font)
    top = header
    for block in blocks:
        grid.paste(block, (0, top))
        top += block.height
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def _scale_of(sample: Sample) -> int:
    sr, hr, lr, _ = sample
    if hr.shape[0] % lr.shape[0] or hr.shape[0] * lr.shape[1] != hr.shape[1] * lr.shape[0]:
        raise ValueError(f"HR {hr.shape} is not an integer multiple of LR {lr.shape}")
    return hr.shape[0] // lr.shape[0]


def _metric_keys(row: dict) -> list[str]:
    order = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "niqe", "ma", "pi")
    return [k for k in order if k in row]


def _finite(row: dict) -> dict:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
