"""Shared fixtures: small models built once per session (building CLIP costs seconds on 2 cores)."""
from __future__ import annotations

import logging

import pytest
import torch

logging.getLogger().setLevel(logging.ERROR)  # open_clip warns on purpose when pretrained=None


@pytest.fixture(scope="session")
def tiny16():
    from clipsr.factory import create_model

    torch.manual_seed(0)
    return create_model("tiny", scale=16).eval()
