"""Tokens of RocketMQ's SQL92 filter language (the token section of its `SelectorParser.jj`).

Longest match wins and keywords are case-insensitive, as in the JavaCC grammar: `nothing` is
an identifier, `NoT` is the keyword. Identifiers are ASCII letters, digits, `_` and `$` (no `.`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

MAX_EXPRESSION_CHARS = 64 * 1024
"""Longer filter texts are refused before lexing (RocketMQ has no cap; a subscription is small)."""


class SqlParseError(ValueError):
    """A filter expression that does not compile; `position` is a 0-based character offset."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(f"{reason} (at position {position})")
        self.reason = reason
        self.position = position


class Tok(Enum):
    """Token kinds."""

    EOF = "end of input"
    ID = "identifier"
    STRING = "string literal"
    DECIMAL = "integer literal"
    FLOAT = "decimal literal"
    KEYWORD = "keyword"
    OP = "operator"


KEYWORDS = frozenset(
    (
        "NOT",
        "AND",
        "OR",
        "BETWEEN",
        "IN",
        "TRUE",
        "FALSE",
        "NULL",
        "IS",
        "CONTAINS",
        "STARTSWITH",
        "ENDSWITH",
    )
)


@dataclass(slots=True, frozen=True)
class Token:
    """A token: kind, text (keywords upper-cased, strings unquoted) and start offset."""

    kind: Tok
    text: str
    pos: int

    def describe(self) -> str:
        """How an error message names this token."""
        if self.kind is Tok.EOF:
            return "end of input"
        if self.kind is Tok.KEYWORD:
            return f"keyword {self.text}"
        if self.kind is Tok.STRING:
            return "string literal " + quote(self.text)
        if self.kind is Tok.OP:
            return f"'{self.text}'"
        return f"{self.kind.value} {shorten(self.text)}"


def shorten(s: str) -> str:
    """`s` cut to 40 characters for an error message."""
    return s if len(s) <= 40 else s[:37] + "..."


def quote(s: str) -> str:
    """A string as an SQL literal for an error message, shortened past 40 characters."""
    return "'" + shorten(s).replace("'", "''") + "'"


# Tried in order at each position; the order gives JavaCC's longest match: a float literal is
# always longer than the integer it starts with, and IDs swallow keywords they begin with.
_SKIP = re.compile(
    r"[ \t\n\r\f]+"
    # `--` runs to the line end. RocketMQ needs a line end after it; at the end of the text we
    # accept it too, since RocketMQ ignores whatever follows a complete expression anyway.
    r"|--[^\n\r]*(?:\r\n|\n|\r|\Z)"
    r"|/\*[^*]*\*+(?:[^/*][^*]*\*+)*/"
)
_FLOAT = re.compile(
    r"[0-9]+\.[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+"
)
_DECIMAL = re.compile(r"0|[1-9][0-9]*[lL]?")
_ID = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_STRING = re.compile(r"'((?:''|[^'])*)'")
_OPS = ("<>", "<=", ">=", "=", "<", ">", "(", ")", ",", "+", "-")
_HINTS = {
    "!": "use <> for 'not equal'",
    '"': "string literals take single quotes",
    "&": "use AND",
    "|": "use OR",
    ".": "property names may not contain '.'",
}


def tokenize(text: str) -> list[Token]:
    """All tokens of `text`, ending with an EOF token; raises `SqlParseError` on a lexical error."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise SqlParseError(
            f"expression is {len(text)} characters long, the limit is {MAX_EXPRESSION_CHARS}",
            MAX_EXPRESSION_CHARS,
        )
    out: list[Token] = []
    pos = 0
    end = len(text)
    while pos < end:
        m = _SKIP.match(text, pos)
        if m is not None:
            pos = m.end()
            continue
        c = text[pos]
        if c == "'":
            m = _STRING.match(text, pos)
            if m is None:
                raise SqlParseError("unterminated string literal", pos)
            out.append(Token(Tok.STRING, m.group(1).replace("''", "'"), pos))
        elif (m := _FLOAT.match(text, pos)) is not None:
            out.append(Token(Tok.FLOAT, m.group(), pos))
        elif (m := _DECIMAL.match(text, pos)) is not None:
            out.append(Token(Tok.DECIMAL, m.group(), pos))
        elif (m := _ID.match(text, pos)) is not None:
            word = m.group()
            upper = word.upper()
            if upper in KEYWORDS:
                out.append(Token(Tok.KEYWORD, upper, pos))
            else:
                out.append(Token(Tok.ID, word, pos))
        else:
            op = next((o for o in _OPS if text.startswith(o, pos)), None)
            if op is None:
                if text.startswith("/*", pos):
                    raise SqlParseError("unterminated comment", pos)
                hint = _HINTS.get(c)
                reason = f"unexpected character {c!r}" + (f" ({hint})" if hint else "")
                raise SqlParseError(reason, pos)
            out.append(Token(Tok.OP, op, pos))
            pos += len(op)
            continue
        pos = m.end()
    out.append(Token(Tok.EOF, "", end))
    return out
