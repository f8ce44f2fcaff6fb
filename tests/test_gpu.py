"""The CUDA paths of the PyTorch stage: both training stages with bf16/fp16 autocast, an fp16 run resumed
with its loss scale, and fp16 inference that stays close to fp32. Skipped without a CUDA GPU; the same code runs on the CPU in test_train and test_model."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import safetensors
import torch

from clipsr.clip import load_clip
from clipsr.config import CLIPConfig
from clipsr.factory import create_model
from clipsr.metrics_logger import METRICS_FILE
from clipsr.train_clip import CLIPTrainer
from clipsr.train_config import CLIPStageConfig, SRConfig
from clipsr.train_state import STATE_FILE
from clipsr.trainer import CHECKPOINT_FILE, SRTrainer

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of images in [-1, 1]."""
    mse = ((a.float() - b.float()) / 2).pow(2).mean().item()
    return 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item()


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_training_on_cuda_with_autocast_gives_finite_losses_and_a_checkpoint(tmp_path, amp):
    cfg = SRConfig(out=str(tmp_path), preset="tiny", scale=16, dataset="synthbirds", batch_size=4, steps=3,
                   perceptual=None, log_every=1, ckpt_every=3, device="cuda", amp=amp, num_workers=2,
                   data_options={"count": 16, "part_labels": True},
                   model={"generator.text_palette": 4, "generator.text_clamp": 4.0}, part_loss=0.1)
    SRTrainer(cfg).train()
    rows = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert len(rows) == 3
    assert all(torch.isfinite(torch.tensor(v)).item() for r in rows for k, v in r.items() if k != "step")
    model = create_model(tmp_path / CHECKPOINT_FILE)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_clip_stage_on_cuda_with_autocast_gives_finite_losses_and_loadable_weights(tmp_path, amp):
    cfg = CLIPStageConfig(out=str(tmp_path / "clip"), preset="tiny", batch_size=4, steps=3, log_every=1,
                          device="cuda", amp=amp, num_workers=2, data_options={"count": 16, "attributes": True},
                          attribute_loss=1.0)
    path = CLIPTrainer(cfg).train()
    rows = [json.loads(line) for line in (tmp_path / "clip" / METRICS_FILE).read_text().splitlines()]
    assert len(rows) == 3 and all(math.isfinite(v) for r in rows for v in r.values())
    clip = load_clip(CLIPConfig(arch="clipsr-tiny", pretrained=str(path), quick_gelu=False))
    assert all(torch.isfinite(p).all() for p in clip.parameters())


def test_an_fp16_run_resumes_with_its_loss_scale(tmp_path):
    cfg = SRConfig(out=str(tmp_path), preset="tiny", scale=16, dataset="synthbirds", batch_size=4, steps=2,
                   perceptual=None, lambda_adv=0.0, log_every=1, device="cuda", amp="fp16", num_workers=0,
                   data_options={"count": 16})
    SRTrainer(cfg).train()
    with safetensors.safe_open(str(tmp_path / STATE_FILE), framework="pt") as f:
        saved = json.loads(f.metadata()["grad_scaler"])
    resumed = SRTrainer(dataclasses.replace(cfg, steps=3), resume=True)
    assert resumed.scaler.get_scale() == saved["scale"] and resumed.completed == 2


def test_cuda_fp32_matches_cpu_and_fp16_stays_close(tiny16):
    torch.manual_seed(0)
    lr = torch.rand(2, 3, 16, 16) * 2 - 1
    tokens = tiny16.tokenize(["a bird with a red crown", "this bird has blue wings and a white belly"])
    with torch.no_grad():
        cpu = tiny16(lr, tokens)
        gpu = create_model("tiny", scale=16).cuda().eval()
        gpu.load_state_dict(tiny16.state_dict())
        fp32 = gpu(lr.cuda(), tokens.cuda()).cpu()
        fp16 = gpu.half()(lr.cuda().half(), tokens.cuda()).float().cpu()
    assert torch.isfinite(fp16).all()
    assert _psnr(fp32, cpu) > 50
    assert _psnr(fp16, fp32) > 40
