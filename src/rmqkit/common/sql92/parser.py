"""Recursive-descent parser for RocketMQ's SQL92 filter, one method per rule of its grammar.

    or_expr    := and_expr (OR and_expr)*
    and_expr   := equality (AND equality)*
    equality   := comparison ( ('=' | '<>') comparison | IS [NOT] NULL )*
    comparison := unary ( ('>' | '>=' | '<' | '<=') unary
                        | [NOT] (CONTAINS | STARTSWITH | ENDSWITH) string
                        | [NOT] BETWEEN unary AND unary
                        | [NOT] IN '(' string (',' string)* ')' )*
    unary      := ('+' | '-' | NOT) unary | primary
    primary    := string | integer | decimal | TRUE | FALSE | NULL | identifier | '(' or_expr ')'

As in RocketMQ, NOT is a prefix operator binding tighter than any comparison. Two places differ,
both refusing what RocketMQ accepts but would not apply as written: text after a complete
expression (RocketMQ silently ignores it), and `NOT x = y` and the like (RocketMQ reads it as
`(NOT x) = y`, which never matches; SQL readers expect `NOT (x = y)`, so we ask for parentheses).
"""

from __future__ import annotations

from rmqkit.common.sql92 import evaluate as ev
from rmqkit.common.sql92.lexer import SqlParseError, Tok, Token, shorten, tokenize
from rmqkit.common.sql92.values import DOUBLE_MIN_VALUE, INT_MAX, LONG_MAX, JavaLong

_ORDERING_OPS = frozenset((">", ">=", "<", "<="))
_STRING_OPS = frozenset(("CONTAINS", "STARTSWITH", "ENDSWITH"))
_AFTER_NOT = _STRING_OPS | {"BETWEEN", "IN"}


def parse(text: str) -> ev.Node:
    """The tree of a whole filter expression; raises `SqlParseError` with a position."""
    return _Parser(tokenize(text)).parse()


def integer_literal(tok: Token) -> int:
    """RocketMQ's `createFromDecimal`: an int when it fits 32 bits, else a long; `L` is dropped."""
    digits = tok.text.rstrip("lL")
    if len(digits) > 19 or int(digits) > LONG_MAX:
        raise SqlParseError(
            f"integer literal {shorten(tok.text)} is out of the long range", tok.pos
        )
    n = int(digits)
    return n if n <= INT_MAX else JavaLong(n)


def decimal_literal(tok: Token) -> float:
    """RocketMQ's `createFloat`: a finite double, refused below Double.MIN_VALUE (so 0.0 too)."""
    d = float(tok.text)
    if d == float("inf"):
        raise SqlParseError(
            f"decimal literal {shorten(tok.text)} is out of the double range", tok.pos
        )
    if d < DOUBLE_MIN_VALUE:
        raise SqlParseError(
            f"decimal literal {shorten(tok.text)} is below 4.9E-324, which RocketMQ refuses "
            "(write 0 for zero)",
            tok.pos,
        )
    return d


class _Parser:
    __slots__ = ("i", "nesting", "tokens")

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.nesting = 0

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind is not Tok.EOF:
            self.i += 1
        return tok

    def is_keyword(self, word: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind is Tok.KEYWORD and tok.text == word

    def is_op(self, op: str) -> bool:
        tok = self.peek()
        return tok.kind is Tok.OP and tok.text == op

    def expect_op(self, op: str, context: str) -> Token:
        tok = self.take()
        if tok.kind is not Tok.OP or tok.text != op:
            raise SqlParseError(f"expected '{op}' {context}, found {tok.describe()}", tok.pos)
        return tok

    def expect_string(self, context: str) -> str:
        tok = self.take()
        if tok.kind is not Tok.STRING:
            raise SqlParseError(
                f"{context} takes a string literal, found {tok.describe()}", tok.pos
            )
        return tok.text

    def enter(self, tok: Token) -> None:
        self.nesting += 1
        if self.nesting > ev.MAX_DEPTH:
            raise SqlParseError(f"expression nests deeper than {ev.MAX_DEPTH} levels", tok.pos)

    def parse(self) -> ev.Node:
        if self.peek().kind is Tok.EOF:
            raise SqlParseError("empty expression", 0)
        node = self.or_expr()
        tok = self.peek()
        if tok.kind is not Tok.EOF:
            if tok.kind is Tok.OP and tok.text == ")":
                raise SqlParseError("')' without a matching '('", tok.pos)
            raise SqlParseError(f"unexpected {tok.describe()} after a complete condition", tok.pos)
        return node

    def or_expr(self) -> ev.Node:
        terms = [self.and_expr()]
        while self.is_keyword("OR"):
            self.take()
            terms.append(self.and_expr())
        return terms[0] if len(terms) == 1 else ev.logical_or(terms)

    def and_expr(self) -> ev.Node:
        terms = [self.equality()]
        while self.is_keyword("AND"):
            self.take()
            terms.append(self.equality())
        return terms[0] if len(terms) == 1 else ev.logical_and(terms)

    def equality(self) -> ev.Node:
        left = self.comparison()
        while True:
            tok = self.peek()
            if tok.kind is Tok.OP and tok.text in ("=", "<>"):
                self.refuse_bare_not(left, tok.text, tok.pos)
                self.take()
                right = self.comparison()
                if tok.text == "=":
                    left = ev.equal(left, right, tok.pos)
                else:
                    left = ev.not_equal(left, right, tok.pos)
            elif self.is_keyword("IS"):
                self.refuse_bare_not(left, "IS", tok.pos)
                self.take()
                negated = self.is_keyword("NOT")
                if negated:
                    self.take()
                after = self.take()
                if after.kind is not Tok.KEYWORD or after.text != "NULL":
                    words = "IS NOT" if negated else "IS"
                    raise SqlParseError(
                        f"expected NULL after {words}, found {after.describe()}", after.pos
                    )
                left = ev.is_null(left, negated, tok.pos)
            else:
                return left

    def comparison(self) -> ev.Node:
        left = self.unary()
        while True:
            tok = self.peek()
            negated = False
            if tok.kind is Tok.OP and tok.text in _ORDERING_OPS:
                self.refuse_bare_not(left, tok.text, tok.pos)
                self.take()
                left = ev.ordering(tok.text, left, self.unary(), tok.pos)
                continue
            if tok.kind is not Tok.KEYWORD:
                return left
            word = tok.text
            if word == "NOT":
                after = self.peek(1)
                if after.kind is not Tok.KEYWORD or after.text not in _AFTER_NOT:
                    return left
                word = after.text
                negated = True
                self.refuse_bare_not(left, f"NOT {word}", tok.pos)
                self.take()
            elif word in _AFTER_NOT:
                self.refuse_bare_not(left, word, tok.pos)
            else:
                return left
            self.take()
            if word in _STRING_OPS:
                left = ev.string_test(word, left, self.expect_string(word), negated, tok.pos)
            elif word == "BETWEEN":
                low = self.unary()
                if not self.is_keyword("AND"):
                    bad = self.peek()
                    raise SqlParseError(f"expected AND in BETWEEN, found {bad.describe()}", bad.pos)
                self.take()
                left = ev.between(left, low, self.unary(), negated, tok.pos)
            else:
                self.expect_op("(", "after IN")
                values = [self.expect_string("IN")]
                while self.is_op(","):
                    self.take()
                    values.append(self.expect_string("IN"))
                self.expect_op(")", "to close the IN list")
                left = ev.in_list(left, values, negated, tok.pos)

    def refuse_bare_not(self, left: ev.Node, op: str, pos: int) -> None:
        if left.bare_not:
            raise SqlParseError(
                f"ambiguous NOT before {op}: RocketMQ applies NOT to the operand alone, as in "
                f"(NOT x) {op} ...; write NOT (x {op} ...) to negate the whole comparison",
                pos,
            )

    def unary(self) -> ev.Node:
        tok = self.peek()
        if (tok.kind is Tok.OP and tok.text in ("+", "-")) or self.is_keyword("NOT"):
            self.enter(tok)
            self.take()
            operand = self.unary()
            self.nesting -= 1
            if tok.text == "+":
                return operand
            if tok.text == "-":
                return ev.negation(operand, tok.pos)
            node = ev.logical_not(operand, tok.pos)
            node.bare_not = True
            return node
        return self.primary()

    def primary(self) -> ev.Node:
        tok = self.take()
        kind = tok.kind
        if kind is Tok.ID:
            return ev.prop(tok.text, tok.pos)
        if kind is Tok.STRING:
            return ev.constant(tok.text, tok.pos)
        if kind is Tok.DECIMAL:
            return ev.constant(integer_literal(tok), tok.pos)
        if kind is Tok.FLOAT:
            return ev.constant(decimal_literal(tok), tok.pos)
        if kind is Tok.KEYWORD and tok.text in ("TRUE", "FALSE", "NULL"):
            value = {"TRUE": True, "FALSE": False, "NULL": None}[tok.text]
            return ev.constant(value, tok.pos)
        if kind is Tok.OP and tok.text == "(":
            self.enter(tok)
            node = self.or_expr()
            close = self.take()
            if close.kind is not Tok.OP or close.text != ")":
                raise SqlParseError(
                    f"expected ')' to close the '(' at position {tok.pos}, "
                    f"found {close.describe()}",
                    close.pos,
                )
            self.nesting -= 1
            node.bare_not = False
            return node
        raise SqlParseError(f"expected an operand, found {tok.describe()}", tok.pos)
