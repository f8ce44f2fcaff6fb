"""The built-in demo: the shipped model folder is the export of the shipped checkpoint, and the
torch-free runtime upscales the README's example as PyTorch does."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clipsr.checkpoint import DEMO_CHECKPOINT
from clipsr.factory import create_model
from clipsr.inference import super_resolve, to_uint8
from clipsr_runtime import Upscaler
from clipsr_runtime.manifest import default_model_dir, file_sha256

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_shipped_folder_is_the_export_of_the_shipped_checkpoint():
    manifest = json.loads((default_model_dir() / "model.json").read_text())
    assert manifest["source"]["checkpoint"] == DEMO_CHECKPOINT.name
    assert manifest["source"]["checkpoint_sha256"] == file_sha256(DEMO_CHECKPOINT)
    model = create_model(DEMO_CHECKPOINT)
    assert (manifest["preset"], manifest["scale"]) == (model.config.preset, model.scale) == ("synthbirds", 16)


def test_runtime_upscales_the_examples_as_pytorch_does():
    model = create_model(DEMO_CHECKPOINT).eval()
    upscaler = Upscaler(backend="ort-cpu", precision="fp32")
    with open(EXAMPLES / "prompts.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 3
    for row in rows:
        lr = np.asarray(Image.open(EXAMPLES / row["image"]).convert("RGB"))
        assert lr.shape == (16, 16, 3)
        with torch.no_grad():
            expected = to_uint8(super_resolve(model, torch.from_numpy(lr).permute(2, 0, 1)[None] / 127.5 - 1,
                                              [row["prompt"]]))[0]
        actual = np.asarray(upscaler.upscale(lr, row["prompt"]))
        assert actual.shape == (256, 256, 3)
        assert np.abs(actual.astype(int) - expected.astype(int)).max() <= 1
