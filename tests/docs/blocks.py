"""Fenced blocks of the documentation, and the doc-test markers that say what to do with them.

A marker is an HTML comment on the line(s) right before a fence (invisible when rendered):

- `<!-- doc-test: skip (why) -->`: never run this block;
- `<!-- doc-test: dry-run (why) -->`: run `make` commands as `make -n`, others with `--help`;
- `<!-- doc-test: python -->`: run this Python block as a program;
- `<!-- doc-test: file NAME -->`: write this block to NAME in the workspace of every block of
  that document (it is then not run, unless it is also marked `python`).

Blocks fenced `bash`, `sh`, `shell` or `console` are commands and always run unless marked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMAND_LANGS = frozenset({"bash", "sh", "shell", "console"})
MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<body>.*?)\s*-->\s*$")
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<info>[^`]*)$")
_WITH_REASON = re.compile(r"^(?P<kind>skip|dry-run)\s+\((?P<reason>[^)]+)\)$")
_FILE = re.compile(r"^file\s+(?P<name>[\w.\-/]+)$")
_HEREDOC = re.compile(r"<<-?\s*(?P<q>['\"]?)(?P<word>\w+)(?P=q)")


class MarkerError(ValueError):
    """A doc-test marker that is malformed or not followed by a fence."""


@dataclass(frozen=True)
class Marker:
    """One doc-test marker: its kind (skip, dry-run, python, file) and argument."""

    kind: str
    arg: str = ""


@dataclass(frozen=True)
class DocBlock:
    """A fenced block: where it is, its language, its text and its markers."""

    path: str
    line: int
    lang: str
    text: str
    markers: tuple[Marker, ...] = field(default=())

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"

    def has(self, kind: str) -> bool:
        return any(m.kind == kind for m in self.markers)

    def arg(self, kind: str) -> str | None:
        return next((m.arg for m in self.markers if m.kind == kind), None)

    @property
    def is_commands(self) -> bool:
        return self.lang in COMMAND_LANGS

    @property
    def runs(self) -> bool:
        """Whether the doc test runs it (commands not skipped, or marked Python programs)."""
        if self.has("skip"):
            return False
        if self.lang == "python" and self.has("python"):
            return True
        return self.is_commands and not self.has("file")


def parse_marker(body: str) -> Marker:
    """The marker in `<!-- doc-test: BODY -->`.

    Raises:
        MarkerError: an unknown kind, or skip/dry-run without a reason in parentheses.
    """
    if body == "python":
        return Marker("python")
    m = _WITH_REASON.match(body)
    if m:
        return Marker(m["kind"], m["reason"])
    m = _FILE.match(body)
    if m:
        return Marker("file", m["name"])
    raise MarkerError(
        f"unknown doc-test marker {body!r}: use 'skip (why)', 'dry-run (why)', 'python' or "
        "'file NAME'"
    )


def extract_blocks(text: str, path: str) -> list[DocBlock]:
    """Every fenced block of a Markdown text, with the markers right above it.

    Raises:
        MarkerError: a bad marker, or one that is not directly followed by a fence.
    """
    lines = text.splitlines()
    blocks: list[DocBlock] = []
    pending: list[Marker] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = MARKER.match(line)
        if marker:
            pending.append(parse_marker(marker["body"]))
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence is None:
            if pending:
                raise MarkerError(f"{path}:{i + 1}: a doc-test marker must be right above a fence")
            i += 1
            continue
        indent, mark = fence["indent"], fence["fence"]
        lang = (fence["info"].split() or [""])[0].lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not _closes(lines[j], mark):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        text_ = "\n".join(body) + "\n"
        blocks.append(DocBlock(path, i + 1, lang, text_, tuple(pending)))
        pending = []
        i = j + 1
    if pending:
        raise MarkerError(f"{path}: a doc-test marker at the end has no fence after it")
    return blocks


def _closes(line: str, mark: str) -> bool:
    s = line.strip()
    return len(s) >= len(mark) and set(s) == {mark[0]}


def doc_files() -> list[Path]:
    """The documents whose commands are tested: docs/*.md, README.md and the examples' READMEs."""
    return [
        *sorted((REPO / "docs").glob("*.md")),
        REPO / "README.md",
        *sorted((REPO / "examples").glob("*/README.md")),
    ]


def all_blocks() -> list[DocBlock]:
    out: list[DocBlock] = []
    for p in doc_files():
        out += extract_blocks(p.read_text(encoding="utf-8"), str(p.relative_to(REPO)))
    return out


def commands(block: DocBlock) -> list[str]:
    """The commands of a command block, one string each.

    Continuation lines (`\\`) are joined, a heredoc stays with its command, comment-only and
    blank lines are left out. In a `console` block only lines after a `$ ` prompt are commands.
    """
    raw = block.text.splitlines()
    if block.lang == "console":
        picked: list[str] = []
        cont = False
        for line in raw:
            s = line.strip()
            if s.startswith("$ "):
                picked.append(s[2:])
                cont = s.endswith("\\")
            elif cont:
                picked.append(line)
                cont = s.endswith("\\")
        raw = picked
    out: list[str] = []
    i = 0
    while i < len(raw):
        line = raw[i]
        i += 1
        if not line.strip() or line.strip().startswith("#"):
            continue
        cmd = line
        while cmd.rstrip().endswith("\\") and i < len(raw):
            cmd = cmd.rstrip()[:-1].rstrip() + " " + raw[i].strip()
            i += 1
        here = _HEREDOC.search(cmd)
        if here:
            word, strip_tabs = here["word"], "<<-" in cmd
            body = []
            while i < len(raw):
                end = raw[i].lstrip("\t") if strip_tabs else raw[i]
                body.append(raw[i])
                i += 1
                if end == word:
                    break
            cmd = "\n".join([cmd, *body])
        out.append(cmd)
    return out
