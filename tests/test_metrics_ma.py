"""PI arithmetic and Ma's score refusing clearly when its model is not there."""
from __future__ import annotations

import numpy as np
import pytest

from clipsr.metrics import MaUnavailableError, ma_score, perceptual_index
from clipsr.metrics.ma import MODEL_ENV


def test_perceptual_index():
    assert perceptual_index(niqe_value=4.0, ma_value=8.0) == pytest.approx(3.0)
    assert perceptual_index(6.0, 2.0) > perceptual_index(4.0, 8.0)


def test_ma_without_model_says_unavailable(monkeypatch, tmp_path):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(MaUnavailableError, match="NRQM_model.mat"):
        ma_score(image)
    with pytest.raises(FileNotFoundError, match="missing.mat"):
        ma_score(image, tmp_path / "missing.mat")
