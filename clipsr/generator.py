"""The CLIP-SR generator: image encoder per scale, CLIP-ViT branch with prompts, iterative refinement,
PixelShuffle upsampler (docs/architecture.md)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import GBlock, PaletteOutput, TBlock, TextMapper, TextPalette, TIFBlock
from .clip import CLIPVisual
from .config import FEATURE_SIZE, GeneratorConfig
from .locator import PartLocator
from .upsample import MatrixUpsample


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)


class ImageEncoder(nn.Module):
    """LR -> global skip (LR_res), and one feature per level from the LR size down to 8x8."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.lr_res = conv3x3(3, cfg.refine_channels[-1])
        self.r1 = conv3x3(3, cfg.lr_res_width)
        widths = [cfg.lr_res_width] + [cfg.enc_width] * cfg.n_down
        self.down = nn.ModuleList(
            nn.Sequential(nn.PReLU(widths[i]), conv3x3(widths[i], widths[i + 1], stride=2))
            for i in range(cfg.n_down))
        self.widths = {cfg.lr_size >> i: w for i, w in enumerate(widths)}  # size -> channels

    def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        x = self.r1(lr)
        skips = {int(x.shape[-1]): x}  # int: under TorchScript tracing a size is a tensor
        for down in self.down:
            x = down(x)
            skips[int(x.shape[-1])] = x
        return self.lr_res(lr), skips


class PromptPredictor(nn.Module):
    """Text -> n prompt tokens for the CLIP visual blocks: FC, then one pre-LN self-attention layer."""

    def __init__(self, text_dim: int, width: int, n_prompts: int, heads: int):
        super().__init__()
        self.n_prompts, self.width = n_prompts, width
        self.fc = nn.Linear(text_dim, n_prompts * width)
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        prompts = self.fc(text).view(-1, self.n_prompts, self.width)
        normed = self.norm(prompts)
        return prompts + self.attn(normed, normed, normed, need_weights=False)[0]


class CLIPViTBranch(nn.Module):
    """GALIP's CLIP mapper: 8x8 feature + text -> CLIP visual blocks with prompts -> 8x8 feature.

    Unlike the reference code, its output reaches the image: it is added, through a learnable gate, to
    the 8x8 feature that enters the refinement module."""

    def __init__(self, cfg: GeneratorConfig, clip_visual: CLIPVisual, text_dim: int):
        super().__init__()
        width = clip_visual.width
        if cfg.n_prompts >= len(clip_visual.blocks):
            raise ValueError(f"n_prompts={cfg.n_prompts} needs more than {len(clip_visual.blocks)} CLIP blocks")
        self.clip_visual = clip_visual
        self.mapper = TBlock(text_dim, cfg.enc_width, cfg.mapper_width, cfg.text_reweight)
        grid = clip_visual.grid
        self.to_tokens = nn.Conv2d(cfg.enc_width, width, FEATURE_SIZE - grid + 1)  # 8x8 -> 7x7
        self.prompts = PromptPredictor(text_dim, width, cfg.n_prompts, cfg.prompt_heads)
        self.from_tokens = nn.Conv2d(width, cfg.enc_width, 5, padding=2)
        self.gate = nn.Parameter(torch.tensor(cfg.branch_gate_init))

    def forward(self, feat: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        tokens_in = self.to_tokens(self.mapper(feat, text))                    # (B, W, 7, 7)
        b, w, g, _ = tokens_in.shape
        out = self.clip_visual.run_with_prompts(tokens_in.flatten(2).transpose(1, 2), self.prompts(text))
        out = out.transpose(1, 2).reshape(b, w, g, g)
        out = self.from_tokens(tokens_in + 0.1 * out)
        out = F.interpolate(out, size=feat.shape[-2:], mode="bilinear", align_corners=False)
        return feat + self.gate * out


class UpStage(nn.Module):
    """x2 PixelShuffle stage; with text, a TIF block replaces its activation (`up_text`)."""

    def __init__(self, width: int, text_dim: int | None, text_reweight: str):
        super().__init__()
        self.conv = conv3x3(width, width * 4)
        self.shuffle = nn.PixelShuffle(2)
        self.fuse = TIFBlock(text_dim, width, text_reweight) if text_dim else None
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = self.shuffle(self.conv(x))
        return self.fuse(x, text) if self.fuse is not None else self.act(x)


class Upsampler(nn.Module):
    """Residual head at LR size plus the global skip, then log2(scale) PixelShuffle x2 stages; `features`
    runs them, `rgb` maps the result to RGB with the `out` conv.

    The paper's upsampler sees no text; `text_dim` (the `up_text` switch) lets the text modulate every
    stage, where parts thinner than an LR pixel are drawn. With `rgb_shuffle`, `out` does the last x2 itself
    (ESPCN's last layer: 4 x 3 channels at half the size, then PixelShuffle), so no features are computed at
    the full size."""

    def __init__(self, in_ch: int, width: int, scale: int, text_dim: int | None = None,
                 text_reweight: str = "softmax", rgb_shuffle: bool = False):
        super().__init__()
        self.head = nn.Sequential(
            conv3x3(in_ch, width), nn.LeakyReLU(0.2), nn.Conv2d(width, width, 1), nn.LeakyReLU(0.2),
            conv3x3(width, in_ch))
        self.body = nn.Sequential(conv3x3(in_ch, width), nn.LeakyReLU(0.2))
        n_stages = int(math.log2(scale)) - rgb_shuffle
        self.stages = nn.ModuleList(UpStage(width, text_dim, text_reweight) for _ in range(n_stages))
        self.out = conv3x3(width, 3 * 4 if rgb_shuffle else 3)
        self.out_shuffle = nn.PixelShuffle(2) if rgb_shuffle else nn.Identity()

    def features(self, h: torch.Tensor, lr_res: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The features that `rgb` turns into the RGB residual: full size, or half with `rgb_shuffle`."""
        x = self.body(self.head(h) + lr_res)
        for stage in self.stages:
            x = stage(x, text)
        return x

    def rgb(self, features: torch.Tensor) -> torch.Tensor:
        return self.out_shuffle(self.out(features))


class Generator(nn.Module):
    """(LR in [-1, 1], text embedding F_T) -> SR (B, 3, 256, 256). No output activation: values slightly
    outside [-1, 1] are clamped when saved (as in the reference), which keeps gradients at the edges.
    With `global_skip="bicubic"` the network adds a residual to the bicubic upsampled LR."""

    def __init__(self, cfg: GeneratorConfig, clip_visual: CLIPVisual, text_dim: int):
        super().__init__()
        self.cfg, self.text_dim = cfg, text_dim
        if cfg.text_norm not in ("batch", "none"):
            raise ValueError(f"text_norm must be 'batch' or 'none', got {cfg.text_norm!r}")
        self.text_norm = nn.BatchNorm1d(text_dim, affine=False) if cfg.text_norm == "batch" else nn.Identity()
        self.text_mapper = TextMapper(text_dim, cfg.text_mapper) if cfg.text_mapper else nn.Identity()
        self.encoder = ImageEncoder(cfg)
        self.branch = CLIPViTBranch(cfg, clip_visual, text_dim) if cfg.clip_branch else None
        channels = (cfg.enc_width,) + cfg.refine_channels
        self.refine = nn.ModuleList(
            GBlock(text_dim, channels[i], channels[i + 1], size, cfg.text_reweight)
            for i, size in enumerate(cfg.refine_sizes))
        # Block index -> how its encoder skip joins: as it is, or through a 1x1 conv where the widths differ.
        self.skip_proj = nn.ModuleDict({str(i): self._skip_projection(ch, size)
                                        for i, (ch, size) in enumerate(zip(cfg.refine_channels, cfg.refine_sizes))})
        self.upsampler = Upsampler(cfg.refine_channels[-1], cfg.up_width, cfg.scale,
                                   text_dim if cfg.up_text else None, cfg.text_reweight, cfg.rgb_shuffle)
        if cfg.global_skip not in ("bicubic", "none"):
            raise ValueError(f"global_skip must be 'bicubic' or 'none', got {cfg.global_skip!r}")
        self.bicubic = MatrixUpsample(cfg.lr_size, cfg.scale) if cfg.global_skip == "bicubic" else None
        self.palette = TextPalette(text_dim, cfg.text_palette) if cfg.text_palette else None
        # trained on its own before the SR stage (clipsr.synthbirds.locator_stage), frozen in it
        self.locator = PartLocator(cfg.lr_size, cfg.text_palette, cfg.scale).requires_grad_(False) if cfg.text_palette else None
        self._init_convs()

    def _init_convs(self) -> None:
        """He init for LeakyReLU(0.2): PyTorch's default shrinks the signal ~0.4x per conv, ~1e-3 over
        the upsampler, so the text and the CLIP-ViT branch would start out barely reaching the image."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module.weight.requires_grad:  # not the frozen CLIP's
                nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
        # Start near a flat image (or near bicubic with the global skip), not at the residuals' scale.
        self.upsampler.out.weight.data.mul_(0.1 if self.cfg.global_skip == "none" else 0.01)

    def _skip_projection(self, channels: int, size: int) -> nn.Module:
        """How the encoder skip of `size` joins a G-block output of `channels`."""
        skip_ch = self.encoder.widths[size]
        return nn.Identity() if skip_ch == channels else nn.Conv2d(skip_ch, channels, 1)

    def forward(self, lr: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """SR image (B, 3, 256, 256)."""
        return self.render(lr, text).image

    def render(self, lr: torch.Tensor, text: torch.Tensor) -> PaletteOutput:
        """The SR image and, with a text palette, what it chose and read (training teaches them directly)."""
        self._check_inputs(lr, text)
        text = self.condition_text(text)
        lr_res, skips = self.encoder(lr)
        h = skips[FEATURE_SIZE]
        if self.branch is not None:
            h = self.branch(h, text)
        for i, (block, size) in enumerate(zip(self.refine, self.cfg.refine_sizes)):
            h = block(h, text)
            h = h + self.skip_proj[str(i)](skips[size])
        features = self.upsampler.features(h, lr_res, text)
        out = self.upsampler.rgb(features)
        if self.cfg.global_skip == "bicubic":
            out = out + self.bicubic(lr)
        if self.palette is None:
            return PaletteOutput(out)
        return self.palette(out, self.locator(lr), text, self.locator.to_sr_size)

    def condition_text(self, text: torch.Tensor) -> torch.Tensor:
        """F_T as every text-conditioned block reads it: zeroed without text, standardised, clamped, mapped."""
        if not self.cfg.use_text:
            text = torch.zeros_like(text)
        text = self.text_norm(text)
        if self.cfg.text_clamp > 0:
            text = text.clamp(-self.cfg.text_clamp, self.cfg.text_clamp)
        return self.text_mapper(text)

    def _check_inputs(self, lr: torch.Tensor, text: torch.Tensor) -> None:
        size = self.cfg.lr_size
        if lr.dim() != 4 or tuple(lr.shape[1:]) != (3, size, size):
            raise ValueError(f"LR image must have shape (B, 3, {size}, {size}) at {self.cfg.scale}x, "
                             f"got {tuple(lr.shape)}")
        if text.dim() != 2 or text.shape[1] != self.text_dim or text.shape[0] != lr.shape[0]:
            raise ValueError(f"text embedding must have shape ({lr.shape[0]}, {self.text_dim}), "
                             f"got {tuple(text.shape)}")
