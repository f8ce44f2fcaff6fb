"""What a CLIP knows about SynthBirds, the two numbers behind the demo's CLIP stage.

- Zero-shot part-colour retrieval (does the image tower see the parts?): for each held-out bird and each
  described part, the ten captions "this bird has a <colour> <part>" are ranked by similarity to the
  image; accuracy is how often the true colour ranks first (chance 10%).
- Text probe (does the sentence vector F_T, all the generator reads, still carry each part's colour?):
  a small MLP, like the generator's text affines, trained to read each part's colour from F_T of the
  canonical caption of train birds, scored on val birds (chance 10%).
- Phrasing probe (where does a caption in any phrasing keep a part's colour?): linear (ridge) probes on
  the other phrasings of train birds, scored on val birds, reading each named part's colour from the
  sentence vector, from the text tower's feature at the part's noun, or at the part's colour word.

Every setting is a parameter; the defaults (`clip_report_settings`) are what the demo's card reports.
"""
from __future__ import annotations

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from tqdm import tqdm

from clipsr.clip import CLIPText, clip_preprocess
from clipsr.synthbirds.captions import bird_captions, caption_colours, caption_mentions, part_caption
from clipsr.synthbirds.dataset import SynthBirdsDataset, described_colours
from clipsr.synthbirds.colours import NAMES, colour_index
from clipsr.synthbirds.render import DESCRIBED_PARTS, sample_spec
from clipsr.synthbirds.clip_report_settings import (PHRASING_BIRDS, PHRASING_VAL_BIRDS, PROBE_BIRDS, PROBE_HIDDEN,
                                                    PROBE_LR, PROBE_SITES, PROBE_STEPS, PROBE_VAL_BIRDS,
                                                    RETRIEVAL_BATCH, RETRIEVAL_BIRDS, RIDGE, SENTENCE_GATE,
                                                    TEXT_BATCH)
from clipsr.synthbirds.splits import split_seeds


def clip_report(model: open_clip.CLIP, arch: str, *, retrieval_birds: int = RETRIEVAL_BIRDS,
                probe_birds: int = PROBE_BIRDS, probe_steps: int = PROBE_STEPS,
                phrasing_birds: int = PHRASING_BIRDS, gate: float = SENTENCE_GATE) -> dict:
    """Every number above for one CLIP: "retrieval" and "text_probe" per part, "phrasing_probe" per site and
    part, and the "sentence_gate" verdict."""
    result = {"retrieval": part_colour_retrieval(model, arch, n=retrieval_birds),
              "text_probe": text_probe(model, arch, n_train=probe_birds, steps=probe_steps),
              "phrasing_probe": phrasing_probe(model, arch, n_train=phrasing_birds)}
    return {**result, "sentence_gate": sentence_gate(result["phrasing_probe"], gate)}


@torch.no_grad()
def part_colour_retrieval(model: open_clip.CLIP, arch: str, n: int = RETRIEVAL_BIRDS, split: str = "val",
                          batch: int = RETRIEVAL_BATCH) -> dict[str, float]:
    """Per described part, how often the prompt of the true colour ranks first for the bird's image."""
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    prompts = [part_caption(part, colour) for part in DESCRIBED_PARTS for colour in NAMES]
    text = model.encode_text(tokenizer(prompts), normalize=True).view(len(DESCRIBED_PARTS), len(NAMES), -1)
    data = SynthBirdsDataset(split=split, train=False, count=n)
    hits = torch.zeros(len(DESCRIBED_PARTS))
    for start in tqdm(range(0, n, batch), desc="part-colour retrieval", unit="batch", leave=False):
        items = [data[i] for i in range(start, min(n, start + batch))]
        images = torch.stack([item["hr"] for item in items])
        colours = torch.stack([item["colours"] for item in items])            # (b, parts)
        emb = model.encode_image(clip_preprocess(images, model.visual.image_size[0]), normalize=True)
        scores = torch.einsum("bd,pcd->bpc", emb, text)
        hits += (scores.argmax(-1) == colours).float().sum(0)
    return {part: float(h / n) for part, h in zip(DESCRIBED_PARTS, hits)}


def text_probe(model: open_clip.CLIP, arch: str, n_train: int = PROBE_BIRDS, n_test: int = PROBE_VAL_BIRDS,
               hidden: int = PROBE_HIDDEN, steps: int = PROBE_STEPS, lr: float = PROBE_LR, seed: int = 0,
               batch: int = TEXT_BATCH) -> dict[str, float]:
    """Accuracy per described part of an MLP probe reading the part's colour from F_T (train -> val birds)."""
    text_tower = CLIPText(model).eval()
    tokenizer = open_clip.get_tokenizer(arch)

    @torch.no_grad()
    def sentence_vectors(split: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        specs = [sample_spec(s) for s in split_seeds(split, count)]
        captions = [bird_captions(spec)[0] for spec in specs]
        vectors = torch.cat([text_tower(tokenizer(captions[i:i + batch]))[0] for i in range(0, count, batch)])
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
        opt = torch.optim.Adam(probe.parameters(), lr=lr)
        for _ in range(steps):
            loss = F.cross_entropy(probe(x_train), y_train[:, p])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            result[part] = float((probe(x_test).argmax(-1) == y_test[:, p]).float().mean())
    return result


def sentence_gate(probe: dict[str, dict[str, float]], threshold: float = SENTENCE_GATE) -> dict:
    """Whether the sentence-vector phrasing probe reaches `threshold` for every described part."""
    worst = min(probe["sentence"].values())
    return {"threshold": threshold, "worst_part": min(probe["sentence"], key=probe["sentence"].get),
            "worst": worst, "met": worst >= threshold}


@torch.no_grad()
def phrasing_probe(model: open_clip.CLIP, arch: str, n_train: int = PHRASING_BIRDS,
                   n_test: int = PHRASING_VAL_BIRDS, ridge: float = RIDGE) -> dict[str, dict[str, float]]:
    """Accuracy per site and described part of a ridge probe on the non-canonical phrasings (train -> val).

    The sentence site takes every phrasing that names the part; the token sites those where the part's noun
    and colour word stand as separate words ("a red crown", "crown is red")."""
    text_tower = CLIPText(model).eval()
    tokenizer = open_clip.get_tokenizer(arch)

    def features(split: str, count: int) -> dict[str, dict[str, tuple[list, list]]]:
        rows = {part: {site: ([], []) for site in PROBE_SITES} for part in DESCRIBED_PARTS}
        for seed in tqdm(split_seeds(split, count), desc=f"phrasing probe, {split} birds", leave=False):
            spec = sample_spec(seed)
            captions = bird_captions(spec)[1:]
            pooled, tokens = text_tower(tokenizer(captions))
            for i, caption in enumerate(captions):
                named = caption_colours(caption)
                for part in named:
                    colour = colour_index(named[part])
                    _add(rows[part]["sentence"], pooled[i], colour)
                    ends = _phrase_ends(caption, part)
                    for site, end in zip(PROBE_SITES[1:], ends or ()):  # the last token of caption[:end]
                        _add(rows[part][site], tokens[i, int((tokenizer([caption[:end]])[0] != 0).sum()) - 2], colour)
        return rows

    train, test = features("train", n_train), features("val", n_test)
    return {site: {part: _ridge_accuracy(torch.stack(train[part][site][0]).numpy(), np.array(train[part][site][1]),
                                         torch.stack(test[part][site][0]).numpy(), np.array(test[part][site][1]), ridge)
                   for part in DESCRIBED_PARTS} for site in PROBE_SITES}


def _add(row: tuple[list, list], feature: torch.Tensor, colour: int) -> None:
    row[0].append(feature)
    row[1].append(colour)


def _phrase_ends(caption: str, part: str) -> tuple[int, int] | None:
    """Where the part's noun and its colour word end in the caption, when they stand as separate words ("a
    red crown", "crown is red"); the longest noun first ("wing bars" before "wing")."""
    mentions = [m for m in caption_mentions(caption) if m.part == part and m.separate]
    if not mentions:
        return None
    mention = max(mentions, key=lambda m: len(m.word))  # the first of the longest
    return mention.word_end, mention.colour_end


def _ridge_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                    ridge: float) -> float:
    """Ridge regression onto one-hot colours on standardised features (+ bias); accuracy of the argmax."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    a, b = ((np.hstack([(x - mean) / std, np.ones((len(x), 1))]) for x in (x_train, x_test)))
    w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ np.eye(len(NAMES))[y_train])
    return float(((b @ w).argmax(1) == y_test).mean())
