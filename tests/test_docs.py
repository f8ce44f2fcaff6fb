"""The docs a newcomer reads are true: every command block in them runs in a test or says why not, the
clipsr command lines in them parse, docs/architecture.md names files, classes and functions that exist,
and code comments explain instead of pointing at issue numbers."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tokenize
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner
from PIL import Image

from clipsr_runtime.manifest import default_model_dir

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
CODE = ("clipsr", "export", "runtime", "benchmarks", "tests")
DOCS = ("README.md", "runtime/README.md", "benchmarks/README.md", "docs/*.md")
MODEL_CARD = "clipsr/demo/MODEL_CARD.md"
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


# --- Command blocks: run by a test, or marked as not run with the reason ---------------------------------

RUN = "<!-- run -->"
MARKER = re.compile(r"<!-- (?:run|tested: (?P<test>\S+)|not run: (?P<why>.*\S)) -->")
SHELL = ("", "sh", "bash", "console", "shell")
HOW_TO_MARK = """
Put one of these on the line right before each ``` block (a blank line between is fine):
  <!-- run -->                       tests/test_docs.py runs it and asserts it succeeds: each line of a shell block
                                     on its own (join dependent commands with &&), a ```python block as a whole,
                                     in a fresh temporary folder holding the files _doc_inputs() makes, with this
                                     environment's console scripts on PATH. Only for blocks that take seconds.
  <!-- tested: tests/test_x.py -->   that test runs or checks the block (it names the markdown file).
  <!-- not run: why -->              e.g. "needs a GPU", "trains for hours", "a folder layout"; the clipsr command
                                     lines of a shell block are still parsed against their CLI (unknown options, types).
"""


@dataclass(frozen=True)
class Block:
    doc: str
    line: int  # of the opening fence
    lang: str
    text: str
    marker: str

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    def commands(self) -> list[str]:
        """A shell block's command lines (continuations joined, blank and comment-only lines dropped)."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _docs(*patterns: str) -> list[Path]:
    return sorted({path for pattern in patterns for path in ROOT.glob(pattern)})


def test_paths_the_docs_name_exist():
    """A file or folder named in backticks or linked (`runtime/models/...`, `results/...` beside the doc)
    exists: history lives in git, not behind dead links."""
    checked = 0
    for doc in _docs(*DOCS, MODEL_CARD):
        text = doc.read_text()
        for token in re.findall(r"`([^`\s]+)`", text) + re.findall(r"\]\(([^)\s]+)\)", text):
            path = token.split(":")[0].rstrip("/")
            if "/" not in path or re.search(r"^[/-]|[<*{$]|//", path):
                continue  # not a path, or a pattern, a placeholder, a URL
            bases = [base for base in (ROOT, doc.parent) if (base / path.split("/")[0]).exists()]
            if bases:
                assert any((base / path).exists() for base in bases), f"{doc.relative_to(ROOT)}: {token} does not exist"
                checked += 1
    assert checked >= 30


def _import_dotted(dotted: str) -> object:
    """`package.module.name.attr`: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for part in parts[i:]:
            found = getattr(found, part)
        return found
    raise ModuleNotFoundError(dotted)


def test_python_names_the_docs_give_exist(monkeypatch):
    """`clipsr.checkpoint.load_checkpoint(path)`, `clipsr_runtime.tokenizer.Tokenizer`...: importable as written."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # clipsr_bench lives beside the scripts
    names = {name for doc in _docs(*DOCS, MODEL_CARD) for name in
             re.findall(r"`((?:clipsr|clipsr_runtime|clipsr_export|clipsr_bench)(?:\.\w+)+)[`(]", doc.read_text())}
    assert len(names) >= 5
    for name in sorted(names):
        _import_dotted(name)


def doc_blocks() -> list[Block]:
    """Every fenced block of the docs, with the marker line before it ("" when there is none)."""
    blocks = []
    for path in _docs(*DOCS):
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            fence = re.match(r"```(\w*)\s*$", lines[i])
            if fence:
                end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
                before = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
                blocks.append(Block(path.relative_to(ROOT).as_posix(), i + 1, fence.group(1),
                                    "\n".join(lines[i + 1:end]), before if MARKER.fullmatch(before) else ""))
                i = end
            i += 1
    return blocks


def test_every_block_is_run_by_a_test_or_says_why_not():
    problems = []
    for block in doc_blocks():
        marker = MARKER.fullmatch(block.marker)
        if marker is None:
            problems.append(f"{block.where}: ```{block.lang} block with no marker")
        elif marker["test"]:
            test = ROOT / marker["test"]
            if not test.is_file() or Path(block.doc).name not in test.read_text():
                problems.append(f"{block.where}: {marker['test']} does not exist or never names {Path(block.doc).name}")
    assert not problems, "\n".join(problems) + "\n" + HOW_TO_MARK


def _doc_inputs(folder: Path) -> None:
    """The files the run blocks name: the examples, bird.png, photo.jpg, photos/ with captions.csv for it,
    and path/to/model (the built-in model)."""
    shutil.copytree(ROOT / "examples", folder / "examples")
    shutil.copy(ROOT / "examples" / "bird_0.png", folder / "bird.png")
    Image.open(ROOT / "examples" / "bird_1.png").convert("RGB").save(folder / "photo.jpg")
    (folder / "photos" / "more").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "bird_2.png", folder / "photos" / "bird_2.png")
    shutil.copy(ROOT / "examples" / "bird_3.png", folder / "photos" / "more" / "bird_3.png")
    (folder / "captions.csv").write_text("image,prompt\nbird_2.png,a bird with a red crown\n"
                                         "more/bird_3.png,\"a bird with blue wings, a white belly\"\n")
    (folder / "path" / "to").mkdir(parents=True)
    (folder / "path" / "to" / "model").symlink_to(default_model_dir(), target_is_directory=True)


def _run_in_fresh_folder(argv: list[str], folder: Path) -> subprocess.CompletedProcess:
    folder.mkdir()
    _doc_inputs(folder)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in doc_blocks() if b.marker == RUN], ids=lambda b: b.where)
def test_run_blocks_succeed(block, tmp_path):
    if block.lang == "python":
        runs = [("the block", [sys.executable, "-c", block.text])]
    else:
        assert block.lang in SHELL, f"{block.where}: only shell and python blocks can be run"
        runs = [(command, ["bash", "-e", "-o", "pipefail", "-c", command]) for command in block.commands()]
    assert runs, f"{block.where}: nothing to run"
    for n, (what, argv) in enumerate(runs):
        done = _run_in_fresh_folder(argv, tmp_path / str(n))
        assert done.returncode == 0, f"{block.where}: {what}\nexit {done.returncode}\n{done.stderr[-3000:]}"


# --- The clipsr command lines of every shell block parse against their CLI -------------------------------

def _console_scripts() -> dict[str, str]:
    """clipsr's console scripts as pyproject.toml declares them: name -> module defining the typer `app`."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return {name: target.split(":")[0] for name, target in scripts.items()}


def clipsr_commands(line: str) -> Iterator[tuple[str, list[str]]]:
    """(program, arguments) of each clipsr command in a shell line: a console script (also after torchrun,
    `$(which ...)` or an environment assignment), `python -m clipsr...` or `python benchmarks/....py`."""
    lexer = shlex.shlex(re.sub(r"\$\(which (\S+)\)", r"\1", line), posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    tokens, scripts, segment = list(lexer), _console_scripts(), []
    for token in tokens + [";"]:
        if token not in ("&&", "||", "|", ";", "&"):
            segment.append(token)
            continue
        for i, word in enumerate(segment):
            if Path(word).name in scripts:
                yield Path(word).name, segment[i + 1:]
                break
            if re.fullmatch(r"python[\d.]*", Path(word).name) and len(segment) > i + 1:
                if segment[i + 1] == "-m" and segment[i + 2].startswith("clipsr"):
                    yield segment[i + 2], segment[i + 3:]
                elif segment[i + 1].startswith("benchmarks/"):
                    yield segment[i + 1], segment[i + 2:]
                break
        segment = []


def typer_app(program: str) -> typer.Typer:
    """The typer app behind a console script, a `python -m` module or a benchmark script."""
    scripts = _console_scripts()
    if program in scripts:
        module = importlib.import_module(scripts[program])
    elif program.endswith(".py"):
        spec = importlib.util.spec_from_file_location(f"_doc_{Path(program).stem}", ROOT / program)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(program)
        if hasattr(module, "__path__"):
            module = importlib.import_module(f"{program}.__main__")
    return module.app


def parse(program: str, args: list[str]) -> None:
    """Parse a command line as the program would (options, choices, types, callbacks), without running it."""
    command = typer.main.get_command(typer_app(program))
    ctx = command.make_context(program, list(args))
    if isinstance(command, TyperGroup):
        sub = command.get_command(ctx, args[0])
        if sub is None:
            raise typer.BadParameter(f"no command {args[0]!r}")
        sub.make_context(args[0], list(args[1:]), parent=ctx)


def test_clipsr_command_lines_in_the_docs_parse():
    problems, parsed = [], 0
    for block in doc_blocks():
        for line in block.commands() if block.lang in SHELL else []:
            try:
                commands = list(clipsr_commands(line))
            except ValueError as error:
                problems.append(f"{block.where}: {line!r} is no shell line ({error}): a layout or synopsis is ```text")
                continue
            for program, args in commands:
                try:
                    parse(program, args)
                except typer.TyperException as error:  # click's usage errors
                    problems.append(f"{block.where}: {program} {shlex.join(args)}\n    {error.format_message()}")
                parsed += 1
    assert not problems, "\n".join(problems)
    assert parsed >= 10


FOREIGN_FLAGS = {"--backend-directory"}  # tritonserver's, named in docs/serving.md


def test_flags_the_docs_name_are_options_of_a_clipsr_command():
    """An option named in the prose (`--tile`, `--outscale`...) still exists in some clipsr command."""
    options = {"--help"}
    programs = [*_console_scripts(), "clipsr.synthbirds", *(f"benchmarks/{p.name}" for p in ROOT.glob("benchmarks/*.py"))]
    for program in programs:
        command = typer.main.get_command(typer_app(program))
        for sub in command.commands.values() if isinstance(command, TyperGroup) else [command]:
            options.update(opt for param in sub.params for opt in (*param.opts, *param.secondary_opts))
    named = {(doc.relative_to(ROOT).as_posix(), flag) for doc in _docs(*DOCS)
             for flag in re.findall(r"`(--[\w-]+)", doc.read_text())}
    assert len(named) >= 50
    assert sorted(f"{doc}: {flag}" for doc, flag in named if flag not in options | FOREIGN_FLAGS) == []


def test_every_command_in_the_readme_table_has_help():
    section = (ROOT / "README.md").read_text().split("## Command line")[1].split("\n#")[0]
    rows = re.findall(r"^\| `([^`]+)` \|", section, re.M)
    commands = [next(clipsr_commands(row), None) for row in rows]
    assert len(rows) >= 5 and None not in commands, rows
    for program, _ in commands:
        result = CliRunner().invoke(typer_app(program), ["--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, (program, result.output)


# --- architecture.md's data path names the code of each step -------------------------------------------------

PACKAGES = {"runtime": "clipsr_runtime", "export": "clipsr_export", "clipsr": "clipsr"}
CODE_REF = re.compile(r"`((?:runtime|export|clipsr)/[\w/]+)\.py: ([\w.]+)`")


def _resolve(path: str, name: str) -> object:
    package, _, rest = path.partition("/")
    module = ".".join([PACKAGES[package], *rest.split("/")]).removesuffix(".__init__")
    found = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part)
    return found


def test_architecture_data_path_names_the_code_of_every_step():
    section = ARCHITECTURE.read_text().split("## The data path of one `clipsr-run` call")[1].split("\n## ")[0]
    steps = re.split(r"\n(?=\d+\. )", section.strip())[1:]
    assert len(steps) >= 5
    for step in steps:
        assert CODE_REF.search(step), f"step {step[:40]!r}... names no code as `runtime/file.py: function` (or Class.method)"
    for path, name in CODE_REF.findall(ARCHITECTURE.read_text()):
        assert callable(_resolve(path, name)), f"{path}.py: {name} is not a function or class"
    import clipsr_runtime.backends as backends

    for info in sorted((ROOT / "runtime" / "backends").glob("*.py")):
        module = importlib.import_module(f"{backends.__name__}.{info.stem}")
        for name, value in vars(module).items():
            if isinstance(value, type) and value.__module__ == module.__name__ and name.endswith("Backend"):
                assert name in section or info.stem == "base", f"the data path does not say when {name} runs"
