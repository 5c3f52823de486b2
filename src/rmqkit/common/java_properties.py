"""Java `Properties` text: the format of broker.properties, tls.properties and Spring's
application.properties.

`key=value`, `key: value` or `key value`; `#` and `!` comment lines; a backslash at the end of a
line continues it; `\\t`, `\\n`, `\\uXXXX` and other backslash escapes. Sans-IO: text in, a dict
out.
"""

from __future__ import annotations


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
