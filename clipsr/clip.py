"""The frozen CLIP, through open_clip: loading (tag, local file or random), the text tower and the
visual tower with prompt injection and layer taps, the two ways CLIP-SR uses it."""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
from pathlib import Path

import huggingface_hub.constants
import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from .config import CLIPConfig

open_clip.add_model_config(Path(__file__).parent / "clip_configs")
_OPEN_CLIP_DIR = str(Path(open_clip.__file__).parent)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CLIPWeightsError(RuntimeError):
    """The CLIP weights asked for cannot be found or fetched."""


def load_clip(config: CLIPConfig) -> open_clip.CLIP:
    """Build the open_clip model of `config.arch` and load `config.pretrained` into it, frozen."""
    pretrained = config.pretrained
    if pretrained and not Path(pretrained).is_file():
        _check_tag(config)
    with _held_open_clip_logs() as held:
        try:
            model = open_clip.create_model(config.arch, pretrained=pretrained or None,
                                           force_quick_gelu=config.quick_gelu, load_weights=bool(pretrained))
        except Exception as err:  # open_clip/HF raise many kinds; the user needs one message
            if not pretrained:
                raise
            raise CLIPWeightsError(_missing_weights_message(config, err)) from err
    if pretrained:  # loaded: what open_clip had to say about it still matters
        for record in held:
            logging.getLogger(record.name).handle(record)
    model.eval().requires_grad_(False)
    return model


@contextlib.contextmanager
def _held_open_clip_logs():
    """Hold back what open_clip logs (through the root logger) while it builds a model: its "No pretrained
    weights loaded ... initialized randomly" warning when random weights are intended (a checkpoint fills
    them), and its download error line when CLIPWeightsError is about to say the same in one message."""
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        if record.pathname.startswith(_OPEN_CLIP_DIR):
            held.append(record)
            return False
        return True

    root = logging.getLogger()
    root.addFilter(hold)
    try:
        yield held
    finally:
        root.removeFilter(hold)


def _check_tag(config: CLIPConfig) -> None:
    """Fail fast on a tag open_clip does not know, and go offline at once when there is no network."""
    tags = open_clip.list_pretrained_tags_by_model(config.arch)
    if config.pretrained not in tags:
        raise CLIPWeightsError(
            f"CLIP weights {config.pretrained!r} are neither a file nor an open_clip tag of "
            f"{config.arch} (tags: {', '.join(tags) or 'none'})")
    if not _online():
        # huggingface_hub reads the variable at import time: set its constant too, or it retries ~47 s.
        os.environ["HF_HUB_OFFLINE"] = "1"
        huggingface_hub.constants.HF_HUB_OFFLINE = True


def _online(host: str = "huggingface.co", timeout: float = 2.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _missing_weights_message(config: CLIPConfig, err: Exception) -> str:
    if Path(config.pretrained).is_file():
        why = ("its pickle needs more than weights" if isinstance(err, pickle.UnpicklingError)
               else (str(err).strip().splitlines() or [type(err).__name__])[0])
        return (f"cannot read CLIP weights {config.pretrained} for {config.arch} ({why[:300]}): expected an "
                f"OpenAI or open_clip state dict (.pt, read with weights_only=True, nothing else unpickled) or a "
                f".safetensors file; OpenAI's TorchScript download is not read: pass the open_clip tag 'openai'")
    return (f"cannot load CLIP weights {config.pretrained!r} for {config.arch} ({type(err).__name__}): "
            f"download them where there is a network (python -c \"import open_clip; "
            f"open_clip.create_model('{config.arch}', pretrained='{config.pretrained}')\" fills the "
            f"Hugging Face cache, ~/.cache/huggingface), or pass a local checkpoint file as the CLIP "
            f"weights (clip.pretrained=/path/to/open_clip_model.safetensors)")


def clip_preprocess(image: torch.Tensor, size: int) -> torch.Tensor:
    """[-1, 1] image of any size -> CLIP's input: mapped to [0, 1] and normalised once, resized with
    antialiased bicubic (the reference code did the mapping twice and resized nearest)."""
    x = F.interpolate((image + 1) / 2, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    mean = torch.tensor(CLIP_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


class CLIPText(nn.Module):
    """Frozen text tower: tokens (B, 77) -> pooled end-of-text embedding (B, D) and per-token features."""

    def __init__(self, clip: open_clip.CLIP):
        super().__init__()
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        self.context_length = clip.context_length
        self.embed_dim = clip.text_projection.shape[1]
        self.width = clip.token_embedding.weight.shape[1]  # of the per-token features

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if tokens.dim() != 2 or tokens.shape[1] != self.context_length:
            raise ValueError(f"tokens must have shape (B, {self.context_length}), got {tuple(tokens.shape)}")
        tokens = tokens.long()
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.transformer(x, attn_mask=self.attn_mask)
        x = self.ln_final(x)
        # The end-of-text token has the largest id in CLIP's vocabulary: its position is the argmax.
        eot = tokens.argmax(dim=-1)
        pooled = x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection
        return pooled, x

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: dropout and friends stay off


class CLIPVisual(nn.Module):
    """Frozen visual tower, used twice: the generator's CLIP-ViT branch runs its blocks on mapped
    tokens with prompts injected; the discriminator taps patch tokens of a real image."""

    def __init__(self, clip: open_clip.CLIP):
        super().__init__()
        visual = clip.visual
        self.conv1 = visual.conv1
        self.class_embedding = visual.class_embedding
        self.positional_embedding = visual.positional_embedding
        self.ln_pre = visual.ln_pre
        self.blocks = visual.transformer.resblocks
        self.ln_post = visual.ln_post
        self.proj = visual.proj
        self.width = visual.class_embedding.shape[0]
        self.grid = visual.grid_size[0]
        self.image_size = visual.image_size[0]
        self.embed_dim = visual.proj.shape[1]

    def train(self, mode: bool = True):
        return super().train(False)

    def embed(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, W) patch tokens -> class token prepended, positions added, ln_pre."""
        cls = self.class_embedding.to(patch_tokens.dtype).expand(patch_tokens.shape[0], 1, -1)
        return self.ln_pre(torch.cat([cls, patch_tokens], dim=1) + self.positional_embedding)

    def run_with_prompts(self, patch_tokens: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """Blocks over (B, N, W) tokens; prompt i joins the sequence for block i + 1 only.

        Returns the patch tokens after the last block, (B, N, W)."""
        x = self.embed(patch_tokens)
        for i, block in enumerate(self.blocks):
            if 1 <= i <= prompts.shape[1]:
                x = block(torch.cat([x, prompts[:, i - 1:i]], dim=1))[:, :-1]
            else:
                x = block(x)
        return x[:, 1:]

    def image_features(self, image: torch.Tensor, taps: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """An image in [-1, 1] of any size -> tapped patch tokens (B, len(taps), W, g, g) and the
        CLIP image embedding (B, D) (ln_post of the class token, projected)."""
        x = self.conv1(clip_preprocess(image, self.image_size)).flatten(2).transpose(1, 2)
        x = self.embed(x)
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in taps:
                feats.append(x[:, 1:].transpose(1, 2).reshape(x.shape[0], self.width, self.grid, self.grid))
        embedding = self.ln_post(x[:, 0]) @ self.proj
        return torch.stack(feats, dim=1), embedding
