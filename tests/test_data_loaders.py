"""Dataset loaders on tiny look-alike trees of CUB, COCO, CelebA-HQ and JSONL built in tmp_path."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from clipsr.data import registry
from clipsr.data.registry import register_dataset
from clipsr.data.resize import bicubic_downsample
from clipsr.datasets import build_dataset, dataset_names


def _image(path, size=(60, 40), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def _text(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


CUB_KEYS = ["001.Albatross/Albatross_0001", "001.Albatross/Albatross_0002", "002.Gull/Gull_0003"]


def _cub_common(root, captions_dir):
    cub = root / "CUB_200_2011"
    _text(cub / "images.txt", [f"{i + 1} {k}.jpg" for i, k in enumerate(CUB_KEYS)])
    _text(cub / "bounding_boxes.txt", ["1 10.0 5.0 20.0 10.0", "2 0.0 0.0 60.0 40.0", "3 40.0 16.0 8.0 8.0"])
    _text(cub / "train_test_split.txt", ["1 1", "2 1", "3 0"])
    for i, key in enumerate(CUB_KEYS):
        _image(cub / "images" / f"{key}.jpg", seed=i)
        _text(captions_dir / f"{key}.txt", [f"bird {i} caption {j}" for j in range(3)])


@pytest.fixture
def dfgan_cub(tmp_path):
    _cub_common(tmp_path, tmp_path / "text")
    for split, keys in (("train", CUB_KEYS[:2]), ("test", CUB_KEYS[2:])):
        (tmp_path / split).mkdir()
        # protocol 2 as DF-GAN's Python 2 era pickles
        (tmp_path / split / "filenames.pickle").write_bytes(pickle.dumps(keys, protocol=2))
    return tmp_path


def _check_item(item, scale, caption_prefix):
    assert item["hr"].shape == (3, 256, 256) and item["hr"].dtype == torch.float32
    assert item["lr"].shape == (3, 256 // scale, 256 // scale)
    for t in (item["hr"], item["lr"]):
        assert t.min() >= -1 and t.max() <= 1
    assert item["caption"].startswith(caption_prefix)


def test_cub_dfgan_layout_eval_is_deterministic_with_bicubic_lr(dfgan_cub):
    ds = build_dataset("cub", str(dfgan_cub), "train", 4, False)
    assert len(ds) == 2
    a, b = ds[0], ds[0]
    _check_item(a, 4, "bird 0")
    assert a["key"] == CUB_KEYS[0] and a["caption"] == "bird 0 caption 0"
    assert torch.equal(a["hr"], b["hr"])
    hr01 = (a["hr"].numpy().transpose(1, 2, 0) + 1) / 2
    expected = np.round(np.clip(bicubic_downsample(hr01, 4), 0, 1) * 255) / 255
    np.testing.assert_allclose((a["lr"].numpy().transpose(1, 2, 0) + 1) / 2, expected, atol=1e-6)
    assert len(build_dataset("cub", str(dfgan_cub), "test", 16, False)) == 1


def test_cub_bbox_crop_uses_the_bird_region(tmp_path):
    # Left half red, right half blue; a box inside the blue half must give a blue HR.
    _cub_common(tmp_path, tmp_path / "text_c10")
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :30, 0] = 255
    img[:, 30:, 2] = 255
    Image.fromarray(img).save(tmp_path / "CUB_200_2011" / "images" / f"{CUB_KEYS[2]}.jpg", quality=100)
    ds = build_dataset("cub", str(tmp_path), "test", 8, False)
    hr = ds[0]["hr"]
    assert hr[2].mean() > 0.9 and hr[0].mean() < -0.9


def test_cub_official_layout_with_reed_captions(tmp_path):
    _cub_common(tmp_path, tmp_path / "text_c10")
    train = build_dataset("cub", str(tmp_path), "train", 8, True, layout="official")
    test = build_dataset("cub", str(tmp_path), "test", 8, False)
    assert [r.key for r in train.records] == CUB_KEYS[:2]
    assert [r.key for r in test.records] == CUB_KEYS[2:]
    _check_item(train[1], 8, "bird 1")


def test_training_mode_varies_crop_flip_and_caption(dfgan_cub):
    ds = build_dataset("cub", str(dfgan_cub), "train", 4, True)
    torch.manual_seed(0)
    items = [ds[1] for _ in range(12)]
    assert len({it["caption"] for it in items}) > 1
    assert any(not torch.equal(items[0]["hr"], it["hr"]) for it in items[1:])
    torch.manual_seed(0)
    assert torch.equal(ds[1]["hr"], items[0]["hr"])  # seeded: reproducible


def test_pickle_with_classes_is_refused(dfgan_cub):
    (dfgan_cub / "train" / "filenames.pickle").write_bytes(pickle.dumps([warnings.WarningMessage]))
    with pytest.raises(ValueError, match="filenames.pickle"):
        build_dataset("cub", str(dfgan_cub), "train", 4, True)


def test_empty_caption_file_names_the_file(dfgan_cub):
    bad = dfgan_cub / "text" / f"{CUB_KEYS[1]}.txt"
    bad.write_text("\n  \n")
    with pytest.raises(ValueError, match="Albatross_0002.txt"):
        build_dataset("cub", str(dfgan_cub), "train", 4, True)


def test_missing_image_raises_or_is_skipped_with_warning(dfgan_cub):
    (dfgan_cub / "CUB_200_2011" / "images" / f"{CUB_KEYS[0]}.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="Albatross_0001.jpg"):
        build_dataset("cub", str(dfgan_cub), "train", 4, True)
    with pytest.warns(UserWarning, match="skipped 1 missing"):
        ds = build_dataset("cub", str(dfgan_cub), "train", 4, True, skip_bad=True)
    assert len(ds) == 1


def test_unreadable_image_raises_or_is_skipped_and_counted(dfgan_cub):
    (dfgan_cub / "CUB_200_2011" / "images" / f"{CUB_KEYS[0]}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="Albatross_0001.jpg"):
        build_dataset("cub", str(dfgan_cub), "train", 4, False)[0]
    ds = build_dataset("cub", str(dfgan_cub), "train", 4, False, skip_bad=True)
    with pytest.warns(UserWarning, match=r"Albatross_0001.jpg \(1 skipped"):
        item = ds[0]
    assert item["key"] == CUB_KEYS[1] and len(ds.bad_images) == 1


def test_not_a_cub_tree(tmp_path):
    with pytest.raises(FileNotFoundError, match="filenames.pickle"):
        build_dataset("cub", str(tmp_path), "train", 4, True)


def test_coco_official_json(tmp_path):
    images = [{"id": 7, "file_name": "000000000007.jpg"}, {"id": 3, "file_name": "000000000003.jpg"},
              {"id": 9, "file_name": "000000000009.jpg"}]
    anns = [{"id": 1, "image_id": 7, "caption": "a dog. "}, {"id": 2, "image_id": 3, "caption": "a cat"},
            {"id": 4, "image_id": 7, "caption": "a brown dog"}]
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "captions_val2017.json").write_text(json.dumps({"images": images, "annotations": anns}))
    for i, entry in enumerate(images):
        _image(tmp_path / "val2017" / entry["file_name"], seed=i)
    with pytest.warns(UserWarning, match="skipped 1 images without captions"):
        ds = build_dataset("coco", str(tmp_path), "test", 16, False)
    assert [r.key for r in ds.records] == ["000000000003", "000000000007"]
    assert ds.records[1].captions == ("a dog.", "a brown dog")
    _check_item(ds[1], 16, "a dog.")
    with pytest.raises(FileNotFoundError, match="captions_train2017.json"):
        build_dataset("coco", str(tmp_path), "train", 16, True)


def test_coco_empty_caption_is_an_error(tmp_path):
    (tmp_path / "annotations").mkdir()
    data = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"id": 5, "image_id": 1, "caption": " "}]}
    (tmp_path / "annotations" / "captions_train2017.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="annotation 5 has an empty caption"):
        build_dataset("coco", str(tmp_path), "train", 4, True)


@pytest.mark.parametrize("split_format", ["pickle", "txt"])
def test_celeba_mm_layout(tmp_path, split_format):
    for i in range(3):
        _image(tmp_path / "images" / f"{i}.{'png' if i == 2 else 'jpg'}", size=(80, 80), seed=i)
        _text(tmp_path / "text" / f"{i}.txt", [f"face {i} smiling", f"face {i} other"])
    if split_format == "pickle":
        (tmp_path / "test").mkdir()
        (tmp_path / "test" / "filenames.pickle").write_bytes(pickle.dumps(["2", "0"]))
    else:
        _text(tmp_path / "test.txt", ["2", "0"])
    ds = build_dataset("celeba", str(tmp_path), "test", 8, False)
    assert [r.key for r in ds.records] == ["2", "0"]
    _check_item(ds[0], 8, "face 2 smiling")
    with pytest.raises(FileNotFoundError, match="train"):
        build_dataset("celeba", str(tmp_path), "train", 8, True)


def test_jsonl_generic_list(tmp_path):
    _image(tmp_path / "pics" / "a.png", seed=1)
    _image(tmp_path / "pics" / "b.png", seed=2)
    lines = [{"image": "pics/a.png", "captions": ["first", "second"]},
             {"image": "pics/b.png", "captions": ["only"], "key": "bee"}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    ds = build_dataset("jsonl", str(tmp_path), "train", 4, False)
    assert [r.key for r in ds.records] == ["pics/a.png", "bee"]
    _check_item(ds[1], 4, "only")
    assert len(build_dataset("jsonl", str(tmp_path / "train.jsonl"), "test", 4, False)) == 2
    (tmp_path / "bad.jsonl").write_text(json.dumps({"image": "pics/a.png", "captions": [""]}))
    with pytest.raises(ValueError, match=r"bad.jsonl:1: no non-empty caption"):
        build_dataset("jsonl", str(tmp_path / "bad.jsonl"), "train", 4, True)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no images found"):
        build_dataset("jsonl", str(tmp_path / "empty.jsonl"), "train", 4, True)


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; known: cub, coco, celeba, jsonl, synthbirds"):
        build_dataset("imagenet", "/x", "train", 4, True)
    with pytest.raises(ValueError, match="needs a root"):
        build_dataset("cub", None, "train", 4, True)
    with pytest.raises(ValueError, match="takes no root"):
        build_dataset("synthbirds", "/x", "train", 4, True)
    assert "synthbirds" in dataset_names()


def test_scale_must_divide_hr_size(tmp_path):
    _image(tmp_path / "a.png")
    (tmp_path / "l.jsonl").write_text(json.dumps({"image": "a.png", "captions": ["x"]}))
    with pytest.raises(ValueError, match="scale 3"):
        build_dataset("jsonl", str(tmp_path / "l.jsonl"), "train", 3, True)


def test_synthbirds_is_registered_from_above_the_data_layer():
    ds = build_dataset("synthbirds", None, "test", 16, False, count=2)
    assert type(ds).__module__ == "clipsr.synthbirds.dataset" and len(ds) == 2
    _check_item(ds[0], 16, "")
    # the data layer alone knows its file datasets and imports nothing above it
    code = ("import sys; from clipsr.data.registry import build_dataset, dataset_names\n"
            "assert not [m for m in sys.modules if m.startswith('clipsr.synthbirds')], 'imported SynthBirds'\n"
            "try:\n    build_dataset('synthbirds', None, 'test', 16, False)\nexcept ValueError as e:\n    print(e)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "unknown dataset 'synthbirds'; known: cub, coco, celeba, jsonl"


def test_a_dataset_registered_from_outside_is_built_by_name(monkeypatch):
    monkeypatch.setattr(registry, "_DATASETS", dict(registry._DATASETS))
    register_dataset("counting", lambda **kw: kw, takes_root=False)
    assert build_dataset("counting", None, "val", 8, False, count=3) == {"split": "val", "scale": 8, "train": False,
                                                                         "count": 3}
    with pytest.raises(ValueError, match="registered already"):
        register_dataset("counting", lambda **kw: kw, takes_root=False)


def test_malformed_cub_box_line_names_file_and_line(dfgan_cub):
    (dfgan_cub / "CUB_200_2011" / "bounding_boxes.txt").write_text("1 10 5 20 10\n2 0 0 sixty 40\n")
    with pytest.raises(ValueError, match=r"bounding_boxes.txt:2: expected"):
        build_dataset("cub", str(dfgan_cub), "train", 4, True)


def test_an_option_no_dataset_takes_is_named_not_a_type_error(tmp_path):
    (tmp_path / "l.jsonl").write_text(json.dumps({"image": "a.png", "captions": ["x"]}))
    with pytest.raises(ValueError, match="dataset 'jsonl' has no option 'captions'; its options: hr_size"):
        build_dataset("jsonl", str(tmp_path / "l.jsonl"), "train", 16, True, captions="first")
