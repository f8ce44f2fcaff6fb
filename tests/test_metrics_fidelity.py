"""PSNR/SSIM in the BasicSR (Y, crop, gaussian SSIM) and reference (RGB, 7x7 SSIM) conventions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d
from skimage import data

from clipsr.metrics.fidelity import psnr, ssim


@pytest.fixture(scope="module")
def pair():
    hr = data.astronaut()[::2, ::2]  # 256x256
    noisy = np.clip(hr + np.random.default_rng(0).normal(0, 8, hr.shape), 0, 255).round().astype(np.uint8)
    return hr, noisy


def test_identical_images(pair):
    hr, _ = pair
    for convention in ("basicsr", "rgb"):
        assert psnr(hr, hr, convention=convention, crop_border=4) == float("inf")
        assert ssim(hr, hr, convention=convention) == pytest.approx(1.0)


def test_psnr_of_a_known_error():
    a = np.full((32, 32, 3), 100, np.uint8)
    b = a + 5  # MSE 25 in RGB, Y differs by 5 * (65.481 + 128.553 + 24.966) / 255 = 4.294
    assert psnr(a, b, convention="rgb") == pytest.approx(10 * np.log10(255 ** 2 / 25))
    assert psnr(a, b, convention="basicsr") == pytest.approx(10 * np.log10(255 ** 2 / (5 * 219 / 255) ** 2))


def test_psnr_of_gaussian_noise(pair):
    hr, _ = pair
    rng = np.random.default_rng(1)
    noisy = hr.astype(np.float64) + rng.normal(0, 10, hr.shape)
    # float input in [0, 255] with data_range; no clipping needed for the expected value
    expected = 10 * np.log10(255 ** 2 / np.mean((noisy - hr) ** 2))
    assert psnr(hr.astype(np.float64), noisy, convention="rgb", data_range=255) == pytest.approx(expected)
    assert expected == pytest.approx(28.13, abs=0.1)  # 20 log10(255 / 10)


def test_conventions_differ(pair):
    hr, noisy = pair
    assert psnr(hr, noisy, convention="basicsr", crop_border=4) - psnr(hr, noisy, convention="rgb") > 1.0
    assert abs(ssim(hr, noisy, convention="basicsr", crop_border=4) - ssim(hr, noisy, convention="rgb")) > 0.01


def _matlab_ssim(x, y):
    """Wang et al.'s ssim.m: 11x11 gaussian (sigma 1.5), 'valid' filtering, K = (0.01, 0.03), L = 255."""
    ax = np.arange(-5, 6)
    w = np.exp(-(ax[:, None] ** 2 + ax[None] ** 2) / (2 * 1.5 ** 2))
    w /= w.sum()
    f = lambda z: convolve2d(z, w, mode="valid")  # noqa: E731
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    return np.mean((2 * mx * my + c1) * (2 * sxy + c2) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2)))


def test_basicsr_ssim_matches_matlab_definition(pair):
    hr, noisy = pair
    crop = lambda z: z[4:-4, 4:-4].astype(np.float64)  # noqa: E731
    y = lambda z: 16 + z @ np.array([65.481, 128.553, 24.966]) / 255  # noqa: E731
    expected = _matlab_ssim(y(crop(hr)), y(crop(noisy)))
    assert ssim(hr, noisy, convention="basicsr", crop_border=4) == pytest.approx(expected, abs=1e-9)


def test_tensor_inputs_are_quantised_like_saved_images(pair):
    hr, noisy = pair
    to_tensor = lambda z: torch.from_numpy(z).permute(2, 0, 1).float() / 127.5 - 1  # noqa: E731
    assert psnr(to_tensor(hr), to_tensor(noisy)[None], crop_border=4) == pytest.approx(psnr(hr, noisy, crop_border=4))
    assert ssim(to_tensor(hr), to_tensor(noisy), convention="rgb") == pytest.approx(ssim(hr, noisy, convention="rgb"))


def test_bad_inputs(pair):
    hr, _ = pair
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(hr, hr[:-1])
    with pytest.raises(ValueError, match="needs data_range"):
        psnr(hr.astype(np.float32), hr.astype(np.float32))
    with pytest.raises(ValueError, match="convention"):
        ssim(hr, hr, convention="y")
    with pytest.raises(ValueError, match="crop_border 200"):
        psnr(hr, hr, crop_border=200)
