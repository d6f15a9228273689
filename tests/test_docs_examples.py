"""Docs that run: every code block of README.md and docs/*.md is tested.

The conventions (also in README.md, section "Documentation"):

* Every fenced block names its language (```python, ```text, ```bash, ```console, ...), so no
  Python block can hide from this file.
* A ```python block is **executed** as a script: in a fresh interpreter, in a temporary working
  directory (files it writes land there), with matplotlib's Agg backend. Test ids are
  ``README.md:<line of the opening fence>``; tracebacks point at the markdown file's lines.
* **Fragments** are only compiled (their syntax is still checked): a block whose first line is a
  comment ``# fragment: <why it cannot run on its own>``. Readers see that line.
* **Continuations**: a block whose first line is ``# continued from the block above`` runs after
  the earlier blocks of its chain (back to the last block not marked so), in one namespace.
* **Shown output**: a ```text block that follows a python block with only blank lines between
  them is that block's expected standard output. It is compared with what the block prints after
  collapsing every run of whitespace to one space; ``...`` matches any text (doctest's ELLIPSIS):
  use it for timings, paths and digits that vary, and to leave lines out. A fragment cannot show
  output.
* **Test files**: a python block whose first line is ``# test_<name>.py`` is written to that file
  and run with pytest (COLUMNS=100), with the options of the ``$ pytest ... test_<name>.py`` line
  of the ```console block that follows it (next fenced block; prose may come between). The
  ```text block that follows that console block (likewise) is the expected output, compared as
  above; without one, the run must pass.
* ```bash and ```console blocks are not run (in ```console, lines starting with ``$ `` are
  commands and the lines under one are its output). Every ``gradcheck ...`` command in them must
  parse with the real command line parser (``gradcheck.cli.build_parser``), every ``make X`` must
  name a Makefile target, and every ``python path/to/file.py`` (and ``python -m pytest`` test path)
  must exist. The one exception: a ``$ gradcheck ...`` command shown *with its output* in a
  ```console block is run (from the repository root) and its output compared as above; a
  ``$ echo $?`` after it, with output, is its exit status.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
FRAGMENT = re.compile(r"^#\s*fragment\b")
CONTINUED = re.compile(r"^#\s*continued from the block above\b")
TEST_FILE = re.compile(r"^#\s*(?P<name>test_\w+\.py)\s*$")
TIMEOUT = 180


@dataclass
class Block:
    path: Path
    line: int          # 1-based line of the opening fence
    lang: str
    source: str
    end: int           # 1-based line of the closing fence
    after: list = field(default_factory=list)  # lines between this block and the next fence

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.source.split("\n", 1)[0].strip()


def parse_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or (m["fence"][0] == "`" and "`" in m["info"]):  # CommonMark: not a fence
            i += 1
            continue
        fence, indent = m["fence"], len(m["indent"])
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence[0] * len(fence))
                                      and not lines[j].strip().strip(fence[0])):
            j += 1
        if j == len(lines):
            raise AssertionError(f"{path.name}:{i + 1}: unclosed code fence")
        body = "\n".join(line[indent:] if line[:indent].isspace() else line for line in lines[i + 1:j])
        blocks.append(Block(path, i + 1, m["info"].strip().split(" ")[0].lower(), body + "\n", j + 1))
        i = j + 1
    for block, nxt in zip(blocks, blocks[1:] + [None]):
        stop = nxt.line - 1 if nxt else len(lines)
        block.after = lines[block.end:stop]
    return blocks


BLOCKS = [b for path in DOC_FILES for b in parse_blocks(path)]
PYTHON = [b for b in BLOCKS if b.lang in ("python", "py", "python3")]
SHELL = [b for b in BLOCKS if b.lang in ("bash", "sh", "shell", "console")]


def _next_block(block: Block, prose: bool = False) -> Block | None:
    """The fenced block after ``block``, if any: right after it (only blank lines between them),
    or with ``prose`` the next one even with text between."""
    if not prose and any(line.strip() for line in block.after):
        return None
    same = [b for b in BLOCKS if b.path == block.path and b.line > block.line]
    return same[0] if same else None


def shown_output(block: Block) -> str | None:
    nxt = _next_block(block)
    return nxt.source if nxt is not None and nxt.lang == "text" else None


def chain(block: Block) -> list[Block]:
    """The block and the earlier blocks it continues, in order."""
    same = [b for b in PYTHON if b.path == block.path and b.line <= block.line]
    out = [same.pop()]
    while CONTINUED.match(out[0].first_line):
        assert same, f"{block.id}: continues a block above, but there is none"
        out.insert(0, same.pop())
    return out


def normalize(text: str) -> str:
    return " ".join(text.split())


def ellipsis_match(expected: str, actual: str) -> bool:
    """doctest's ELLIPSIS on whitespace-normalized text: ``...`` matches any text."""
    expected, actual = normalize(expected), normalize(actual)
    pieces = expected.split("...")
    if len(pieces) == 1:
        return expected == actual
    head, *middle, tail = pieces
    if not actual.startswith(head) or not actual.endswith(tail) or len(head) + len(tail) > len(actual):
        return False
    pos, stop = len(head), len(actual) - len(tail)
    for piece in middle:
        found = actual.find(piece, pos, stop)
        if found < 0:
            return False
        pos = found + len(piece)
    return True


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "HYPOTHESIS_")) and k not in ("COV_CORE_SOURCE", "COLUMNS")}
    # the blocks run as in a checkout: the repository root importable (``reference``)
    path = [str(ROOT), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env.update(MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=os.pathsep.join(path), **extra)
    return env


RUNNER = textwrap.dedent('''
    import contextlib, io, json, sys, traceback
    blocks = json.load(open(sys.argv[1], encoding="utf-8"))
    namespace = {"__name__": "__main__"}
    outputs = []
    for block in blocks:
        code = compile("\\n" * block["line"] + block["source"], block["file"], "exec")
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(code, namespace)
        except BaseException:
            sys.stderr.write(out.getvalue())
            traceback.print_exc()
            sys.exit(1)
        outputs.append(out.getvalue())
    json.dump(outputs, open(sys.argv[2], "w", encoding="utf-8"))
''')


def run_blocks(blocks: list[Block], tmp_path: Path) -> str:
    """Run ``blocks`` in one fresh interpreter, one namespace; return the last block's stdout."""
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "runner.py").write_text(RUNNER, encoding="utf-8")
    (tmp_path / "blocks.json").write_text(json.dumps(
        [{"file": str(b.path.relative_to(ROOT)), "line": b.line, "source": b.source} for b in blocks]),
        encoding="utf-8")
    proc = subprocess.run([sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "blocks.json"),
                           str(tmp_path / "outputs.json")],
                          cwd=work, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"{blocks[-1].id} raised:\n{proc.stderr[-6000:]}"
    return json.loads((tmp_path / "outputs.json").read_text(encoding="utf-8"))[-1]


def run_test_file(block: Block, name: str, tmp_path: Path) -> tuple[int, str, str | None]:
    """Write ``block`` to ``name`` and run pytest on it; (exit code, output, expected output)."""
    (tmp_path / name).write_text(block.source, encoding="utf-8")
    args, expected = [name], None
    console = _next_block(block, prose=True)
    commands = [c for c in console_commands(console) if c[:1] == ["pytest"]] if console else []
    if console is not None and console.lang == "console" and any(name in c for c in commands):
        assert len(commands) == 1, f"{console.id}: expected one `$ pytest ...` line"
        args = commands[0][1:]
        after = _next_block(console, prose=True)
        expected = after.source if after is not None and after.lang == "text" else None
    proc = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=tmp_path, env=_env(COLUMNS="100"),
                          capture_output=True, text=True, timeout=TIMEOUT)
    return proc.returncode, proc.stdout + proc.stderr, expected


def console_session(block: Block) -> list[tuple[list[str], str]]:
    """The commands of a shell block, split into words (comments dropped), each with the output
    shown under it (```console only)."""
    session: list[tuple[list[str], str]] = []
    for line in block.source.splitlines():
        if block.lang == "console" and not line.startswith("$ "):
            if session:
                session[-1] = (session[-1][0], session[-1][1] + line + "\n")
            continue
        words = shlex.split(line[2:] if block.lang == "console" else line, comments=True)
        if words:
            session.append((words, ""))
    return session


def console_commands(block: Block) -> list[list[str]]:
    return [words for words, _ in console_session(block)]


# -- the tests --------------------------------------------------------------------------------------
def test_blocks_found():
    assert len(PYTHON) >= 20, [b.id for b in PYTHON]
    assert any(not FRAGMENT.match(b.first_line) for b in PYTHON)


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_names_its_language(path):
    unnamed = [b.id for b in parse_blocks(path) if not b.lang]
    assert not unnamed, f"code blocks without a language (```python, ```text, ```bash, ...): {unnamed}"


@pytest.mark.parametrize("block", PYTHON, ids=lambda b: b.id)
def test_python_block(block, tmp_path):
    expected = shown_output(block)
    compile("\n" * block.line + block.source, block.id, "exec")  # a syntax error fails every kind of block
    if FRAGMENT.match(block.first_line):
        assert expected is None, f"{block.id} is a fragment, so the output shown after it is never checked"
        return
    test_file = TEST_FILE.match(block.first_line)
    if test_file:
        assert not CONTINUED.match(block.first_line)
        code, output, expected = run_test_file(block, test_file["name"], tmp_path)
        if expected is None:
            assert code == 0, f"{block.id}: pytest exited with {code}:\n{output[-6000:]}"
    else:
        output = run_blocks(chain(block), tmp_path)
    if expected is not None:
        assert ellipsis_match(expected, output), (
            f"{block.id}: the output shown in the docs differs from what the block prints "
            f"(whitespace collapsed; '...' matches anything).\n--- shown:\n{expected}\n--- printed:\n{output}")


@pytest.mark.parametrize("block", SHELL, ids=lambda b: b.id)
def test_shell_block(block):
    from gradcheck.cli import build_parser

    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    status = None
    for words, shown in console_session(block):
        if words[0] == "gradcheck" or words[0].endswith("/gradcheck"):
            parser = build_parser()
            try:
                args, extra = parser.parse_known_args(words[1:])
            except SystemExit as exc:
                pytest.fail(f"{block.id}: `{shlex.join(words)}` does not parse (exit {exc.code})")
            assert getattr(args, "command", None), f"{block.id}: `{shlex.join(words)}` names no subcommand"
            assert not extra, f"{block.id}: `{shlex.join(words)}`: unrecognized arguments {extra}"
            if shown.strip():
                proc = subprocess.run([sys.executable, "-m", "gradcheck", *words[1:]], cwd=ROOT, env=_env(),
                                      capture_output=True, text=True, timeout=TIMEOUT)
                status, output = proc.returncode, proc.stdout + proc.stderr
                assert ellipsis_match(shown, output), (
                    f"{block.id}: `{shlex.join(words)}` prints something else than the docs show "
                    f"(whitespace collapsed; '...' matches anything).\n--- shown:\n{shown}\n--- printed:\n{output}")
        elif words == ["echo", "$?"] and shown.strip():
            assert status is not None, f"{block.id}: `echo $?` shown after no command that was run"
            assert shown.strip() == str(status), f"{block.id}: exit status {status}, the docs show {shown.strip()}"
        elif words[0] == "make":
            for target in (w for w in words[1:] if "=" not in w and not w.startswith("-")):
                assert re.search(rf"^{re.escape(target)}\s*:", makefile, re.M), (
                    f"{block.id}: `make {target}`: no such target in the Makefile")
        elif re.fullmatch(r"python3?", words[0]):
            paths = [w.split("::")[0] for w in words[1:] if w.split("::")[0].endswith(".py")]
            for p in paths:
                assert (ROOT / p).exists(), f"{block.id}: `{shlex.join(words)}`: no such file {p}"


def test_ellipsis_match():
    assert ellipsis_match("a ... c", "a  b\n c")
    assert ellipsis_match("x 1.2...e-14 y", "x 1.234e-14 y")
    assert not ellipsis_match("a ... c", "a b d")
    assert not ellipsis_match("ab...ba", "aba")
    assert ellipsis_match("exact\n  text", "exact text\n")
