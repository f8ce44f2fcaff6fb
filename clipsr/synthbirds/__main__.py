"""`python -m clipsr.synthbirds export|examples|survival|sheet|clip-report|locator|fit-palette|warm-start|proof|
recipe`: write the dataset or the example inputs, measure colour survival, look at it, say what a CLIP learned of
it, train the part locator, fit the text palette's colour reader, start a model from another's weights, prove
that text helps, and train the built-in demo from nothing."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from clipsr_runtime.atomic import atomic_write
from clipsr_runtime.cli_errors import OneLineErrorsGroup
from clipsr_runtime.errors import OptionError

from clipsr.existing_output import check_output, claim_output
from clipsr.synthbirds import clip_report_settings as report_settings
from clipsr.synthbirds.clip_report_settings import PROBE_SITES
from clipsr.synthbirds.examples import EXAMPLE_SEEDS, check_test_seeds, write_examples
from clipsr.synthbirds.jsonl import export_jsonl
from clipsr.synthbirds.measure import part_colour_survival
from clipsr.synthbirds.proof.goals import DEMO_CARD, read_goals
from clipsr.synthbirds.recipe import CLIP_STEPS, LOCATOR_STEPS, PALETTE_STEPS, SR_STEPS, command, run_recipe, stages
from clipsr.synthbirds.render import DESCRIBED_PARTS, SIZE
from clipsr.synthbirds.sheet import contact_sheet
from clipsr.synthbirds.splits import SPLIT_SEEDS, split_seeds

# Errors follow the shared convention (clipsr_runtime.cli_errors): click rejects what the command line
# cannot do (exit 2), and a failure while working ends in one line with exit status 1.
app = typer.Typer(add_completion=False, cls=OneLineErrorsGroup, help="SynthBirds: procedural captioned birds for text-guided SR.")


def _one_of(choices: list[str]):
    """A click callback that accepts only `choices` (for one value or a repeated option's list)."""
    def check(value: str | list[str]) -> str | list[str]:
        bad = [v for v in ([value] if isinstance(value, str) else value) if v not in choices]
        if bad:
            raise typer.BadParameter(f"{bad[0]!r} is not one of {', '.join(choices)}")
        return value
    return check


def _divides_size(scale: int) -> int:
    if scale < 1 or SIZE % scale:
        raise typer.BadParameter(f"{scale} must divide the image size {SIZE}")
    return scale


SCALE = typer.Option(16, callback=_divides_size, help=f"downscaling factor, a divisor of {SIZE}")
EXISTING_FILE = {"exists": True, "dir_okay": False}
STAGES = [stage.name for stage in stages(Path(), start=Path())]  # the warm-start stage too
# Commands that write one checkpoint, report or proof follow the rule of clipsr.existing_output with --restart
# alone: it is written whole once the work is done, so an existing one is finished work with nothing to resume.
RESTART = typer.Option(False, help="move an existing --out aside to OUT.old-<time> first (there is no --resume: "
                                   "it is written whole at the end, so there is nothing to continue)")


def _check_new_file(out: Path, start: Path | None, restart: bool) -> None:
    """Refuse, before any work, an --out that is the checkpoint read or that exists without --restart."""
    if start is not None and out.resolve() == start.resolve():
        raise OptionError(f"--out {out} is the checkpoint it starts from; write a new file")
    check_output(out, restart=restart, resumable=False)


def _said_aside(out: Path, set_aside: Path | None) -> None:
    if set_aside:
        typer.echo(f"moved the earlier {out.name} to {set_aside}", err=True)


def _write_checkpoint(model, out: Path, restart: bool, **metadata: str) -> None:
    """Save `model` to --out once its work is done, moving an earlier file aside first with --restart."""
    from clipsr.checkpoint import save_checkpoint

    _said_aside(out, claim_output(out, restart=restart))
    save_checkpoint(model, out, **metadata)


@app.command()
def export(out: Path, split: str = typer.Option("train", callback=_one_of(list(SPLIT_SEEDS)),
                                     help=f"one of {', '.join(SPLIT_SEEDS)}"),
           count: int = typer.Option(None, min=0, help="default: the split's size"),
           scale: int = SCALE, seed_offset: int = typer.Option(0, min=0)) -> None:
    """Write PNGs and OUT/<split>.jsonl (generic captioned-folder layout)."""
    try:
        split_seeds(split, count, seed_offset)
    except ValueError as error:
        raise OptionError(str(error)) from None
    path = export_jsonl(out, split, count, scale, seed_offset)
    typer.echo(f"wrote {path}")


def _test_seeds(seeds: list[int]) -> list[int]:
    try:
        check_test_seeds(seeds)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return seeds


@app.command()
def examples(out: Path = typer.Option(..., "--out", "-o", help="folder to write (new or empty, or see --restart)"),
             seed: list[int] = typer.Option(list(EXAMPLE_SEEDS), callback=_test_seeds, metavar="SEED",
                                            help="a test bird; repeat for several (bird_0.png, bird_1.png, ...)"),
             scale: int = SCALE,
             restart: bool = typer.Option(False, help="move an existing --out aside to OUT.old-<time> first")) -> None:
    """Write the example inputs: each test bird's LR as bird_<i>.png and its caption in prompts.csv (the
    repository's examples/ are `-o examples --restart`)."""
    _said_aside(out, write_examples(out, tuple(seed), scale, restart=restart))
    typer.echo(f"wrote {len(seed)} birds and {out / 'prompts.csv'}")


@app.command()
def survival(n: int = typer.Option(300, min=1), scale: int = SCALE) -> None:
    """How often each part's colour is read correctly from the HR and from the bicubic LR (chance 10%)."""
    table = Table(title=f"part colour survival, {n} val birds, {scale}x bicubic")
    for column in ("part", "described", "HR accuracy", "LR accuracy"):
        table.add_column(column)
    survival_table = part_colour_survival(n, scale)
    for part, acc in survival_table.items():
        table.add_row(part, "yes" if part in DESCRIBED_PARTS else "", f"{acc['hr']:.1%}", f"{acc['lr']:.1%}")
    Console().print(table)


@app.command()
def sheet(out: Path, count: int = typer.Option(12, min=1), columns: int = typer.Option(3, min=1),
          scale: int = SCALE) -> None:
    """Save a contact sheet of val birds: HR beside its LR upsampled back."""
    path = contact_sheet(out, count, columns, scale)
    typer.echo(f"wrote {path}")


@app.command("clip-report")
def clip_report(weights: Path = typer.Argument(..., **EXISTING_FILE), preset: str = typer.Option("tiny", help="whose CLIP architecture"),
                n: int = typer.Option(report_settings.RETRIEVAL_BIRDS, min=1, help="val birds for retrieval"),
                probe_birds: int = typer.Option(report_settings.PROBE_BIRDS, min=1,
                                                help="train birds the text probe learns from"),
                probe_steps: int = typer.Option(report_settings.PROBE_STEPS, min=1, help="the text probe's steps"),
                phrasing_birds: int = typer.Option(report_settings.PHRASING_BIRDS, min=1,
                                                   help="train birds the phrasing probes learn from"),
                gate: float = typer.Option(report_settings.SENTENCE_GATE, min=0.0, max=1.0,
                                           help="the sentence-vector probe accuracy every part must reach"),
                seed: int = typer.Option(0, help="seed of the random CLIP beside the trained one"),
                out: Path = typer.Option(None, "--out", "-o", help="also write the numbers as JSON (a new file)"),
                restart: bool = RESTART) -> None:
    """Zero-shot part-colour retrieval and the text probes of CLIP weights, beside a random CLIP."""
    if out:
        _check_new_file(out, weights, restart)
    import dataclasses
    import json

    import torch

    from clipsr.clip import load_clip
    from clipsr.factory import get_config
    from clipsr.synthbirds.clip_report import clip_report as report

    config = dataclasses.replace(get_config(preset).clip, pretrained=str(weights))
    torch.manual_seed(seed)
    models = {"trained": load_clip(config), "random": load_clip(dataclasses.replace(config, pretrained=None))}
    result = {}
    for name, model in models.items():
        typer.echo(f"measuring the {name} CLIP", err=True)
        result[name] = report(model, config.arch, retrieval_birds=n, probe_birds=probe_birds,
                              probe_steps=probe_steps, phrasing_birds=phrasing_birds, gate=gate)
    table = Table(title=f"{weights}: what the CLIP knows of SynthBirds (chance 10%)")
    for column in ("part", "retrieval", "retrieval, random CLIP", "text probe", "text probe, random CLIP"):
        table.add_column(column)
    for part in DESCRIBED_PARTS:
        table.add_row(part, *(f"{result[name][kind][part]:.1%}" for kind in ("retrieval", "text_probe")
                              for name in ("trained", "random")))
    Console().print(table)
    table = Table(title="Linear probes on other phrasings: where a part's colour is kept (trained / random CLIP)")
    table.add_column("part")
    for site in PROBE_SITES:
        table.add_column(site.replace("_", " "))
    for part in DESCRIBED_PARTS:
        table.add_row(part, *(" / ".join(f"{result[name]['phrasing_probe'][site][part]:.1%}" for name in models)
                              for site in PROBE_SITES))
    Console().print(table)
    verdict = result["trained"]["sentence_gate"]
    typer.echo(f"sentence-vector gate (>= {verdict['threshold']:.0%} for every part on other phrasings): "
               f"{'met' if verdict['met'] else 'NOT met'} (worst: {verdict['worst_part']} {verdict['worst']:.1%})")
    if out:
        _said_aside(out, claim_output(out, restart=restart))
        atomic_write(out, lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"))
        typer.echo(f"wrote {out}")


@app.command()
def proof(checkpoint: Path = typer.Argument(..., **EXISTING_FILE),
          out: Path = typer.Option(Path("runs/proof"), "--out", "-o", help="folder to write (new or empty, or see "
                                                                          "--restart)"),
          no_text: Path = typer.Option(None, help="checkpoint of the no-text variant (Table IV row)", **EXISTING_FILE),
          card: Path = typer.Option(DEMO_CARD, help="model card whose front matter holds the goals (name, target, "
                                                    "direction); a card without goals gives no goal table",
                                    **EXISTING_FILE),
          n: int = typer.Option(200, min=1, help="test birds"), batch_size: int = typer.Option(25, min=1),
          restart: bool = RESTART) -> None:
    """Table IV analogue, text-matters and editability numbers, and a figure, for a 16x checkpoint, checked
    against the goals of a model card (default: the built-in demo's)."""
    from clipsr.factory import create_model
    from clipsr.synthbirds.proof.run import run_proof
    from clipsr.synthbirds.proof.report import MEASURES, to_markdown

    check_output(out, restart=restart, resumable=False)
    goals = read_goals(card, MEASURES)
    full = create_model(checkpoint).eval()
    variant = create_model(no_text).eval() if no_text else None
    result, set_aside = run_proof(full, out, no_text=variant, goals=goals, n=n, batch_size=batch_size, restart=restart)
    _said_aside(out, set_aside)
    typer.echo(to_markdown(result, goals))
    typer.echo(f"wrote {out}/proof.json, proof.md, proof.png")


@app.command("crown-edits")
def crown_edits(checkpoint: Path = typer.Argument(..., **EXISTING_FILE),
                n: int = typer.Option(150, min=1, help="test birds"),
                redraw: bool = typer.Option(True, help="redraw the birds bigger, with crowns ~1 LR pixel thick "
                                                       "(--no-redraw: as SynthBirds draws them)")) -> None:
    """How often a caption recolours the crown of test birds drawn bigger and chunkier than SynthBirds' own."""
    from clipsr.factory import create_model
    from clipsr.synthbirds.crown_edits import crown_edit_rates

    rates = crown_edit_rates(create_model(checkpoint).eval(), n=n, redraw=redraw)
    typer.echo(f"{n} test birds{' redrawn' if redraw else ''}: crown edit followed {rates['sentence']:.1%} (full caption), "
               f"{rates['short']:.1%} (\"a bird with X crown\"); true caption's crown {rates['true']:.1%}")


@app.command("fit-palette")
def fit_palette(checkpoint: Path = typer.Argument(..., **EXISTING_FILE),
                out: Path = typer.Option(..., "--out", "-o", help="checkpoint to write (a new file)"),
                steps: int = typer.Option(1000, min=1, help="steps of all captions of 64 train birds each"),
                restart: bool = RESTART) -> None:
    """Teach a trained checkpoint's text palette to read colours from captions alone (text only, no images)."""
    from clipsr.checkpoint import read_metadata
    from clipsr.factory import create_model
    from clipsr.synthbirds.palette_text import fit_palette_text

    _check_new_file(out, checkpoint, restart)
    model = create_model(checkpoint)
    losses = fit_palette_text(model, steps=steps)
    _write_checkpoint(model, out, restart, step=read_metadata(checkpoint).get("step", "?"),
                      palette_text_steps=str(steps))
    typer.echo(f"palette colour L1 {losses['colour']:.3f}, named BCE {losses['named']:.4f}; wrote {out}")


@app.command("warm-start")
def warm_start_command(start: Path, out: Path = typer.Option(..., "--out", "-o", help="checkpoint to write"),
                       preset: str = typer.Option("tiny"), scale: int = typer.Option(16),
                       set_: list[str] = typer.Option([], "--set", help="model override, e.g. generator.use_text=false"),
                       restart: bool = RESTART) -> None:
    """A new model of PRESET holding every weight of START whose name and shape match: an SR stage's --init
    when the recipe continues from an earlier model (the rest keeps its fresh initialisation)."""
    import torch

    from clipsr.factory import warm_start_model
    from clipsr.train_config import parse_assignments

    _check_new_file(out, start, restart)
    if not start.is_file():
        raise FileNotFoundError(f"no checkpoint at {start}")
    torch.manual_seed(0)
    model, missing = warm_start_model(start, preset, scale=scale, **parse_assignments(set_))
    _write_checkpoint(model, out, restart, warm_start=str(start))
    typer.echo(f"{len(missing)} weights not in {start}: " + ", ".join(sorted({m.rsplit('.', 2)[0] for m in missing}))
               + f"; wrote {out}")


@app.command()
def locator(out: Path = typer.Option(..., "--out", "-o", help="checkpoint to write (the SR stage's --init)"),
            clip: Path = typer.Option(None, help="CLIP weights of the CLIP stage (a model of preset synthbirds)"),
            start: Path = typer.Option(None, help="start from this checkpoint's weights, all whose name and shape "
                                                  "match (its CLIP included) instead of a new model"),
            birds: int = typer.Option(12000, help="train birds rendered once into the cache (every other one varied)"),
            steps: int = typer.Option(2500, help="steps of 32 cached birds"),
            lr: float = typer.Option(2e-3, help="Adam's learning rate at the start of its cosine decay"),
            keep_weight: float = typer.Option(2.0, help="weight of the 'no part' class in the cross-entropy: "
                                                                "above 1 the painted edge moves inward"),
            cache: Path = typer.Option(None, help="where the rendered birds are kept (default: beside --out)"),
            restart: bool = RESTART) -> None:
    """Train a generator's part locator on part masks, from a cache of rendered birds (the SR stage freezes it).
    To train an earlier --out further, give it as --start (a new cosine cycle) and write another file."""
    import torch

    from clipsr.factory import create_model, warm_start_model
    from clipsr.synthbirds.locator_stage import load_or_render_cache, locator_iou, train_locator

    if (clip is None) == (start is None):
        raise OptionError("give exactly one of --clip (a new model) or --start (a checkpoint to start from)")
    if steps < 1 or birds < 1:
        raise OptionError("--steps and --birds must be at least 1")
    if not (lr > 0 and keep_weight > 0):
        raise OptionError("--lr and --keep-weight must be above 0")
    _check_new_file(out, start, restart)
    torch.manual_seed(0)
    if start is not None:
        model, missing = warm_start_model(start)  # a checkpoint from before the locator lacks only it
        typer.echo(f"from {start}: all weights but {len(missing)} ({', '.join(sorted({m.rsplit('.', 2)[0] for m in missing}))})")
    else:
        if not clip.is_file():
            raise FileNotFoundError(f"no CLIP weights at {clip}")
        model = create_model("synthbirds", scale=16, clip_weights=str(clip))
    if model.generator.locator is None:
        raise ValueError("this model has no text palette, so no part locator to train")
    cache_dir = cache or out.parent
    train = load_or_render_cache(cache_dir / "locator_train.safetensors", "train", birds)
    val = load_or_render_cache(cache_dir / "locator_val.safetensors", "val", 200)
    loss = train_locator(model.generator.locator, train, steps, lr=lr, keep_weight=keep_weight)
    iou = locator_iou(model.generator.locator, val)
    _write_checkpoint(model, out, restart, locator_steps=str(steps), locator_birds=str(birds),
                      locator_keep_weight=str(keep_weight))
    typer.echo(f"locator CE {loss:.4f}; val IoU " + ", ".join(f"{p} {v:.2f}" for p, v in iou.items()) + f"; wrote {out}")


@app.command()
def recipe(out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="folder of every stage's output"),
           device: str = typer.Option("cpu", callback=_one_of(["cpu", "cuda"]), help="cpu or cuda"),
           workers: int = typer.Option(-1, help="data-loading workers (-1: 0 on CPU, 4 on CUDA; on a GPU give "
                                                "most CPU cores: rendering birds bounds the step rate)"),
           only: list[str] = typer.Option([], callback=_one_of(STAGES),
                                          help=f"run only these stages ({', '.join(STAGES)})"),
           clip_steps: int = typer.Option(CLIP_STEPS, min=1), locator_steps: int = typer.Option(LOCATOR_STEPS, min=1),
           sr_steps: int = typer.Option(SR_STEPS, min=1), palette_steps: int = typer.Option(PALETTE_STEPS, min=1),
           start: Path = typer.Option(None, help="start the locator and SR stages' model from this checkpoint's "
                                                 "weights (e.g. the previous demo) instead of a new one"),
           dry_run: bool = typer.Option(False, help="print the stages' commands and run nothing"),
           resume: bool = typer.Option(False, help="continue the recipe in --out: stages done are skipped, an "
                                                   "interrupted training stage resumes"),
           restart: bool = typer.Option(False, help="start over: move --out aside to OUT.old-<time> first")) -> None:
    """Train the built-in demo from nothing: CLIP stage, its report, the part locator, SR stage, the palette's
    text reader fitted on captions, no-text variant, proof. An existing --out is never replaced: --resume
    continues it (stages already done are skipped, an interrupted training stage resumes), --restart sets it
    aside."""
    steps = dict(clip_steps=clip_steps, locator_steps=locator_steps, sr_steps=sr_steps, palette_steps=palette_steps)
    if dry_run:
        for stage in stages(out, device, workers, start=start, **steps):
            typer.echo(f"[{stage.name}] {' '.join(command(stage))}")
        return
    run_recipe(out, device, workers, tuple(only), echo=typer.echo, resume=resume, restart=restart,
               start=start, **steps)
    typer.echo(f"recipe done: {out}")


if __name__ == "__main__":
    app()
