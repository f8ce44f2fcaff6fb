"""The evaluation report: metric table for SR, bicubic baseline and HR, JSON/CSV files and the grid."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from skimage import data

from clipsr.data.resize import bicubic_downsample
from clipsr.metrics import niqe, psnr, ssim
from clipsr.metrics.niqe import SHIPPED_PARAMS
from clipsr.metrics.report import bicubic_upsample, evaluate, save_grid, summary_table, write_report

PARAMS = SHIPPED_PARAMS
SCALE = 8


def _sample(photo, caption, sr_noise):
    hr = photo[:256, :256]
    lr = np.round(np.clip(bicubic_downsample(hr / 255.0, SCALE), 0, 1) * 255).astype(np.uint8)
    noise = np.random.default_rng(0).normal(0, sr_noise, hr.shape)
    sr = np.clip(hr + noise, 0, 255).round().astype(np.uint8)
    return sr, hr, lr, caption


@pytest.fixture(scope="module")
def samples():
    return [_sample(data.astronaut()[::2, ::2], "an astronaut with a flag " * 8, 4.0),
            _sample(data.chelsea(), "a ginger cat", 0.0)]  # SR == HR: infinite PSNR


def test_bicubic_upsample_size_and_type(samples):
    up = bicubic_upsample(samples[0][2], (256, 256))
    assert up.shape == (256, 256, 3) and up.dtype == np.uint8


def test_report_values_and_files(samples, tmp_path):
    report = evaluate(samples, niqe_params=PARAMS)
    assert report.scale == SCALE and len(report.rows) == 6
    sr0, hr0, lr0, _ = samples[0]
    first = report.rows[0]
    assert first["method"] == "sr"
    assert first["psnr_y"] == pytest.approx(psnr(sr0, hr0, crop_border=SCALE))
    assert first["ssim_rgb"] == pytest.approx(ssim(sr0, hr0, convention="rgb"))
    bicubic = report.rows[1]
    assert bicubic["method"] == "bicubic" and bicubic["psnr_y"] < first["psnr_y"]
    assert report.rows[2]["niqe"] == pytest.approx(niqe(hr0, PARAMS)) and "psnr_y" not in report.rows[2]
    assert report.means["bicubic"]["ssim_y"] == pytest.approx(np.mean([report.rows[1]["ssim_y"], report.rows[4]["ssim_y"]]))
    assert report.means["sr"]["psnr_y"] == float("inf")

    json_path, csv_path = write_report(report, tmp_path / "eval")
    payload = json.loads(json_path.read_text())
    assert payload["scale"] == SCALE and "BasicSR" in payload["conventions"]["psnr_y, ssim_y"]
    assert payload["means"]["sr"]["psnr_y"] is None  # infinite -> null
    assert payload["means"]["bicubic"]["niqe"] == pytest.approx(report.means["bicubic"]["niqe"])
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 6 and float(rows[1]["psnr_rgb"]) == pytest.approx(bicubic["psnr_rgb"])

    console = Console(record=True, width=160)
    console.print(summary_table(report))
    text = console.export_text()
    assert "bicubic" in text and f"{report.means['bicubic']['psnr_y']:.4f}" in text


def test_grid_layout(samples, tmp_path):
    path = save_grid(samples, tmp_path / "grid.png")
    grid = np.asarray(Image.open(path))
    assert grid.shape[1] == 4 * 256 and grid.shape[0] > 2 * 256 + 20
    sr, hr, lr, _ = samples[0]
    top = next(y for y in range(40) if np.array_equal(grid[y, 512:768], sr[0]))  # first SR row
    np.testing.assert_array_equal(grid[top:top + 256, 768:], hr)
    np.testing.assert_array_equal(grid[top:top + 256, :256], lr.repeat(SCALE, axis=0).repeat(SCALE, axis=1))
    caption_band = grid[256 + top: 256 + top + 10, :200]
    assert (caption_band < 128).any()  # caption text drawn under the first row


def test_report_rejects_mismatched_samples(samples):
    sr, hr, lr, caption = samples[0]
    with pytest.raises(ValueError, match="sample 1"):
        evaluate([samples[0], (sr, hr, lr[:16, :16], caption)], niqe_params=PARAMS)
    with pytest.raises(FileNotFoundError, match="nrqm.mat"):
        evaluate(samples[:1], niqe_params=PARAMS, ma_model="/nonexistent/nrqm.mat")


def test_a_metric_that_cannot_be_computed_is_skipped_and_the_others_written(samples, tmp_path):
    small = [(sr[:64, :64], hr[:64, :64], lr[:8, :8], caption) for sr, hr, lr, caption in samples]
    report = evaluate(small, niqe_params=PARAMS)  # NIQE needs 96x96 blocks
    assert "96x96" in report.skipped["niqe"] and "niqe" not in report.rows[0]
    assert report.means["bicubic"]["psnr_y"] > 0
    payload = json.loads(write_report(report, tmp_path)[0].read_text())
    assert "96x96" in payload["skipped"]["niqe"] and "psnr_y" in payload["means"]["sr"]
    model = tmp_path / "NRQM_model.mat"
    model.write_bytes(b"not a model")  # without pyiqa, or with it on a bad file, Ma cannot be computed
    report = evaluate(samples[:1], niqe_params=PARAMS, ma_model=model)
    assert "ma" in report.skipped and "pi" not in report.rows[0] and report.rows[0]["niqe"] > 0
