"""The model folder is a trust boundary: every path stays inside it, every listed file is verified, and
a malformed model.json is one clear error at load (never a traceback, never a garbage image).
The explicit cases below are the ones a careless or hostile folder meets; a hypothesis fuzz then mutates
a valid manifest at random and asserts only the two allowed outcomes."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from clipsr_runtime.cli import app
from clipsr_runtime.manifest import (MANIFEST, PRECISIONS, STAGE_IO, ManifestError, builtin_models_dir,
                                     load_manifest, parse_manifest)
from clipsr_runtime.upscaler import Upscaler
from runtime_fixtures import make_model_dir

LOAD_ERRORS = (ManifestError, FileNotFoundError)


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> tuple[Path, dict]:
    folder = make_model_dir(tmp_path_factory.mktemp("valid") / "m", fp16="ok")
    return folder, json.loads((folder / MANIFEST).read_text())


def _set(data: dict, key: str | tuple[str, ...], value) -> dict:
    """A copy of `data` with the key at `key` ("a.b.c", or a tuple when names hold dots) set to `value`,
    or deleted for `_DELETE`."""
    data = copy.deepcopy(data)
    *parents, last = key.split(".") if isinstance(key, str) else key
    node = data
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()
_LR = "generator.inputs.lr.shape"

# (key, new value, what the one error line says)
CASES = [
    # paths leave the folder
    ("tokenizer.vocab", "/etc/passwd", "tokenizer.vocab '/etc/passwd' is an absolute path"),
    ("tokenizer.vocab", "../bpe_simple_vocab_16e6.txt.gz", "tokenizer.vocab '../bpe.* leaves the model folder"),
    ("generator.files.fp32", "../m/generator.onnx", "generator.files.fp32 '../m/generator.onnx' leaves"),
    ("generator.files.fp32", "/tmp/generator.onnx", "generator.files.fp32 '/tmp/generator.onnx' is an absolute"),
    ("text_encoder.files.fp32", "sub\\..\\text_encoder.onnx", "leaves the model folder"),
    ("text_encoder.files.fp32", "C:/models/text_encoder.onnx", "is an absolute path"),
    ("generator.files.fp32", "", "must be a non-empty file name"),
    (("files", "/etc/passwd"), {"sha256": "0" * 64}, "files: '/etc/passwd' is an absolute path"),
    (("files", "../outside.onnx"), {"sha256": "0" * 64}, "files: '../outside.onnx' leaves the model folder"),
    ("name", "../../evil", "name must be a plain name"),
    ("name", "", "name must be a plain name"),
    ("engines", [{"file": "../x.engine"}], r"engines\[0\].file '../x.engine' leaves"),
    # missing keys
    *((key, _DELETE, f"{key} is missing") for key in
      ("name", "scale", "hr_size", "value_range", "tokenizer", "text_encoder", "generator", "files")),
    ("tokenizer.vocab", _DELETE, "tokenizer.vocab is missing"),
    ("generator.files", _DELETE, "generator.files is missing"),
    ("generator.files.fp32", _DELETE, "generator.files must have 'fp32'"),
    (("files", "generator.onnx"), _DELETE, "'files' has no sha256 for generator.onnx"),
    ("format", _DELETE, "'format' must be 'clipsr-model'"),
    ("format_version", _DELETE, "format_version None is not supported"),
    # wrong types
    ("scale", "4", "scale must be an integer, got a string"),
    ("scale", 4.0, "scale must be an integer, got a number"),
    ("scale", True, "scale must be an integer, got a boolean"),
    ("scale", 0, "scale must be between 1 and 64, got 0"),
    ("hr_size", -64, "hr_size must be between 1 and 8192"),
    ("hr_size", 2**40, "hr_size must be between 1 and 8192"),
    ("format_version", 2.0, "format_version 2.0 is not supported"),
    ("format_version", True, "format_version True is not supported"),
    ("format_version", "2", "format_version '2' is not supported"),
    ("name", 7, "name must be a string"),
    ("tokenizer.context_length", 0, "tokenizer.context_length must be between 2 and 4096, got 0"),
    ("tokenizer.context_length", 10**12, "tokenizer.context_length must be between 2 and 4096"),
    ("tokenizer.context_length", 5, "context_length 5 does not match the text encoder's tokens shape"),
    ("tokenizer.context_length", "77", "tokenizer.context_length must be an integer"),
    ("tokenizer.eot_token", -1, "tokenizer.eot_token must be >= 0"),
    ("tokenizer.lowercase", "yes", "tokenizer.lowercase must be a boolean"),
    ("generator.files.int3", "generator.onnx", "generator.files must have 'fp32' and only"),
    (("files", "generator.onnx", "sha256"), "abc", "sha256 must be 64 lowercase hex digits"),
    (("files", "generator.onnx", "sha256"), None, "sha256 must be a string, got null"),
    (("files", "generator.onnx", "bytes"), "12", "bytes must be an integer"),
    (("files", "generator.onnx"), "cf6ffdfb", "files.generator.onnx must be an object"),
    ("opset", "18", "opset must be an integer"),
    ("parity", [], "parity must be an object, got a list"),
    # shapes and ranges
    (_LR, ["batch"], "generator.inputs.lr.shape must have 4 dimensions, got 1"),
    ("text_encoder.inputs.tokens.shape", [77], "tokens.shape must have 2 dimensions, got 1"),
    (_LR, [0, 3, "h", "w"], "dimensions must be integers >= 1 or names, got 0"),
    (_LR, ["batch", 3, 1.5, "w"], "dimensions must be integers >= 1 or names, got 1.5"),
    (_LR, ["batch", 3, None, "w"], "dimensions must be integers >= 1 or names, got None"),
    (_LR, ["batch", 4, "h", "w"], "generator lr must have 3 channels"),
    (_LR, ["batch", 3, 32, 32], "generator lr shape .* does not match 16 px"),
    ("generator.outputs.sr.shape", ["batch", 3, 128, 128], "generator sr shape .* does not match 64 px"),
    ("generator.inputs.text_embedding.shape", ["batch", 9], "text_embedding widths disagree"),
    ("text_encoder.inputs.tokens.dtype", "float32", "tokens.dtype must be 'int32'"),
    ("generator.inputs.lr", {"shape": ["batch", 3, "h", "w"]}, "generator.inputs.lr.dtype is missing"),
    ("generator.inputs.lr", [], "generator.inputs.lr must be an object"),
    ("generator.inputs", {"lr": {}, "text": {}}, "generator.inputs must be exactly"),
    ("value_range", [1, 1], r"value_range must be two finite numbers .* got \[1, 1\]"),
    ("value_range", [1], "value_range must be two finite numbers"),
    ("value_range", ["a", "b"], "value_range must be two finite numbers"),
    ("value_range", [math.nan, 1.0], "value_range must be two finite numbers"),
    ("value_range", [1.0, -1.0], "value_range must be two finite numbers"),
    ("value_range", [-1, 10**400], "value_range must be two finite numbers"),
    ("value_range", [0, 1e-300], r"value_range must be two finite numbers .* least 0.001 above low"),
    ("value_range", [-1e300, 1e300], r"value_range must be two finite numbers \[low, high\] within \+-1e\+06"),
    ("scale", 3, "scale 3 does not divide hr_size 64"),
    # lists (or scalars) where objects belong
    ("tokenizer", [], "tokenizer must be an object, got a list"),
    ("generator", [], "generator must be an object, got a list"),
    ("files", [], "files must be an object, got a list"),
    ("generator.files", ["generator.onnx"], "generator.files must be an object, got a list"),
    ("text_encoder.outputs", [], "text_encoder.outputs must be an object, got a list"),
    ("source", "me", "source must be an object"),
    # the optional model card
    ("model_card", "CUB", "model_card must be an object, got a string"),
    ("model_card", {"licence": 1}, "model_card.licence must be a string, got an integer"),
    ("model_card", {"scale": 8}, "model_card.scale 8 does not match the folder's scale 4"),
    ("model_card", {"lr_size": 64}, "model_card.lr_size 64 does not match the folder's lr_size 16"),
]


def _linked_copy(folder: Path, dest: Path) -> Path:
    """The folder's files hard-linked into `dest` (cheap; a hard link is a file inside `dest`)."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in folder.iterdir():
        os.link(p, dest / p.name)
    return dest


def _case_id(key, value) -> str:
    name = ".".join(key) if isinstance(key, tuple) else key
    return f"{name}={'del' if value is _DELETE else repr(value)}"[:60]


@pytest.mark.parametrize("key, value, message", CASES, ids=[_case_id(k, v) for k, v, _ in CASES])
def test_malformed_manifest_is_one_clear_error_at_load(valid, tmp_path, key, value, message):
    import re

    folder = _linked_copy(valid[0], tmp_path / "m")
    (folder / MANIFEST).unlink()
    (folder / MANIFEST).write_text(json.dumps(_set(valid[1], key, value)))
    with pytest.raises(LOAD_ERRORS) as caught:
        load_manifest(folder)
    text = str(caught.value)
    assert "\n" not in text and re.search(message, text), text


def test_paths_through_symlinks_must_stay_inside(valid, tmp_path):
    folder, data = valid
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the model folder")
    copy_dir = _linked_copy(folder, tmp_path / "m")
    (copy_dir / MANIFEST).unlink()
    (copy_dir / "link.txt").symlink_to(secret)
    (copy_dir / "loop").symlink_to(copy_dir / "loop")
    import hashlib

    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    for name in ("link.txt", "loop"):
        broken = _set(data, ("files", name), {"sha256": digest})
        (copy_dir / MANIFEST).write_text(json.dumps(broken))
        with pytest.raises(ManifestError, match=f"{name} resolves outside the folder"):
            load_manifest(copy_dir)
    for name in ("link.txt", "loop"):
        (copy_dir / name).unlink()  # unlisted files are refused on their own
    inner = copy_dir / "alias.onnx"  # a symlink that stays inside is an ordinary file name
    inner.symlink_to(copy_dir / "generator.onnx")
    ok = _set(_set(data, "generator.files.fp32", "alias.onnx"), ("files", "alias.onnx"),
              data["files"]["generator.onnx"])
    (copy_dir / MANIFEST).write_text(json.dumps(ok))
    assert load_manifest(copy_dir).stage_file("generator", "fp32") == inner


def test_every_listed_file_is_verified_even_when_unused(valid, tmp_path):
    folder, data = valid
    copy_dir = tmp_path / "m"
    copy_dir.mkdir()
    for p in folder.iterdir():
        (copy_dir / p.name).write_bytes(p.read_bytes())
    extra = copy_dir / "notes.txt"
    extra.write_text("listed, never read by the runtime")
    (copy_dir / MANIFEST).write_text(json.dumps(_set(data, ("files", "notes.txt"), {"sha256": "0" * 64})))
    with pytest.raises(ManifestError, match="notes.txt does not match its sha256"):
        Upscaler(copy_dir, backend="ort-cpu")  # fp32 run: neither notes.txt nor the fp16 files are used
    extra.unlink()  # an unlisted file is refused on its own
    (copy_dir / MANIFEST).write_text(json.dumps(data))
    half = bytearray((copy_dir / "generator.fp16.onnx").read_bytes())
    half[-1] ^= 0xFF
    (copy_dir / "generator.fp16.onnx").write_bytes(bytes(half))
    with pytest.raises(ManifestError, match="generator.fp16.onnx does not match its sha256"):
        Upscaler(copy_dir, backend="ort-cpu", precision="fp32")


def test_json_that_is_not_a_manifest(valid, tmp_path):
    folder, _ = valid
    for text, message in (("[1, 2]", "must hold an object, got a list"), ("{", "not valid JSON"),
                          ("[" * 100_000 + "]" * 100_000, "not valid JSON"), ("null", "got null")):
        (tmp_path / MANIFEST).write_text(text)
        with pytest.raises(ManifestError, match=message):
            load_manifest(tmp_path)
    (tmp_path / MANIFEST).write_bytes(b"\xff\xfe{}")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(tmp_path)


def test_an_integer_over_pythons_digit_limit_names_the_file(valid, tmp_path):
    folder = _linked_copy(valid[0], tmp_path / "m")
    (folder / MANIFEST).unlink()
    text = json.dumps(valid[1]).replace('"scale": 4', '"scale": 1' + "0" * 5000)
    (folder / MANIFEST).write_text(text)
    with pytest.raises(ManifestError, match=f"{folder / MANIFEST} is not valid JSON .*4300 digits"):
        load_manifest(folder)


def test_model_json_linked_from_outside_the_folder_is_refused(valid, tmp_path):
    folder = _linked_copy(valid[0], tmp_path / "m")
    (folder / MANIFEST).unlink()
    outside = tmp_path / "elsewhere.json"
    outside.write_text(json.dumps(valid[1]))
    (folder / MANIFEST).symlink_to(outside)
    with pytest.raises(ManifestError, match="model.json resolves outside the folder"):
        load_manifest(folder)


def test_a_file_the_manifest_does_not_list_is_refused(valid, tmp_path):
    """An ONNX graph may keep its weights in further files (external data): a backend would read such
    a file unverified, so a folder holding an unlisted file is refused."""
    import onnx

    folder = _linked_copy(valid[0], tmp_path / "m")
    graph = onnx.load(str(folder / "generator.onnx"))
    (folder / "generator.onnx").unlink()
    onnx.save(graph, str(folder / "generator.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="generator.weights", size_threshold=0)
    data = copy.deepcopy(valid[1])
    data["files"]["generator.onnx"] = {"sha256": _sha256(folder / "generator.onnx")}
    (folder / MANIFEST).unlink()
    (folder / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="generator.weights is not listed in model.json"):
        load_manifest(folder)
    data["files"]["generator.weights"] = {"sha256": _sha256(folder / "generator.weights")}
    (folder / MANIFEST).write_text(json.dumps(data))
    assert load_manifest(folder).files["generator.weights"]  # listed and verified: fine


@pytest.mark.parametrize("backend", ["ort-cpu", "openvino"])
def test_external_data_outside_the_folder_is_refused_by_every_backend(valid, tmp_path, backend):
    import onnx

    pytest.importorskip(backend.split("-")[0].replace("ort", "onnxruntime"))
    folder = _linked_copy(valid[0], tmp_path / "m")
    model = onnx.load(str(folder / "generator.onnx"))
    proj = next(t for t in model.graph.initializer if t.name == "proj")
    (tmp_path / "outside.bin").write_bytes(proj.raw_data)
    proj.ClearField("raw_data")
    for key, value in (("location", "../outside.bin"), ("offset", "0"), ("length", "96")):
        entry = proj.external_data.add()
        entry.key, entry.value = key, value
    proj.data_location = onnx.TensorProto.EXTERNAL
    (folder / "generator.onnx").unlink()
    (folder / "generator.onnx").write_bytes(model.SerializeToString())
    data = _set(valid[1], ("files", "generator.onnx"), {"sha256": _sha256(folder / "generator.onnx")})
    (folder / MANIFEST).unlink()
    (folder / MANIFEST).write_text(json.dumps(data))
    refusal = r"generator.onnx: .* cannot load it \(.*(escapes model directory|outside the base)"
    with pytest.raises(ValueError, match=refusal):
        Upscaler(folder, backend=backend)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_reports_a_malformed_folder_as_one_line(valid, tmp_path):
    folder, data = valid
    _linked_copy(folder, tmp_path)
    (tmp_path / MANIFEST).unlink()
    (tmp_path / MANIFEST).write_text(json.dumps(_set(data, "tokenizer.vocab", "/etc/passwd")))
    image = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (16, 16)).save(image)
    result = CliRunner().invoke(app, [str(image), "a bird", "--model", str(tmp_path)])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(errors) == 1 and "tokenizer.vocab '/etc/passwd' is an absolute path" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".png") == ["in.png"]


def test_a_model_card_loads_and_a_folder_without_one_still_does(valid):
    folder, data = valid
    assert "model_card" not in data
    card = {"architecture": "clip-sr-reference", "licence": "unknown", "source": "their repository",
            "scale": data["scale"], "lr_size": data["hr_size"] // data["scale"], "parameters": {"generator": 1}}
    assert parse_manifest(folder, _set(data, "model_card", card)).scale == data["scale"]


def test_a_format_1_folder_still_loads(tmp_path):
    """Format 1 (earlier exports) stated lr_size too; format 2 derives it."""
    folder = tmp_path / "v1"
    shutil.copytree(builtin_models_dir() / "synthbirds-tiny-x16", folder)
    raw = json.loads((folder / "model.json").read_text())
    raw.update(format_version=1, lr_size=16)
    (folder / "model.json").write_text(json.dumps(raw))
    demo = load_manifest(folder)
    assert (demo.format_version, demo.scale, demo.lr_size, demo.hr_size) == (1, 16, 16, 256)
    raw["lr_size"] = 32
    (folder / "model.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="lr_size 32 x scale 16 != hr_size 256"):
        load_manifest(folder)


# --- fuzz ------------------------------------------------------------------------------------------

_ODD_TEXT = st.sampled_from(["", "..", "../x", "/etc/passwd", "generator.onnx", "batch", "fp32", "C:\\x",
                             "a/../../b", "\x00", "text_encoder.onnx", "bpe_simple_vocab_16e6.txt.gz"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 300) | st.sampled_from([2**63, 10**400])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6) | _ODD_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4) | _ODD_TEXT, inner, max_size=3),
    max_leaves=8)


def _paths(node, prefix=()) -> list[tuple]:
    """Every key path in a JSON tree (list items by index)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    found = []
    for key, child in items:
        found.append((*prefix, key))
        found += _paths(child, (*prefix, key))
    return found


@st.composite
def _mutated(draw, data: dict) -> dict:
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_JSON)
    return data


def _assert_sound(m) -> None:
    """What the upscaler relies on once a manifest loaded."""
    assert m.lr_size * m.scale == m.hr_size and m.lr_size >= 1
    lo, hi = m.value_range
    assert math.isfinite(lo) and math.isfinite(hi) and lo < hi
    assert m.tokenizer["context_length"] >= 2
    root = m.root.resolve()
    for stage in ("text_encoder", "generator"):
        spec = getattr(m, stage)
        assert "fp32" in spec.files and set(spec.files) <= set(PRECISIONS)
        for name in spec.files.values():
            assert name in m.files and (m.root / name).resolve().is_relative_to(root)
        for part in ("inputs", "outputs"):
            assert set(getattr(spec, part)) == set(STAGE_IO[stage][part])
            for tensor in getattr(spec, part).values():
                assert all(isinstance(d, str) or (isinstance(d, int) and d >= 1) for d in tensor["shape"])


@pytest.mark.parametrize("layer", ["schema", "folder"])
def test_fuzzed_manifests_load_soundly_or_fail_with_one_clear_error(valid, tmp_path_factory, layer):
    folder, data = valid
    work = _linked_copy(folder, tmp_path_factory.mktemp("fuzz") / "m")
    (work / MANIFEST).unlink()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(_mutated(data))
    def check(mutated):
        try:
            if layer == "schema":
                manifest = parse_manifest(folder, mutated)
            else:
                (work / MANIFEST).write_text(json.dumps(mutated))
                manifest = load_manifest(work)
        except LOAD_ERRORS as exc:
            assert "\n" not in str(exc) and "model f" in str(exc), str(exc)
        else:
            _assert_sound(manifest)

    check()
