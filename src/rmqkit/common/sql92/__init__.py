"""RocketMQ's SQL92 message filter (`ExpressionType.SQL92`): parser and evaluator, no I/O.

`compile_expression("a > 5 AND TAGS IN ('x', 'y')")` gives an `Expression` whose `evaluate(props)`
says whether a message with those properties matches, with RocketMQ's semantics: properties are
strings, parsed as numbers when compared with numbers; NULL (a missing property) is unknown;
only TRUE matches. Modules: lexer (tokens, `SqlParseError`), parser (grammar and its checks),
evaluate (nodes compiled to closures), values (Java conversions and comparison).
"""

from __future__ import annotations

from rmqkit.common.sql92.evaluate import MAX_DEPTH, Expression
from rmqkit.common.sql92.lexer import MAX_EXPRESSION_CHARS, SqlParseError
from rmqkit.common.sql92.parser import parse

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPRESSION_CHARS",
    "Expression",
    "SqlParseError",
    "compile_expression",
]


def compile_expression(text: str) -> Expression:
    """Compile a filter once; evaluate it for each message.

    Raises:
        SqlParseError: the text is not a valid filter; `reason` and `position` (a 0-based
            character offset) say what and where.
    """
    try:
        root = parse(text)
    except RecursionError:  # a guard behind MAX_DEPTH, for callers already deep in the stack
        raise SqlParseError("expression nests too deeply", 0) from None
    return Expression(text, root)
