"""Prompt files: every row is a real caption or a clear error naming the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipsr_runtime.errors import OptionError
from clipsr_runtime.prompt_files import load_prompts


def _file(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_multi_line_quoted_csv_keeps_its_text_and_bom_is_accepted(tmp_path):
    path = _file(tmp_path, "p.csv", '\ufeffimage,prompt\na.png,"a red bird,\nperched"\nsub\\b.png,a blue bird\n')
    assert load_prompts(path) == {"a.png": "a red bird,\nperched", "sub/b.png": "a blue bird"}


def test_jsonl_with_bom(tmp_path):
    path = _file(tmp_path, "p.jsonl", '\ufeff{"image": "a.png", "prompt": "a red bird"}\n\n')
    assert load_prompts(path) == {"a.png": "a red bird"}


def test_columns_may_come_in_any_order_with_extra_columns(tmp_path):
    path = _file(tmp_path, "p.csv", "prompt,image,note\na small bird,a.png,x\n")
    assert load_prompts(path) == {"a.png": "a small bird"}


@pytest.mark.parametrize("name, text, message", [
    ("p.jsonl", '{"image": "a.png", "prompt": null}\n', "p.jsonl, line 1: no prompt"),
    ("p.jsonl", '{"image": "a.png", "prompt": "ok"}\n{"image": "b.png"}\n', "line 2: needs keys"),
    ("p.jsonl", '{"image": "a.png", "prompt": 3}\n', "line 1: prompt must be text, got int 3"),
    ("p.jsonl", '{"image": "a.png", "prompt": ["a", "b"]}\n', 'prompt must be text, got list ["a", "b"]'),
    ("p.jsonl", '{"image": "a.png", "prompt": {"t": 1}}\n', "prompt must be text, got dict"),
    ("p.jsonl", '{"image": 7, "prompt": "a bird"}\n', "line 1: image must be text, got int"),
    ("p.jsonl", '{"image": "a.png", "prompt": "  "}\n', "line 1: empty prompt"),
    ("p.jsonl", '["a.png", "a bird"]\n', "line 1: needs keys"),
    ("p.jsonl", '{"image": "a.png", "prompt": "a bird"\n', "line 1: invalid JSON"),
    ("p.csv", "image,prompt\na.png\n", "p.csv, line 2: 1 fields, the header has 2"),
    ("p.csv", "image,prompt\na.png,\n", "line 2: empty prompt"),
    ("p.csv", "image,prompt\na.png,a red bird, small\n", "line 2: 3 fields, the header has 2 (quote a prompt"),
    ("p.csv", 'image,prompt\na.png,"one\ntwo"\nb.png\n', "line 4: 1 fields"),
    ("p.csv", "file,caption\na.png,a bird\n", "needs the header columns 'image,prompt'"),
    ("p.csv", "image,prompt\na.png,a red bird\na.png,a blue bird\n", "line 3: a.png is listed twice"),
    ("p.csv", "image,prompt\n", "no rows"),
    ("p.csv", "", "needs the header columns"),
    ("p.csv", b"image,prompt\na.png,a \xff bird\n", "not UTF-8 text"),
])
def test_bad_rows_are_errors_naming_file_and_line(tmp_path, name, text, message):
    path = _file(tmp_path, name, text)
    with pytest.raises(ValueError) as error:
        load_prompts(path)
    assert message in str(error.value) and str(path) in str(error.value)
    assert "None" not in str(error.value)


def test_missing_or_unknown_prompt_file_is_a_usage_error(tmp_path):
    with pytest.raises(OptionError, match="no such file"):
        load_prompts(tmp_path / "missing.csv")
    with pytest.raises(OptionError, match="use a .csv or .jsonl"):
        load_prompts(_file(tmp_path, "p.txt", "a.png a bird\n"))


@pytest.mark.parametrize("line, why", [("[" * 100_000 + "]" * 100_000, "nested too deeply"),
                                       ('{"image": "a.png", "prompt": ' + "1" * 5001 + "}", "4300 digits")])
def test_jsonl_that_python_cannot_parse_names_the_file_and_line(tmp_path, line, why):
    path = _file(tmp_path, "p.jsonl", '{"image": "b.png", "prompt": "a bird"}\n' + line + "\n")
    with pytest.raises(ValueError, match=f"prompt file {path}, line 2: invalid JSON .*{why}"):
        load_prompts(path)
