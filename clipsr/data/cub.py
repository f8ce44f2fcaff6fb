"""CUB-200-2011 birds with Reed et al. captions, in the DF-GAN/GALIP layout or the official CUB tree.

DF-GAN/GALIP: `<root>/{train,test}/filenames.pickle`, `<root>/text/<key>.txt`,
`<root>/CUB_200_2011/{images.txt,bounding_boxes.txt,images/<key>.jpg}`.
Official: `<root>/CUB_200_2011/{images.txt,bounding_boxes.txt,train_test_split.txt,images/}` and the
Reed captions `<captions_dir>/<key>.txt` (default `<root>/text_c10`).
Every image is first cropped to the square of radius 0.75 * max(w, h) around its bounding box.
"""
from __future__ import annotations

from pathlib import Path

from clipsr.data.captions import read_caption_file, read_name_pickle
from clipsr.data.sample import CaptionedImageDataset, Record

SPLITS = ("train", "test")
LAYOUTS = ("auto", "dfgan", "official")


def cub_dataset(root: str | Path, split: str, scale: int, train: bool, *, layout: str = "auto",
                captions_dir: str | Path | None = None, **options) -> CaptionedImageDataset:
    """Build the CUB dataset for `split` ("train" or "test"); `layout` picks the tree, "auto" detects it."""
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"CUB split must be one of {SPLITS}, got {split!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"CUB layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "auto":
        layout = _detect_layout(root)
    cub_dir = root / "CUB_200_2011"
    paths = _read_id_table(cub_dir / "images.txt")
    boxes = _read_boxes(cub_dir / "bounding_boxes.txt")
    key_to_id = {path.rsplit(".", 1)[0]: image_id for image_id, path in paths.items()}
    if layout == "dfgan":
        keys = read_name_pickle(root / split / "filenames.pickle")
        text_dir = root / "text"
    else:
        flags = _read_id_table(cub_dir / "train_test_split.txt")
        wanted = "1" if split == "train" else "0"
        keys = [paths[i].rsplit(".", 1)[0] for i in sorted(paths, key=int) if flags.get(i) == wanted]
        text_dir = Path(captions_dir) if captions_dir is not None else root / "text_c10"
    records = []
    for key in keys:
        if key not in key_to_id:
            raise ValueError(f"{key!r} is not listed in {cub_dir / 'images.txt'}")
        image_id = key_to_id[key]
        if image_id not in boxes:
            raise ValueError(f"image id {image_id} ({key}) has no box in {cub_dir / 'bounding_boxes.txt'}")
        records.append(Record(key, cub_dir / "images" / paths[image_id],
                              read_caption_file(text_dir / f"{key}.txt"), _square_box(boxes[image_id])))
    return CaptionedImageDataset(records, scale, train, source=f"CUB {split} ({root})", **options)


def _detect_layout(root: Path) -> str:
    if (root / "train" / "filenames.pickle").is_file():
        return "dfgan"
    if (root / "CUB_200_2011" / "train_test_split.txt").is_file():
        return "official"
    raise FileNotFoundError(f"{root} is not a CUB tree: neither {root / 'train/filenames.pickle'} (DF-GAN) "
                            f"nor {root / 'CUB_200_2011/train_test_split.txt'} (official) exists")


def _read_id_table(path: Path) -> dict[str, str]:
    """`<id> <value>` lines (images.txt, train_test_split.txt) as a dict of strings."""
    if not path.is_file():
        raise FileNotFoundError(f"CUB file not found: {path}")
    table = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{path}:{number}: expected '<id> <value>', got {line!r}")
            table[parts[0]] = parts[1]
    if not table:
        raise ValueError(f"CUB file is empty: {path}")
    return table


def _read_boxes(path: Path) -> dict[str, tuple[float, float, float, float]]:
    if not path.is_file():
        raise FileNotFoundError(f"CUB file not found: {path}")
    boxes = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            parts = line.split()
            try:
                if len(parts) != 5:
                    raise ValueError
                boxes[parts[0]] = tuple(float(v) for v in parts[1:])
            except ValueError:
                raise ValueError(f"{path}:{number}: expected '<id> x y w h', got {line!r}") from None
    return boxes


def _square_box(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """The DF-GAN crop: a square of radius 0.75 * max(w, h) centred on the bounding box."""
    x, y, w, h = box
    radius = int(max(w, h) * 0.75)
    cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
    return cx - radius, cy - radius, cx + radius, cy + radius
