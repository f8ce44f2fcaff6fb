"""Tiling: large inputs tiled with feathered overlap equal the untiled result away from seams,
and show no seam (the fake generator has real tile-edge effects: linear resize + zero-padded blur)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from clipsr_runtime.tiling import fit_mode, resize_float, tile_starts, upscale_tiled
from clipsr_runtime.upscaler import Upscaler
from runtime_fixtures import make_model_dir

SIZE, TILE, SCALE = 64, 16, 4


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("model"), scale=SCALE, lr_size=TILE)


@pytest.fixture(scope="module")
def smooth_image():
    rng = np.random.default_rng(0)
    return np.clip(resize_float(rng.uniform(-1, 1, (8, 8, 3)).astype(np.float32), (SIZE, SIZE)), -1, 1)


@pytest.fixture(scope="module")
def untiled(model, smooth_image):
    up = Upscaler(model, fit="tile", tile=SIZE)  # the dynamic fake model takes the whole image as one tile
    return up.upscale_rgb(smooth_image, up.encode_prompt("a bird")), up.encode_prompt("a bird")


def _tiled(model, image, emb, pad):
    return Upscaler(model, fit="tile", tile=TILE, tile_pad=pad).upscale_rgb(image, emb)


def _edges(pad: int) -> np.ndarray:
    starts = tile_starts(SIZE, TILE, pad)
    return np.array(sorted({e * SCALE for s in starts for e in (s, s + TILE)} - {0, SIZE * SCALE}))


def test_tile_starts_cover_with_overlap():
    assert tile_starts(64, 16, 4) == [0, 12, 24, 36, 48]
    assert tile_starts(40, 16, 4) == [0, 12, 24]
    assert tile_starts(16, 16, 4) == [0]
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(64, 16, 16)
    with pytest.raises(ValueError, match="cannot tile"):
        tile_starts(8, 16, 4)


def test_fit_modes():
    assert fit_mode(16, 16, 16, "auto") == "direct"
    assert fit_mode(10, 16, 16, "auto") == "resize"
    assert fit_mode(40, 16, 16, "auto") == "tile"
    assert fit_mode(40, 40, 16, "resize") == "resize"
    with pytest.raises(ValueError, match="fit must be"):
        fit_mode(40, 40, 16, "crop")


@pytest.mark.parametrize("pad", [2, 4, 8])
def test_tiled_equals_untiled_away_from_seams(model, smooth_image, untiled, pad):
    full, emb = untiled
    tiled = _tiled(model, smooth_image, emb, pad)
    assert tiled.shape == full.shape == (SIZE * SCALE, SIZE * SCALE, 3)
    dist = np.abs(np.arange(SIZE * SCALE)[:, None] - _edges(pad)[None]).min(axis=1)
    far = (dist >= SCALE)[:, None] & (dist >= SCALE)[None, :]  # tile-edge effects reach < SCALE px
    diff = np.abs(tiled - full)
    assert diff[far].max() < 1e-5
    # measured near the seams with the fake model: 0.030 (pad 2), 0.016 (pad 4), 0.007 (pad 8);
    # away from them 6e-8..1.2e-7 (float32 rounding)
    assert diff.max() < 0.08 / pad


def _seam_excess(tiled: np.ndarray, full: np.ndarray, edges: np.ndarray) -> float:
    """Mean |horizontal gradient| across tile borders, tiled over untiled (1 = no visible seam)."""
    cols = edges - 1
    grad = lambda x: np.abs(np.diff(x, axis=1)).mean(axis=(0, 2))  # noqa: E731
    return float(grad(tiled)[cols].mean() / grad(full)[cols].mean())


def test_feathering_hides_seams_that_hard_tiles_show(model, smooth_image, untiled):
    full, emb = untiled
    feathered = _seam_excess(_tiled(model, smooth_image, emb, 4), full, _edges(4))
    hard = _seam_excess(_tiled(model, smooth_image, emb, 0), full, _edges(0))
    assert feathered < 1.1  # measured 1.046 (pad 2: 1.11, pad 8: 1.03)
    assert hard > 2.0  # measured 2.99: the metric does see seams


def test_upscale_tiled_batches_and_weights():
    calls = []

    def run(batch):
        calls.append(len(batch))
        return np.repeat(np.repeat(batch, 2, axis=2), 2, axis=3)  # exact nearest x2

    img = np.random.default_rng(2).uniform(-1, 1, (20, 28, 3)).astype(np.float32)
    out = upscale_tiled(img, run, tile=8, overlap=3, scale=2, batch=4)
    np.testing.assert_allclose(out, np.repeat(np.repeat(img, 2, 0), 2, 1), atol=1e-6)
    assert max(calls) <= 4 and sum(calls) == len(tile_starts(20, 8, 3)) * len(tile_starts(28, 8, 3))


def test_smaller_and_thin_inputs_are_resized_with_a_notice(model):
    up = Upscaler(model)
    emb = up.encode_prompt("a bird")
    with pytest.warns(UserWarning, match="resized to the model's 16x16"):
        assert up.upscale_rgb(np.zeros((10, 12, 3), np.float32), emb).shape == (40, 48, 3)
    with pytest.warns(UserWarning, match="stretched"):
        assert up.upscale_rgb(np.zeros((10, 40, 3), np.float32), emb).shape == (40, 160, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert up.upscale_rgb(np.zeros((16, 16, 3), np.float32), emb).shape == (64, 64, 3)
