"""Zero-shot part-colour retrieval: does a CLIP trained on SynthBirds know the vocabulary?

For each held-out bird and each described part, the ten captions "this bird has a <colour> <part>"
are ranked by similarity to the image; accuracy is how often the true colour ranks first (chance 10%)."""
from __future__ import annotations

import open_clip
import torch

from clipsr.clip import clip_preprocess
from clipsr.synthbirds.captions import part_caption
from clipsr.synthbirds.dataset import SynthBirdsDataset
from clipsr.synthbirds.palette import NAMES
from clipsr.synthbirds.render import DESCRIBED_PARTS


@torch.no_grad()
def part_colour_retrieval(model: open_clip.CLIP, arch: str, n: int = 200, split: str = "val",
                          batch: int = 50) -> dict[str, float]:
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    prompts = [part_caption(part, colour) for part in DESCRIBED_PARTS for colour in NAMES]
    text = model.encode_text(tokenizer(prompts), normalize=True).view(len(DESCRIBED_PARTS), len(NAMES), -1)
    data = SynthBirdsDataset(split=split, train=False, count=n)
    hits = torch.zeros(len(DESCRIBED_PARTS))
    for start in range(0, n, batch):
        items = [data[i] for i in range(start, min(n, start + batch))]
        images = torch.stack([item["hr"] for item in items])
        colours = torch.stack([item["colours"] for item in items])            # (b, parts)
        emb = model.encode_image(clip_preprocess(images, model.visual.image_size[0]), normalize=True)
        scores = torch.einsum("bd,pcd->bpc", emb, text)
        hits += (scores.argmax(-1) == colours).float().sum(0)
    return {part: float(h / n) for part, h in zip(DESCRIBED_PARTS, hits)}
