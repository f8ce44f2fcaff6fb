"""What a CLIP knows about SynthBirds, the two numbers behind the demo's CLIP stage.

- Zero-shot part-colour retrieval (does the image tower see the parts?): for each held-out bird and each
  described part, the ten captions "this bird has a <colour> <part>" are ranked by similarity to the
  image; accuracy is how often the true colour ranks first (chance 10%).
- Text probe (does the sentence vector F_T, all the generator reads, still carry each part's colour?):
  a small MLP, like the generator's text affines, trained to read each part's colour from F_T of the
  canonical caption of train birds, scored on val birds (chance 10%).
"""
from __future__ import annotations

import open_clip
import torch
import torch.nn.functional as F

from clipsr.clip import CLIPText, clip_preprocess
from clipsr.synthbirds.captions import bird_captions, part_caption
from clipsr.synthbirds.dataset import SynthBirdsDataset, described_colours
from clipsr.synthbirds.palette import NAMES
from clipsr.synthbirds.render import DESCRIBED_PARTS, sample_spec
from clipsr.synthbirds.splits import split_seeds


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


def text_probe(model: open_clip.CLIP, arch: str, n_train: int = 4000, n_test: int = 500, hidden: int = 64,
               steps: int = 500, seed: int = 0) -> dict[str, float]:
    """Accuracy per described part of an MLP probe reading the part's colour from F_T (train -> val birds)."""
    text_tower = CLIPText(model).eval()
    tokenizer = open_clip.get_tokenizer(arch)

    @torch.no_grad()
    def sentence_vectors(split: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        specs = [sample_spec(s) for s in split_seeds(split, count)]
        captions = [bird_captions(spec)[0] for spec in specs]
        vectors = torch.cat([text_tower(tokenizer(captions[i:i + 500]))[0] for i in range(0, count, 500)])
        return vectors, torch.stack([described_colours(spec) for spec in specs])

    x_train, y_train = sentence_vectors("train", n_train)
    x_test, y_test = sentence_vectors("val", n_test)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6  # as the generator's text standardisation
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    torch.manual_seed(seed)
    result = {}
    for p, part in enumerate(DESCRIBED_PARTS):
        probe = torch.nn.Sequential(torch.nn.Linear(x_train.shape[1], hidden), torch.nn.ReLU(),
                                    torch.nn.Linear(hidden, len(NAMES)))
        opt = torch.optim.Adam(probe.parameters(), lr=3e-3)
        for _ in range(steps):
            loss = F.cross_entropy(probe(x_train), y_train[:, p])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            result[part] = float((probe(x_test).argmax(-1) == y_test[:, p]).float().mean())
    return result
