"""SynthBirds as a torch Dataset: birds rendered on the fly from split seeds, with bicubic LR and a caption.

`mismatch_lr_prob`: with that probability the LR is rendered from the same bird with other
colours for one or more of the parts its caption names, while HR and caption stay true, so the model learns
that the LR cannot be trusted for those colours and must read them from the caption (a part the caption
does not name keeps its LR colour: nothing could tell the model the true one).

`part_labels` (for the SR stage with a text palette): items carry what the palette is taught from:
"part_labels" (H, W), 1 + the part's index in DESCRIBED_PARTS on the pixels of each part the caption names
and 0 elsewhere (where the palette keeps the SR value); "palette_colours" (parts, 3), each described part's
median HR colour in [-1, 1]; "palette_named" (parts,), 1 where the caption names the part.

`attributes` (for the CLIP stage): items carry all captions of the bird ("attribute_captions") and, per
caption and described part, the colour index it names or len(NAMES) for none ("attribute_labels"), so the
text tower can be taught that a part's colour is what a caption says, whatever its phrasing.

`twins` (for the CLIP stage): each item also carries a twin, the same bird with one part the caption
names in another colour, and the same caption with that colour: a hard negative that only the part's
colour tells apart, so a CLIP trained on it must look at the small parts, not only the body and scene.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from clipsr.data.resize import bicubic_downsample
from clipsr.synthbirds.captions import bird_captions, caption_colours, recolour
from clipsr.synthbirds.colours import NAMES, colour_index
from clipsr.synthbirds.measure import median_colour
from clipsr.synthbirds.render import DESCRIBED_PARTS, SIZE, BirdSpec, render, sample_spec
from clipsr.synthbirds.splits import bird_key, split_seeds


class SynthBirdsDataset(Dataset):
    """Items: hr (3,256,256) and lr (3,256/scale,256/scale) in [-1, 1], caption, key, seed, and the
    vocabulary indices of DESCRIBED_PARTS in the HR ("colours") and in the LR ("lr_colours"); the options
    add the keys the module docstring lists."""

    def __init__(self, split: str = "train", scale: int = 16, train: bool = True, count: int | None = None,
                 seed_offset: int = 0, mismatch_lr_prob: float = 0.0, twins: bool = False,
                 part_labels: bool = False, attributes: bool = False) -> None:
        if scale < 1 or SIZE % scale:
            raise ValueError(f"scale {scale} must divide the image size {SIZE}")
        if not 0.0 <= mismatch_lr_prob <= 1.0:
            raise ValueError(f"mismatch_lr_prob {mismatch_lr_prob} must lie in [0, 1]")
        self.split, self.scale, self.train = split, scale, train
        self.seeds = split_seeds(split, count, seed_offset)
        self.mismatch_lr_prob = mismatch_lr_prob
        self.twins = twins
        self.part_labels = part_labels
        # per described part: a colour, or not named (the CLIP stage's attribute head reads this)
        self.attribute_shape = (len(DESCRIBED_PARTS), len(NAMES) + 1) if attributes else None

    def __len__(self) -> int:
        return len(self.seeds)

    def spec(self, index: int) -> BirdSpec:
        """The bird behind item `index` (re-render it for masks: `render(dataset.spec(i))[1]`)."""
        return sample_spec(self.seeds[index])

    def __getitem__(self, index: int) -> dict:
        spec = self.spec(index)
        hr, masks = render(spec)
        texts = bird_captions(spec)
        parsed = [caption_colours(text) for text in texts]
        choices = [i for i, named in enumerate(parsed) if named] if self.twins else range(len(texts))
        # evaluation reads the canonical caption, which names every described part
        choice = int(choices[int(torch.randint(len(choices), ()))]) if self.train else 0
        named = parsed[choice]
        mismatch = named and torch.rand(()) < self.mismatch_lr_prob
        lr_spec = self._mismatched(spec, [p for p in DESCRIBED_PARTS if p in named]) if mismatch else spec
        lr_source = hr if lr_spec is spec else render(lr_spec)[0]
        item = {
            "hr": _to_tensor(hr.astype(np.float32) / 255.0),
            "lr": lr_tensor(lr_source, self.scale),
            "caption": texts[choice],
            "key": bird_key(self.split, spec.seed),
            "seed": spec.seed,
            "colours": described_colours(spec),
            "lr_colours": described_colours(lr_spec),
        }
        if self.part_labels:
            labels = part_label_map(masks)
            is_named = np.array([part in named for part in DESCRIBED_PARTS])
            item["part_labels"] = torch.from_numpy(np.where(is_named[np.maximum(labels - 1, 0)], labels, 0))
            item["palette_colours"] = torch.from_numpy(np.stack(
                [median_colour(hr, masks[part]) for part in DESCRIBED_PARTS]).astype(np.float32) / 127.5 - 1.0)
            item["palette_named"] = torch.from_numpy(is_named.astype(np.float32))
        if self.attribute_shape is not None:
            item["attribute_captions"] = texts
            item["attribute_labels"] = attribute_labels(parsed)
        if self.twins:
            twin, item["twin_caption"] = self._twin(spec, choice)
            item["twin_hr"] = _to_tensor(render(twin)[0].astype(np.float32) / 255.0)
            item["twin_colours"] = described_colours(twin)
        return item

    @staticmethod
    def _mismatched(spec: BirdSpec, parts: list[str]) -> BirdSpec:
        """Each of `parts` independently (at least one) gets another colour; torch RNG, so worker seeds apply."""
        changed = torch.rand(len(parts)) < 0.5
        if not changed.any():
            changed[torch.randint(len(parts), ())] = True
        for part, change in zip(parts, changed.tolist()):
            if change:
                spec = recolour(spec, part, int(torch.randint(1, len(NAMES), ())))
        return spec

    @staticmethod
    def _twin(spec: BirdSpec, choice: int) -> tuple[BirdSpec, str]:
        """The bird with one part its caption `choice` names recoloured, and that caption of the twin.

        Captions are drawn from the bird's seed, which an edit keeps, so the twin's caption is the same
        sentence with the new colour: a part the caption names is one whose recolouring changes it."""
        caption = bird_captions(spec)[choice]
        for i in torch.randperm(len(DESCRIBED_PARTS)).tolist():
            part = DESCRIBED_PARTS[i]
            twin = recolour(spec, part, int(torch.randint(1, len(NAMES), ())))
            twin_texts = bird_captions(twin)
            if choice < len(twin_texts) and twin_texts[choice] != caption:
                return twin, twin_texts[choice]
        raise ValueError(f"caption {caption!r} of bird {spec.seed} names no described part")


def part_label_map(masks: dict[str, np.ndarray]) -> np.ndarray:
    """(H, W) int64: 0 where no described part is, else 1 + the part's index in DESCRIBED_PARTS."""
    labels = np.zeros(masks[DESCRIBED_PARTS[0]].shape, dtype=np.int64)
    for i, part in enumerate(DESCRIBED_PARTS):
        labels[masks[part]] = i + 1
    return labels


def attribute_labels(parsed: list[dict[str, str]]) -> torch.Tensor:
    """(captions, parts) long, from `caption_colours` of each caption: the colour index it names for each
    described part, len(NAMES) for none."""
    return torch.tensor([[colour_index(n[part]) if part in n else len(NAMES) for part in DESCRIBED_PARTS]
                         for n in parsed], dtype=torch.long)


def described_colours(spec: BirdSpec) -> torch.Tensor:
    """Vocabulary indices of the described parts, in DESCRIBED_PARTS order."""
    return torch.tensor([colour_index(getattr(spec, part)) for part in DESCRIBED_PARTS], dtype=torch.long)


def lr_tensor(hr: np.ndarray, scale: int) -> torch.Tensor:
    """A uint8 (256, 256, 3) render -> its bicubic LR (3, 256 / scale, 256 / scale) float32 in [-1, 1], as
    models are trained and measured on it (not rounded to 8 bits)."""
    return _to_tensor(np.clip(bicubic_downsample(hr.astype(np.float32) / 255.0, scale), 0.0, 1.0))


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float in [0, 1] -> (3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray((image * 2.0 - 1.0).transpose(2, 0, 1), dtype=np.float32))
