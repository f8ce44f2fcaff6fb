"""Training losses (docs/architecture.md): VGG-19 perceptual, hinge D loss with mismatched captions,
MA-GP, and the generator's adversarial + text-image similarity term. Images are in [-1, 1]."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in torchvision's vgg19().features (config "E")
VGG_LAYERS = (1, 6, 11, 20, 29)
VGG_SIGMAS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FALLBACKS = ("raise", "random", "off")


class VGGPerceptualLoss(nn.Module):
    """sum_i sigma_i * mean|phi_i(sr) - phi_i(hr)| over VGG-19 relu1_1..relu5_1 (frozen).

    `weights`: "imagenet" (torchvision's IMAGENET1K_V1, from the torch hub cache; fetched only with
    `download=True`), a path to a safetensors file or a torch state dict (vgg19 or its `features`),
    "random" (random features, warned about), or None (the term is off and returns 0).
    `fallback` says what happens when the weights cannot be had: "raise", or warn and use "random"
    features, or turn the term "off". `self.mode` records what is in use ("pretrained", "random", "off").
    """

    def __init__(self, weights: str | Path | None = "imagenet", *, fallback: str = "raise",
                 download: bool = False) -> None:
        super().__init__()
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.features: nn.Sequential | None = None
        self.mode = "off"
        if weights is None:
            return
        from torchvision.models.vgg import cfgs, make_layers
        # only the conv trunk up to relu5_1: building all of vgg19() would initialise 120M unused weights
        features = make_layers(cfgs["E"])[: VGG_LAYERS[-1] + 1]
        if weights == "random":
            warnings.warn("VGG perceptual loss uses RANDOM features (weights='random')", stacklevel=2)
            self.mode = "random"
        else:
            try:
                features.load_state_dict(_select_features(_load_vgg_state(weights, download), features, weights))
                self.mode = "pretrained"
            except (FileNotFoundError, ValueError, RuntimeError) as error:
                if fallback == "raise":
                    raise
                warnings.warn(f"VGG perceptual loss: {error}; falling back to "
                              f"{'RANDOM features' if fallback == 'random' else 'no perceptual term'}",
                              stacklevel=2)
                self.mode = fallback
                if fallback == "off":
                    return
        self.features = features.eval().requires_grad_(False)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if self.features is None:
            return sr.new_zeros(())
        with torch.no_grad():
            targets = self._activations(hr)
        return sum(s * F.l1_loss(a, t) for s, a, t in zip(VGG_SIGMAS, self._activations(sr), targets))

    def _activations(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = ((image + 1) / 2 - self.mean) / self.std
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in VGG_LAYERS:
                taps.append(x)
        return taps


def _load_vgg_state(weights: str | Path, download: bool) -> dict[str, torch.Tensor]:
    """VGG-19 `features` weights from the torchvision enum or a local file, without ever unpickling."""
    if weights == "imagenet":
        from torchvision.models import VGG19_Weights
        url = VGG19_Weights.IMAGENET1K_V1.url
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        if not cached.is_file() and not download:
            raise FileNotFoundError(f"VGG-19 ImageNet weights are not in the torch hub cache ({cached}); "
                                    f"put {url} there, pass a file path, or allow download")
        try:
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, weights_only=True)
        except OSError as error:  # offline: urllib fails at name lookup
            raise RuntimeError(f"cannot download VGG-19 weights from {url}: {error}") from error
    else:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"VGG-19 weights file not found: {path}")
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file
                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # safetensors and torch.load raise assorted types on bad files
            raise ValueError(f"cannot read VGG-19 weights from {path}: {error}") from error
    if not isinstance(state, dict):
        raise ValueError(f"{weights} does not hold a state dict")
    return state


def _select_features(state: dict[str, torch.Tensor], features: nn.Module, source: str | Path) -> dict:
    """The entries of a vgg19 (or vgg19.features) state dict that the truncated `features` need."""
    state = {k.removeprefix("features."): v for k, v in state.items()}
    wanted = features.state_dict().keys()
    missing = sorted(wanted - state.keys())
    if missing:
        raise ValueError(f"{source} lacks VGG-19 feature weights {missing[:4]}")
    return {k: state[k] for k in wanted}


def palette_losses(output, labels: torch.Tensor, colours: torch.Tensor, named: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a text palette is taught directly, from a generator's `PaletteOutput`:
    - "choice": cross-entropy of the per-pixel choice (B, K + 1, H, W) against part labels (B, H, W; 0 where
      no named part is);
    - "colour" and "named": `palette_text_losses` of what it read from the text."""
    if output.choice is None:
        raise ValueError("part labels need a text palette: set generator.text_palette "
                         "(e.g. --set generator.text_palette=4)")
    if colours.shape[1] != output.colours.shape[1]:
        raise ValueError(f"the dataset describes {colours.shape[1]} parts, the model's text palette has "
                         f"{output.colours.shape[1]} (generator.text_palette)")
    if int(labels.max()) >= output.choice.shape[1]:
        raise ValueError(f"part labels go up to {int(labels.max())}, the palette has {output.choice.shape[1] - 1} parts")
    return {"choice": F.cross_entropy(output.choice.float(), labels),
            **palette_text_losses(output.colours, output.named, colours, named)}


def palette_text_losses(read_colours: torch.Tensor, read_named: torch.Tensor, colours: torch.Tensor,
                        named: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a text palette's reader is taught from a caption (`TextPalette.read` gives its reads):
    - "colour": L1 between the colours read (B, K, 3) and each named part's true colour, over named parts only;
    - "named": binary cross-entropy of the named logits (B, K) against whether the caption names each part."""
    colour_error = (read_colours.float() - colours).abs().mean(-1)
    return {"colour": (colour_error * named).sum() / named.sum().clamp(min=1),
            "named": F.binary_cross_entropy_with_logits(read_named.float(), named)}


def hinge_d_loss(real_logit: torch.Tensor, fake_logit: torch.Tensor, mismatch_logit: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: real/matching pairs up, fakes and mismatched captions down (half each)."""
    return F.relu(1 - real_logit).mean() + 0.5 * (F.relu(1 + fake_logit).mean() + F.relu(1 + mismatch_logit).mean())


def ma_gp(logit: torch.Tensor, inputs: tuple[torch.Tensor, ...], k: float = 2.0, p: float = 6.0) -> torch.Tensor:
    """Matching-aware gradient penalty k * mean(||d logit / d inputs||^p), per-sample gradients of all
    inputs concatenated; differentiable (create_graph) so it trains D. Computed as (sum g^2)^(p/2),
    which has a finite gradient at a zero gradient where sqrt would not."""
    grads = torch.autograd.grad(logit.sum(), inputs, create_graph=True)
    flat = torch.cat([g.reshape(g.shape[0], -1) for g in grads], dim=1)
    return k * flat.pow(2).sum(dim=1).pow(p / 2).mean()


def generator_adv_loss(fake_logit: torch.Tensor, image_embedding: torch.Tensor, text_embedding: torch.Tensor,
                       alpha: float = 4.0) -> torch.Tensor:
    """-mean D(fake, s) - alpha * mean cos(CLIP image embedding of the fake, text embedding)."""
    return -fake_logit.mean() - alpha * F.cosine_similarity(image_embedding, text_embedding, dim=-1).mean()
