"""The README's Python example runs as written (read from README.md, so the two cannot drift apart)."""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _python_example() -> str:
    """The README.md block marked `<!-- tested: tests/test_readme.py -->` (the convention of tests/test_docs.py)."""
    blocks = re.findall(r"<!-- tested: tests/test_readme.py -->\s*```python\n(.*?)```", (ROOT / "README.md").read_text(),
                        flags=re.S)
    assert len(blocks) == 1, "the README has one Python example marked for this test"
    return blocks[0]


def test_readme_python_example_runs_and_says_nothing_alarming(tmp_path, monkeypatch, caplog):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING)
    namespace: dict = {}
    exec(compile(_python_example(), "README.md", "exec"), namespace)
    assert tuple(namespace["sr"].shape) == (1, 3, 256, 256)
    assert namespace["sr"].isfinite().all()
    source = Image.open(tmp_path / "examples" / "bird_0.png")
    assert Image.open(tmp_path / "bird_0_x16.png").size == (16 * source.width, 16 * source.height)
    assert not [r for r in caplog.records if "initialized randomly" in r.getMessage()], \
        "open_clip's notice about random CLIP weights reaches the user of the tiny preset"
