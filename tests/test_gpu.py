"""The CUDA paths of the PyTorch stage: training with bf16/fp16 autocast, and fp16 inference that stays
close to fp32. Skipped without a CUDA GPU; the same code runs on the CPU in test_train and test_model."""
from __future__ import annotations

import json

import pytest
import torch

from clipsr.factory import create_model
from clipsr.metrics_logger import METRICS_FILE
from clipsr.train_config import TrainConfig
from clipsr.trainer import CHECKPOINT_FILE, SRTrainer

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of images in [-1, 1]."""
    mse = ((a.float() - b.float()) / 2).pow(2).mean().item()
    return 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item()


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_training_on_cuda_with_autocast_gives_finite_losses_and_a_checkpoint(tmp_path, amp):
    cfg = TrainConfig(out=str(tmp_path), preset="tiny", scale=16, dataset="synthbirds", batch_size=4, steps=3,
                      perceptual=None, log_every=1, ckpt_every=3, device="cuda", amp=amp, num_workers=2,
                      data_options={"count": 16, "part_weight": 10.0, "part_labels": True},
                      model={"generator.text_palette": 4, "generator.text_clamp": 4.0}, part_loss=0.1)
    SRTrainer(cfg).train()
    rows = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert len(rows) == 3
    assert all(torch.isfinite(torch.tensor(v)).item() for r in rows for k, v in r.items() if k != "step")
    model = create_model(tmp_path / CHECKPOINT_FILE)
    assert all(torch.isfinite(p).all() for p in model.parameters())


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
