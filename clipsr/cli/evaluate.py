"""clipsr-eval: PSNR/SSIM (BasicSR and reference conventions), NIQE (and PI with Ma's model) of a
checkpoint on an evaluation split, beside the bicubic baseline; table, JSON, CSV and an image grid."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from clipsr_runtime.cli_errors import OneLineErrorsCommand

from .common import run_app

app = typer.Typer(add_completion=False, help=__doc__)


@app.command(cls=OneLineErrorsCommand)
def evaluate(
    checkpoint: Path = typer.Argument(..., help="a clipsr checkpoint (.safetensors)"),
    dataset: str = typer.Option("synthbirds", help="synthbirds, cub, coco, celeba or jsonl"),
    data_root: Optional[Path] = typer.Option(None, help="dataset folder (or .jsonl file)"),
    split: str = typer.Option("test", help="evaluation split"),
    count: int = typer.Option(100, help="how many images (the first N of the split)"),
    batch_size: int = typer.Option(8),
    out: Path = typer.Option(Path("runs/eval"), "--out", "-o", help="folder for metrics.json/csv and grid.png"),
    niqe_params: Optional[Path] = typer.Option(None, envvar="CLIPSR_NIQE_PARAMS", exists=True, dir_okay=False,
                                               help="NIQE pristine parameters (.npz); else the shipped ones"),
    ma_model: Optional[Path] = typer.Option(None, envvar="CLIPSR_MA_MODEL", exists=True, dir_okay=False,
                                            help="Ma et al. model file, for PI"),
    device: str = typer.Option("auto", help="auto, cpu, cuda"),
) -> None:
    """Evaluate CHECKPOINT; the eval split uses a centre crop and each image's first caption."""
    import torch
    from rich.console import Console
    from tqdm import tqdm

    from ..datasets import build_dataset
    from ..distributed import pick_device
    from ..factory import create_model
    from ..inference import batches, super_resolve, to_uint8
    from ..metrics.report import evaluate as score, save_grid, summary_table, write_report

    dev = pick_device(device)
    model = create_model(checkpoint).to(dev).eval()
    data = build_dataset(dataset, str(data_root) if data_root else None, split, model.scale, False)
    samples = []
    for items in tqdm(list(batches(data, count, batch_size)), desc="super-resolving", unit="batch"):
        captions = [item["caption"] for item in items]
        lr = torch.stack([item["lr"] for item in items])
        sr = to_uint8(super_resolve(model, lr, captions))
        hr = to_uint8(torch.stack([item["hr"] for item in items]))
        samples += list(zip(sr, hr, to_uint8(lr), captions))
    report = score(samples, niqe_params=niqe_params, ma_model=ma_model)
    for key, why in report.skipped.items():
        typer.echo(f"warning: {key} not computed ({why}); the other metrics are written", err=True)
    json_path, csv_path = write_report(report, out)
    grid = save_grid(samples, out / "grid.png")
    Console().print(summary_table(report))
    typer.echo(f"wrote {json_path}, {csv_path}, {grid}")


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
