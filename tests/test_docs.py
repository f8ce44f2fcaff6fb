"""The docs a newcomer reads are true: docs/architecture.md names files and classes that exist, README
links it, and code comments explain instead of pointing at issue numbers."""
from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
CODE = ("clipsr", "export", "runtime", "benchmarks", "tests")
# Owned by work in progress elsewhere; drop an entry when its file is fixed.
ISSUE_NUMBER = re.compile(r"\bissues? #?\d|(?<![\w&])#\d+\b", re.I)


def _defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef))}


def test_architecture_doc_names_files_and_classes_that_exist():
    text = ARCHITECTURE.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    checked = 0
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        files = [ROOT / f for f in re.findall(r"`([\w/]+\.py)`", cells[1])] if len(cells) == 3 else []
        if not files:
            continue
        defined = set().union(*(_defined_names(f) for f in files))  # a missing file fails here
        for name in re.findall(r"`(?:\w+\.)?(\w+)`", cells[2]):
            assert name in defined or any(name in f.read_text() for f in files), f"{name} not in {cells[1]}"
            checked += 1
    losses = _defined_names(ROOT / "clipsr" / "losses.py")
    section = text.split("## The losses")[1].split("\n## ")[0]
    for name in re.findall(r"^\| .*? \| `(\w+)` \|$", section, re.M):
        assert name in losses, name
        checked += 1
    for path in re.findall(r"`((?:runtime|export|clipsr)/[\w/]+\.py)", text):
        assert (ROOT / path).is_file(), path
    assert checked >= 20


def test_readme_links_the_architecture_doc():
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text()


def _comments_and_docstrings(path: Path) -> list[tuple[int, str]]:
    source = path.read_text()
    found = [(t.start[0], t.string) for t in tokenize.generate_tokens(io.StringIO(source).readline)
             if t.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                found.append((getattr(node, "lineno", 1), doc))
    return found


def test_code_comments_name_no_issue_numbers():
    offenders = []
    for package in CODE:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            offenders += [f"{rel}:{line}" for line, text in _comments_and_docstrings(path) if ISSUE_NUMBER.search(text)]
    assert offenders == []
