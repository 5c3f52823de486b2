"""Expression nodes of RocketMQ's SQL92 filter, each compiled to a small closure when built.

The factories mirror RocketMQ's `ComparisonExpression.create*`, `LogicExpression.create*` and
`UnaryExpression.create*`, including the checks they make while parsing. A closure returns
True, False or None (SQL's unknown); an operand closure returns a Java-like value (see values.py).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from enum import Enum

from rmqkit.common.sql92.lexer import SqlParseError, quote
from rmqkit.common.sql92.values import (
    EvalError,
    JavaLong,
    JavaValue,
    compare_doubles,
    java_compare,
    java_double,
    java_int,
    java_long,
    negate,
)

Props = Mapping[str, str]
Evaluator = Callable[[Props], JavaValue]

MAX_DEPTH = 64
"""Deepest nesting allowed, of parentheses and prefix operators or of the built tree: recursion
in the parser and in evaluation stays far below Python's limit."""


class Kind(Enum):
    """What a node is, as far as RocketMQ's parse-time checks care."""

    CONST = "constant"
    PROP = "property"
    NEGATE = "negation"
    BOOL = "boolean"
    AND = "AND"
    OR = "OR"


class Node:
    """A parsed (sub)expression with its evaluator; `pos` is where its text starts, `at` where
    its operator is (errors point there)."""

    __slots__ = ("bare_not", "depth", "fn", "kind", "name", "operands", "pos", "value")

    def __init__(
        self,
        kind: Kind,
        fn: Evaluator,
        pos: int,
        children: Sequence[Node] = (),
        *,
        value: JavaValue = None,
        name: str = "",
        at: int | None = None,
    ) -> None:
        self.kind = kind
        self.fn = fn
        self.pos = pos
        self.depth: int = 1 + max((c.depth for c in children), default=0)
        if self.depth > MAX_DEPTH:
            where = pos if at is None else at
            raise SqlParseError(f"expression nests deeper than {MAX_DEPTH} levels", where)
        self.value = value
        self.name = name
        self.operands: tuple[Node, ...] = tuple(children) if kind in (Kind.AND, Kind.OR) else ()
        self.bare_not = False
        """Set by the parser on `NOT x` written without parentheses around it."""

    @property
    def is_boolean(self) -> bool:
        """RocketMQ's `instanceof BooleanExpression`: TRUE, FALSE, NULL and every predicate."""
        if self.kind is Kind.CONST:
            return self.value is None or isinstance(self.value, bool)
        return self.kind in (Kind.BOOL, Kind.AND, Kind.OR)

    def describe(self) -> str:
        """How an error message names this operand."""
        if self.kind is Kind.PROP:
            return f"property {self.name}"
        if self.kind is Kind.CONST:
            v = self.value
            if v is None or isinstance(v, bool):
                return {None: "NULL", True: "TRUE", False: "FALSE"}[v]
            if isinstance(v, str):
                return quote(v)
            return str(v)
        return f"a {self.kind.value} expression"


def constant(value: JavaValue, pos: int) -> Node:
    def fn(props: Props) -> JavaValue:
        return value

    return Node(Kind.CONST, fn, pos, value=value)


def prop(name: str, pos: int) -> Node:
    def fn(props: Props) -> JavaValue:
        return props.get(name)

    return Node(Kind.PROP, fn, pos, name=name)


def negation(operand: Node, pos: int) -> Node:
    """`-x`: negates numbers; anything else, a property's string value included, is NULL."""
    f = operand.fn

    def fn(props: Props) -> JavaValue:
        return negate(f(props))

    return Node(Kind.NEGATE, fn, pos, (operand,))


def as_boolean(node: Node) -> Node:
    """RocketMQ's `asBooleanExpression`: predicates pass, a property is cast, the rest refused.

    The cast of a property is FALSE for any value (a property is a string, never a Boolean) and
    NULL when the property is missing.
    """
    if node.is_boolean:
        return node
    if node.kind is not Kind.PROP:
        raise SqlParseError(f"{node.describe()} is not a condition", node.pos)
    name = node.name

    def fn(props: Props) -> JavaValue:
        return None if props.get(name) is None else False

    return Node(Kind.BOOL, fn, node.pos, (node,))


def logical_not(operand: Node, pos: int, at: int | None = None) -> Node:
    """`NOT x`: swaps TRUE and FALSE, keeps NULL."""
    f = as_boolean(operand).fn

    def fn(props: Props) -> JavaValue:
        v = f(props)
        return None if v is None else not v

    return Node(Kind.BOOL, fn, pos, (operand,), at=at)


def logical_and(operands: Sequence[Node]) -> Node:
    """AND of two or more conditions, left to right: FALSE wins, else NULL, else TRUE.

    Flattened rather than nested, which evaluates in the same order with the same result (the
    3-valued AND is associative) and keeps long chains from nesting deep.
    """
    flat = _flatten(Kind.AND, operands)
    fns = tuple(o.fn for o in flat)
    if len(fns) == 2:
        f, g = fns

        def fn(props: Props) -> JavaValue:
            a = f(props)
            if a is False:
                return False
            b = g(props)
            if b is False:
                return False
            return None if a is None or b is None else True

    else:

        def fn(props: Props) -> JavaValue:
            unknown = False
            for f in fns:
                v = f(props)
                if v is False:
                    return False
                if v is None:
                    unknown = True
            return None if unknown else True

    return Node(Kind.AND, fn, flat[0].pos, flat)


def logical_or(operands: Sequence[Node]) -> Node:
    """OR of two or more conditions, left to right: TRUE wins, else NULL, else FALSE."""
    flat = _flatten(Kind.OR, operands)
    fns = tuple(o.fn for o in flat)
    if len(fns) == 2:
        f, g = fns

        def fn(props: Props) -> JavaValue:
            a = f(props)
            if a is True:
                return True
            b = g(props)
            if b is True:
                return True
            return None if a is None or b is None else False

    else:

        def fn(props: Props) -> JavaValue:
            unknown = False
            for f in fns:
                v = f(props)
                if v is True:
                    return True
                if v is None:
                    unknown = True
            return None if unknown else False

    return Node(Kind.OR, fn, flat[0].pos, flat)


def _flatten(kind: Kind, operands: Sequence[Node]) -> list[Node]:
    """The conditions of an AND (OR) chain, with nested ANDs (ORs) spliced in."""
    out: list[Node] = []
    for node in operands:
        if node.kind is kind:
            out.extend(node.operands)
        else:
            out.append(as_boolean(node))
    return out


def _check_equatable(node: Node, op: str, pos: int) -> None:
    if node.kind is Kind.CONST and node.value is None:
        raise SqlParseError(f"NULL cannot be compared with '{op}' (use IS NULL)", pos)


def _check_orderable(node: Node, op: str, pos: int) -> None:
    """RocketMQ's `checkLessThanOperand`: only numbers, properties and negations order."""
    if node.kind is Kind.CONST:
        if isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return
    elif not node.is_boolean:
        return
    raise SqlParseError(f"{node.describe()} cannot be compared with '{op}'", pos)


def equal(left: Node, right: Node, pos: int, op: str = "=") -> Node:
    """`l = r`. A missing left side gives NULL, but a missing right side gives FALSE, and both
    missing give TRUE: RocketMQ's `doCreateEqual`, asymmetric as it is."""
    _check_equatable(left, op, pos)
    _check_equatable(right, op, pos)
    if left.kind is Kind.CONST and right.kind is Kind.CONST and left.is_boolean:
        if not right.is_boolean:
            raise SqlParseError(
                f"{left.describe()} cannot be compared with {right.describe()}", pos
            )
    return Node(Kind.BOOL, _equal_fn(left, right), left.pos, (left, right), at=pos)


def _equal_fn(left: Node, right: Node) -> Evaluator:
    if left.kind is Kind.PROP and right.kind is Kind.CONST:
        name, c = left.name, right.value
        if isinstance(c, str):
            text = c

            def prop_eq_string(props: Props) -> JavaValue:
                v = props.get(name)
                return None if v is None else v == text

            return prop_eq_string
        if type(c) is int:
            n = c

            def prop_eq_int(props: Props) -> JavaValue:
                v = props.get(name)
                return None if v is None else java_int(v) == n

            return prop_eq_int

        def prop_eq(props: Props) -> JavaValue:
            v = props.get(name)
            return None if v is None else java_compare(v, c) == 0

        return prop_eq
    lf, rf = left.fn, right.fn

    def fn(props: Props) -> JavaValue:
        lv = lf(props)
        rv = rf(props)
        if lv is None:
            return True if rv is None else None
        if rv is None:
            return False
        return java_compare(lv, rv) == 0

    return fn


def not_equal(left: Node, right: Node, pos: int) -> Node:
    """`l <> r`: NOT of `l = r`, with its asymmetry (`'x' <> a` is TRUE when a is missing)."""
    return logical_not(equal(left, right, pos, "<>"), left.pos, at=pos)


def is_null(operand: Node, negated: bool, pos: int) -> Node:
    """`x IS [NOT] NULL`: never NULL itself."""
    if operand.kind is Kind.PROP:
        name = operand.name

        def fn(props: Props) -> JavaValue:
            return (props.get(name) is None) is not negated

    else:
        f = operand.fn

        def fn(props: Props) -> JavaValue:
            return (f(props) is None) is not negated

    return Node(Kind.BOOL, fn, operand.pos, (operand,), at=pos)


_ORDER: dict[str, Callable[[int, int], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def ordering(op: str, left: Node, right: Node, pos: int) -> Node:
    """`l > r` and the like, over numbers; a property's string is parsed as the other side's
    number type, two strings are both parsed as doubles, and a string that does not parse fails
    the evaluation (RocketMQ throws; the message is not delivered)."""
    _check_orderable(left, op, pos)
    _check_orderable(right, op, pos)
    fn = _ordering_fn(_ORDER[op], left, right)
    return Node(Kind.BOOL, fn, left.pos, (left, right), at=pos)


def _ordering_fn(test: Callable[[int, int], bool], left: Node, right: Node) -> Evaluator:
    c = right.value
    if left.kind is Kind.PROP and right.kind is Kind.CONST:
        name = left.name
        if isinstance(c, int) and not isinstance(c, bool):
            n = c
            parse = java_long if isinstance(c, JavaLong) else java_int

            def prop_vs_int(props: Props) -> JavaValue:
                v = props.get(name)
                return None if v is None else test(parse(v), n)

            return prop_vs_int
        if isinstance(c, float):
            d = c

            def prop_vs_double(props: Props) -> JavaValue:
                v = props.get(name)
                return None if v is None else test(compare_doubles(java_double(v), d), 0)

            return prop_vs_double
    lf, rf = left.fn, right.fn

    def fn(props: Props) -> JavaValue:
        lv = lf(props)
        if lv is None:
            return None
        rv = rf(props)
        if rv is None:
            return None
        if isinstance(lv, str) and isinstance(rv, str):
            return test(compare_doubles(java_double(lv), java_double(rv)), 0)
        return test(java_compare(lv, rv), 0)

    return fn


def between(value: Node, low: Node, high: Node, negated: bool, pos: int) -> Node:
    """`v [NOT] BETWEEN lo AND hi`: `v >= lo AND v <= hi`, or `v < lo OR v > hi` when negated.

    As RocketMQ, BETWEEN (not NOT BETWEEN) with two literal bounds refuses NULL bounds and a
    lower bound above the upper one.
    """
    if negated:
        return logical_or([ordering("<", value, low, pos), ordering(">", value, high, pos)])
    if low.kind is Kind.CONST and high.kind is Kind.CONST:
        if low.value is None or high.value is None:
            raise SqlParseError("BETWEEN bounds cannot be NULL", pos)
        try:
            backwards = java_compare(high.value, low.value) < 0
        except EvalError:
            backwards = False  # the ordering checks below refuse such bounds
        if backwards:
            raise SqlParseError(
                f"BETWEEN lower bound {low.describe()} is above upper bound {high.describe()}",
                pos,
            )
    return logical_and([ordering(">=", value, low, pos), ordering("<=", value, high, pos)])


def in_list(operand: Node, values: Sequence[str], negated: bool, pos: int) -> Node:
    """`p [NOT] IN ('a', ...)`: a property only; NULL when it is missing."""
    if operand.kind is not Kind.PROP:
        raise SqlParseError(f"IN needs a property on its left, not {operand.describe()}", pos)
    name = operand.name
    members = frozenset(values)

    def fn(props: Props) -> JavaValue:
        v = props.get(name)
        return None if v is None else (v in members) is not negated

    return Node(Kind.BOOL, fn, operand.pos, (operand,), at=pos)


_STRING_TESTS: dict[str, Callable[[str, str], bool]] = {
    "CONTAINS": operator.contains,
    "STARTSWITH": str.startswith,
    "ENDSWITH": str.endswith,
}


def string_test(op: str, operand: Node, search: str, negated: bool, pos: int) -> Node:
    """`x [NOT] CONTAINS|STARTSWITH|ENDSWITH 's'`: FALSE, negated or not, when x is missing or
    not a string or when 's' is empty (RocketMQ's rule, so NOT CONTAINS is not 3-valued)."""
    fn = _string_test_fn(op, operand, search, negated)
    return Node(Kind.BOOL, fn, operand.pos, (operand,), at=pos)


def _string_test_fn(op: str, operand: Node, search: str, negated: bool) -> Evaluator:
    test = _STRING_TESTS[op]
    if not search:  # RocketMQ answers FALSE without evaluating the operand
        return _always_false
    if operand.kind is Kind.PROP:
        name = operand.name

        def prop_test(props: Props) -> JavaValue:
            v = props.get(name)
            return False if v is None else test(v, search) is not negated

        return prop_test
    f = operand.fn

    def fn(props: Props) -> JavaValue:
        v = f(props)
        return test(v, search) is not negated if isinstance(v, str) else False

    return fn


def _always_false(props: Props) -> JavaValue:
    return False


class Expression:
    """A compiled filter; `evaluate` is True only when the condition is TRUE."""

    __slots__ = ("_fn", "text")

    def __init__(self, text: str, root: Node) -> None:
        self.text = text
        self._fn = as_boolean(root).fn

    def evaluate(self, props: Props) -> bool:
        """Whether a message with these properties matches: unknown (NULL) and errors do not."""
        try:
            return self._fn(props) is True
        except EvalError:
            return False

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"
