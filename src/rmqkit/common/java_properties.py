"""Java `Properties` text: the format of broker.properties, tls.properties and Spring's
application.properties.

`key=value`, `key: value` or `key value`; `#` and `!` comment lines; a backslash at the end of a
line continues it; `\\t`, `\\n`, `\\uXXXX` and other backslash escapes. Sans-IO: text in, a dict
out; and the text of a file with some keys set anew (`update_properties_text`).
"""

from __future__ import annotations

from collections.abc import Callable


def _unescape(s: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if (
                n == "u"
                and i + 5 < len(s) + 0
                and all(ch in "0123456789abcdefABCDEF" for ch in s[i + 2 : i + 6])
            ):
                out.append(chr(int(s[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_properties(text: str) -> dict[str, str]:
    """Java `Properties.load` semantics, for the subset real config files use."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.lstrip()
        if not pending and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending += line[:-1]
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    out: dict[str, str] = {}
    for line in logical:
        n = len(line)
        i = 0
        while i < n and line[i] not in "=: \t\f":
            i += 2 if line[i] == "\\" else 1
        i = min(i, n)
        j = i
        while j < n and line[j] in " \t\f":
            j += 1
        if j < n and line[j] in "=:":
            j += 1
        while j < n and line[j] in " \t\f":
            j += 1
        # Java keeps trailing blanks in values; an invisible trailing space in a config file is
        # a classic start-up failure, so rmqkit drops them.
        out[_unescape(line[:i])] = _unescape(line[j:].rstrip())
    return out


def escape_value(value: str) -> str:
    """`value` as a properties file holds it: what `parse_properties` reads back unchanged
    (backslashes, line breaks, tabs and a leading blank escaped)."""
    out = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    out = out.replace("\t", "\\t").replace("\f", "\\f")
    return "\\" + out if out.startswith(" ") else out


def update_properties_text(
    text: str, updates: dict[str, str], same_key: Callable[[str], str] = str
) -> str:
    """`text` with each key of `updates` set to its value: every line that sets the key (a
    line continued with backslashes counts as one) becomes `key=value`, and a key no line
    sets is added at the end. Comments, blank lines and other keys stay as they were.
    `same_key` maps a key as written to the one `updates` uses (an old spelling to the new)."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    done: set[str] = set()
    i = 0
    while i < len(lines):
        j = i  # the physical lines of one logical line: i..j
        stripped = lines[i].lstrip()
        if stripped.strip() and stripped[0] not in "#!":
            while j + 1 < len(lines) and _continues(lines[j]):
                j += 1
        group = "".join(lines[i : j + 1])
        parsed = parse_properties(group)
        key = same_key(next(iter(parsed))) if parsed else None
        if key is not None and key in updates:
            out.append(f"{key}={escape_value(updates[key])}\n")
            done.add(key)
        else:
            out.append(group)
        i = j + 1
    rest = [k for k in updates if k not in done]
    if rest and out and not out[-1].endswith("\n"):
        out.append("\n")
    out += [f"{k}={escape_value(updates[k])}\n" for k in rest]
    return "".join(out)


def _continues(line: str) -> bool:
    body = line.rstrip("\r\n")
    return (len(body) - len(body.rstrip("\\"))) % 2 == 1
