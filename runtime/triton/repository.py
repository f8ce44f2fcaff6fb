"""Write a Triton model repository from a model folder: one sub-folder per model, each with its
`config.pbtxt` and version `1/` (the ONNX file, TensorRT plan, or Python-backend `model.py`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from clipsr_runtime.atomic import atomic_folder
from clipsr_runtime.manifest import ENGINES, Manifest, load_manifest
from clipsr_runtime.triton import configs
from clipsr_runtime.triton.configs import ServeOptions
from clipsr_runtime.triton.pbtxt import to_pbtxt

_SHIM = ('"""Triton Python-backend model: the step lives in clipsr_runtime (pip install clipsr)."""\n\n'
         "from clipsr_runtime.triton.steps import {cls} as TritonPythonModel  # noqa: F401\n")
_STEP_CLASSES = {"tokenizer": "TokenizerStep", "preprocess": "PreprocessStep",
                 "postprocess": "PostprocessStep", "network": "NetworkStep"}


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard links keep a repository of big graphs cheap; another file system gets a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def find_engine(manifest: Manifest, stage: str) -> Path:
    """The one TensorRT engine of a stage in the model folder's engines/ (built by clipsr-run/export)."""
    found = sorted((manifest.root / ENGINES).glob(f"{stage}-*.engine"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(p.name for p in found)})"
        raise ValueError(f"model {manifest.root} has {what} {stage} TensorRT engine in engines/: "
                         "--platform tensorrt needs exactly one per stage (build one with "
                         "clipsr-run --backend trt, or use --platform onnxruntime)")
    return found[0]


def _write_model(repo: Path, config: dict, files: dict[str, Path] | None = None, step: str | None = None) -> Path:
    folder = repo / config["name"]
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(to_pbtxt(config) + "\n", encoding="utf-8")
    for name, src in (files or {}).items():
        _link_or_copy(src, folder / "1" / name)
    if step:
        (folder / "1" / "model.py").write_text(_SHIM.format(cls=_STEP_CLASSES[step]), encoding="utf-8")
    return folder


def _write_network(repo: Path, manifest: Manifest, stage: str, opts: ServeOptions) -> None:
    config = configs.network_config(manifest, stage, opts)
    if opts.platform == "onnxruntime":
        _write_model(repo, config, {"model.onnx": manifest.stage_file(stage, opts.precision)})
    elif opts.platform == "tensorrt":
        _write_model(repo, config, {"model.plan": find_engine(manifest, stage)})
    else:  # the whole model folder (hard-linked), read back with the runtime's own loader
        files = {f"model/{name}": manifest.path(name) for name in [*manifest.files, "model.json"]}
        _write_model(repo, config, files, step="network")


def write_repository(model_dir: Path, out: Path, opts: ServeOptions) -> Path:
    """Build the repository in a temporary sibling folder and rename it into place: no half-written
    repository is ever left at `out`. `out` must not exist yet (or be an empty folder)."""
    opts.check()
    manifest = load_manifest(model_dir)
    for stage in configs.NETWORKS:
        manifest.stage_file(stage, opts.precision)
    configs.check_batch_axis(manifest)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not an empty folder: choose a new one")
    with atomic_folder(out, mode=0o755) as tmp:  # 0o755: a server in a container runs as another user
        _write_model(tmp, configs.tokenizer_config(manifest, opts),
                     {manifest.tokenizer["vocab"]: manifest.path(manifest.tokenizer["vocab"])}, step="tokenizer")
        for config in configs.image_configs(manifest, opts):
            _write_model(tmp, config, step=config["name"])
        for stage in configs.NETWORKS:
            _write_network(tmp, manifest, stage, opts)
        _write_model(tmp, configs.ensemble_config(manifest, opts))
    return out
