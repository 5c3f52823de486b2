"""The doc-test machinery itself: fences and markers, command splitting, port rewriting, and the
way servers and `make` are run; plus checks over every document that need no process."""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import pytest

from tests.docs.blocks import (
    DocBlock,
    Marker,
    MarkerError,
    all_blocks,
    commands,
    doc_files,
    extract_blocks,
    parse_marker,
)
from tests.docs.runner import PortMap, Workspace, dry_run, make_fixed, server_for

DOC = """\
# Title

<!-- doc-test: skip (it deletes things) -->
```bash
rm -rf /
```

<!-- doc-test: file app.py -->
<!-- doc-test: python -->
```python
print("hi")
```

- a list item:

  ```sh
  echo indented
  ```

````markdown
```bash
echo not a block of its own
```
````
"""


def test_blocks_are_found_with_the_markers_right_above_them() -> None:
    blocks = extract_blocks(DOC, "d.md")
    assert [(b.line, b.lang) for b in blocks] == [(4, "bash"), (10, "python"), (16, "sh"),
                                                  (20, "markdown")]  # fmt: skip
    skip, program, indented, nested = blocks
    assert skip.markers == (Marker("skip", "it deletes things"),) and not skip.runs
    assert program.arg("file") == "app.py" and program.has("python") and program.runs
    assert indented.text == "echo indented\n" and indented.runs
    assert "not a block of its own" in nested.text and not nested.runs


def test_a_file_block_is_written_not_run() -> None:
    (block,) = extract_blocks("<!-- doc-test: file run.sh -->\n```bash\necho x\n```\n", "d.md")
    assert block.arg("file") == "run.sh" and not block.runs


@pytest.mark.parametrize("body", ["skip", "skip()", "dry-run", "file", "python3", "run it"])
def test_bad_markers_are_refused(body: str) -> None:
    with pytest.raises(MarkerError):
        parse_marker(body)


def test_a_marker_must_sit_right_above_a_fence() -> None:
    with pytest.raises(MarkerError, match="right above a fence"):
        extract_blocks("<!-- doc-test: python -->\n\ntext\n```python\n```\n", "d.md")
    with pytest.raises(MarkerError, match="at the end"):
        extract_blocks("text\n<!-- doc-test: python -->\n", "d.md")


def _block(text: str, lang: str = "bash") -> DocBlock:
    return DocBlock("d.md", 1, lang, text)


def test_commands_join_continuations_keep_heredocs_and_drop_comments() -> None:
    text = (
        "# a comment\n"
        "make serve   # terminal 1\n"
        "\n"
        "rmqkit serve \\\n"
        "  --port 1\n"
        "cat > f.txt <<'EOF'\n"
        "a line\n"
        "# not a comment here\n"
        "EOF\n"
        "echo done\n"
    )
    assert commands(_block(text)) == [
        "make serve   # terminal 1",
        "rmqkit serve --port 1",
        "cat > f.txt <<'EOF'\na line\n# not a comment here\nEOF",
        "echo done",
    ]


def test_console_blocks_take_only_prompted_lines() -> None:
    text = "$ echo one \\\n  two\none two\n$ ls\nfile\n"
    assert commands(_block(text, "console")) == ["echo one two", "ls"]


def test_ports_are_rewritten_consistently_and_only_in_port_contexts() -> None:
    free = itertools.count(40_000)
    ports = PortMap(allocate=lambda: next(free))
    text = (
        "namesrvAddr=127.0.0.1:9876;localhost:9877\nlistenPort=10911\n"
        "rmqkit namesrv --port 9876\nRMQKIT_LISTEN_PORT=10921 x\nfileReservedTime=9876\n"
        "--port 80 and 0.0.0.0:0\n"
    )
    assert ports.rewrite(text) == (
        "namesrvAddr=127.0.0.1:40000;localhost:40001\nlistenPort=40002\n"
        "rmqkit namesrv --port 40000\nRMQKIT_LISTEN_PORT=40003 x\nfileReservedTime=9876\n"
        "--port 80 and 0.0.0.0:0\n"
    )


def test_make_never_reinstalls_and_expensive_commands_only_show_themselves() -> None:
    assert make_fixed("make demo") == "make -o .venv/.installed-stamp demo"
    assert make_fixed("X=1 make demo") == "X=1 make -o .venv/.installed-stamp demo"
    assert make_fixed("echo make") == "echo make"
    assert dry_run("make bench  # 15 minutes") == "make -o .venv/.installed-stamp -n bench"
    assert dry_run("python bench.py --quick   # a minute") == "python bench.py --quick --help"


def test_servers_get_their_default_ports_made_explicit(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws", {"b.properties": "listenPort=10911\n"})
    serve = server_for(".venv/bin/rmqkit serve", ws)
    assert serve is not None and serve.kind == "serve"
    p = ws.ports.ports
    assert serve.command == f".venv/bin/rmqkit serve --port {p[10911]} --namesrv-port {p[9876]}"
    with_file = server_for("rmqkit serve --config b.properties  # comment", ws)
    assert with_file is not None and with_file.command == "rmqkit serve --config b.properties"
    namesrv = server_for("rmqkit namesrv", ws)
    assert namesrv is not None and namesrv.command == f"rmqkit namesrv --port {p[9876]}"
    run = server_for("ROCKETMQ_NAME_SERVER=127.0.0.1:1 rmqkit run app:app", ws)
    assert run is not None and run.command == "rmqkit -v run app:app"
    assert run.env == {"ROCKETMQ_NAME_SERVER": "127.0.0.1:1"}
    assert server_for("rmqkit config explain", ws) is None
    assert server_for("echo rmqkit serve", ws) is None


def test_the_workspace_is_a_checkout_with_the_documents_files(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws", {"conf/a.properties": "namesrvAddr=127.0.0.1:9876\n"})
    assert (ws.root / "Makefile").is_symlink() and (ws.root / ".venv" / "bin").is_dir()
    written = (ws.root / "conf" / "a.properties").read_text()
    assert written == f"namesrvAddr=127.0.0.1:{ws.ports.ports[9876]}\n"
    assert not any(k.startswith(("ROCKETMQ_", "RMQKIT_")) for k in ws.env)


# -- checks over every document ------------------------------------------------------------------

BLOCKS = all_blocks()


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "python"], ids=lambda b: b.id)
def test_every_python_example_compiles(block: DocBlock) -> None:
    compile(block.text, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_the_new_guides_exist_and_their_examples_run() -> None:
    runnable = {b.path for b in BLOCKS if b.runs}
    assert {"docs/index.md", "docs/starter.md", "docs/operations.md"} <= runnable
    programs = [b for b in BLOCKS if b.path == "docs/starter.md" and b.has("python")]
    assert len(programs) >= 6


def test_skips_stay_rare() -> None:
    skipped = [b.id for b in BLOCKS if b.has("skip")]
    assert len(skipped) <= 3, skipped


def test_file_names_are_unique_per_document() -> None:
    seen: set[tuple[str, str]] = set()
    for b in BLOCKS:
        name = b.arg("file")
        if name is not None:
            assert (b.path, name) not in seen, f"{b.id}: {name} is declared twice"
            seen.add((b.path, name))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {_slug(m[1]) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def test_links_between_documents_point_at_files_and_headings_that_exist() -> None:
    broken = []
    for doc in doc_files():
        text = doc.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            if not path.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
