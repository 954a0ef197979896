"""Read the shell commands out of docs/*.md so a test can parse and run them.

The rules, which the docs follow so that each page's ```bash blocks are one runnable
sequence:

- only fenced ```bash blocks count; a line ending in ``\\`` continues on the next line;
  ``#`` starts a comment (shell rules), and a trailing comment ``# exit N`` says the
  command is expected to exit with status N (default 0);
- ``export VAR=VALUE`` sets a variable for the rest of the page; ``VAR=VALUE cmd ...``
  sets it for one command; ``$VAR``, ``${VAR}`` and a leading ``~`` are expanded;
- ``for V in A B C; do CMD; done`` (one line) is one command per value;
- a trailing ``&`` (run in the background) is dropped and ``wait`` is skipped: the test
  runs the commands one after another.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```bash[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
FOR_LOOP = re.compile(r"^for (\w+) in ([^;]+); do (.+?);? done$")
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
EXPECTED_EXIT = re.compile(r"#.*\bexit (\d+)\b")


@dataclass(frozen=True)
class DocCommand:
    """One command of a page as the shell would run it (variables still unexpanded)."""

    page: str
    line: str
    words: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    expected_exit: int = 0
    exports: tuple[tuple[str, str], ...] = field(default=())

    @property
    def program(self) -> str:
        return self.words[0] if self.words else ""


def bash_blocks(text: str) -> list[str]:
    """The bodies of the page's ```bash fences, in order."""
    return [match.group(1) for match in FENCE.finditer(text)]


def logical_lines(block: str) -> list[str]:
    """Lines with ``\\`` continuations joined, blank and comment-only lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not _is_comment(line)]


def _is_comment(line: str) -> bool:
    return line.strip().startswith("#")


def expand_loop(line: str) -> list[str]:
    """``for f in 0 1; do cmd $f; done`` -> ``["cmd 0", "cmd 1"]`` (other lines as they are)."""
    match = FOR_LOOP.match(line.split(" #")[0].strip())
    if not match:
        return [line]
    name, values, body = match.groups()
    return [VARIABLE.sub(lambda m, v=v: v if name in m.groups() else m.group(0), body)
            for v in values.split()]  # fmt: skip


def parse_line(page: str, line: str) -> DocCommand | None:
    """One logical line -> a DocCommand (None for ``wait``)."""
    expected = EXPECTED_EXIT.search(line)
    words = shlex.split(line, comments=True)
    if words and words[-1] == "&":
        words = words[:-1]
    elif words and words[-1].endswith("&"):
        words[-1] = words[-1][:-1]
    if not words or words == ["wait"]:
        return None
    if words[0] == "export":
        pairs = tuple(_assignment(w) for w in words[1:])
        return DocCommand(page, line, ("export",), exports=pairs)
    env = []
    while words and ASSIGNMENT.match(words[0]):
        env.append(_assignment(words.pop(0)))
    code = int(expected.group(1)) if expected else 0
    return DocCommand(page, line, tuple(words), tuple(env), code)


def _assignment(word: str) -> tuple[str, str]:
    match = ASSIGNMENT.match(word)
    if not match:
        raise ValueError(f"expected VAR=VALUE, got {word!r}")
    return match.group(1), match.group(2)


def page_commands(path: Path) -> list[DocCommand]:
    """Every command of a docs page, loops expanded, in reading order."""
    commands = []
    for block in bash_blocks(path.read_text()):
        for line in logical_lines(block):
            for single in expand_loop(line):
                command = parse_line(path.name, single)
                if command is not None:
                    commands.append(command)
    return commands


def expand(word: str, env: Mapping[str, str], home: str) -> str:
    """``$VAR``/``${VAR}`` from ``env`` (unknown ones stay as written) and a leading ``~``."""
    if word == "~" or word.startswith("~/"):
        word = home + word[1:]
    return VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), word)


def doc_pages() -> list[Path]:
    """docs/*.md, sorted."""
    return sorted(DOCS_DIR.glob("*.md"))
