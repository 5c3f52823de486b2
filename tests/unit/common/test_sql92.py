"""The SQL92 filter: every operator, literals, RocketMQ's string/number rules, 3-valued logic,
precedence, parse errors with positions, and garbage that must only ever raise SqlParseError.

Expected results follow Apache RocketMQ's filter module (`SelectorParser.jj`, the expression
classes and `ExpressionTest`); rows marked "RocketMQ:" pin one of its less obvious rules.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmqkit.common.sql92 import (
    MAX_DEPTH,
    MAX_EXPRESSION_CHARS,
    Expression,
    SqlParseError,
    compile_expression,
)
from rmqkit.common.sql92.values import (
    EvalError,
    JavaLong,
    compare_doubles,
    java_compare,
    java_double,
    java_int,
    java_long,
)

P = dict[str, str]

CASES: list[tuple[str, P, bool]] = [
    # = and <> on strings
    ("a = 'x'", {"a": "x"}, True),
    ("a = 'x'", {"a": "y"}, False),
    ("a = 'x'", {}, False),
    ("a = 'X'", {"a": "x"}, False),
    ("a <> 'x'", {"a": "y"}, True),
    ("a <> 'x'", {"a": "x"}, False),
    ("a <> 'x'", {}, False),
    # RocketMQ: equality is NULL for a missing left side but FALSE for a missing right side,
    # and TRUE when both are missing.
    ("'x' = a", {}, False),
    ("NOT ('x' = a)", {}, True),
    ("'x' <> a", {}, True),
    ("a = b", {}, True),
    ("a = b", {"a": "1"}, False),
    ("a = b", {"a": "3.14", "b": "3.14"}, True),
    ("a <> b", {"a": "3.14", "b": "3.141"}, True),
    # ordering: the property's string is parsed as the literal's type (int here)
    ("a > 5", {"a": "6"}, True),
    ("a > 5", {"a": "5"}, False),
    ("a >= 5", {"a": "5"}, True),
    ("a < 5", {"a": "4"}, True),
    ("a < 5", {"a": "-40"}, True),
    ("a <= 5", {"a": "5"}, True),
    ("a <= 5", {"a": "6"}, False),
    ("a > 5", {"a": "+6"}, True),
    ("a > 5", {"a": "0006"}, True),
    ("a > 5", {}, False),
    # RocketMQ: a string that does not parse fails the whole evaluation: no match, under NOT too
    ("a > 5", {"a": "abc"}, False),
    ("a < 5", {"a": "abc"}, False),
    ("NOT (a < 5)", {"a": "abc"}, False),
    ("a > 5", {"a": " 6"}, False),
    ("a > 5", {"a": "5.5"}, False),  # Integer.valueOf("5.5") throws
    ("a > 5", {"a": "1_0"}, False),
    ("a > 5", {"a": "3000000000"}, False),  # beyond int32
    ("a > 2147483647", {"a": "2147483648"}, False),  # 2147483647 is an int literal
    ("a > 2147483648", {"a": "3000000000"}, True),  # a long literal parses the value as long
    ("a >= 9223372036854775807", {"a": "9223372036854775807"}, True),
    ("a = 5", {"a": "05"}, True),
    ("a = '5'", {"a": "05"}, False),
    ("a = 5", {"a": "x"}, False),
    ("NOT (a = 5)", {"a": "x"}, False),
    ("a = 5L", {"a": "5"}, True),
    ("5 = a", {"a": "5"}, True),
    ("-5 < a", {"a": "0"}, True),
    # decimals: the value is parsed with Java's Double.valueOf
    ("a > 3.14", {"a": "3.1415"}, True),
    ("a > 3.1E10", {"a": "31415000000.0"}, True),
    ("a > 1.5", {"a": "2"}, True),
    ("a > 1.5", {"a": "2d"}, True),
    ("a > 1.5", {"a": "1e3"}, True),
    ("a > 1.5", {"a": "0x1p2"}, True),
    ("a > 1.5", {"a": " 2 "}, True),  # Double.valueOf trims
    ("a > 1.5", {"a": "Infinity"}, True),
    ("a > 1.5", {"a": "NaN"}, True),  # Double.compareTo puts NaN above everything
    ("a < 1.5", {"a": "NaN"}, False),
    ("a > 1.5", {"a": "inf"}, False),
    ("a > 1.5", {"a": "1_000"}, False),
    ("a = 1.0", {"a": "1"}, True),
    ("a = 1", {"a": "1.0"}, False),
    ("a = .5", {"a": "0.5"}, True),
    ("a = 5.", {"a": "5"}, True),
    ("a = 1e3", {"a": "1000"}, True),
    ("a = 1e-300", {"a": "1.0E-300"}, True),
    # two properties with an ordering operator are both parsed as doubles
    ("a > b", {"a": "20", "b": "10"}, True),
    ("a > b", {"a": "10", "b": "20"}, False),
    ("a > b", {"a": "10", "b": "2.5"}, True),  # numeric, not lexicographic
    ("a > b", {"a": "x", "b": "1"}, False),
    ("a > b", {"a": "1"}, False),
    # booleans: a property equals TRUE when it reads "true" in any case
    ("a = TRUE", {"a": "true"}, True),
    ("a = TRUE", {"a": "TRUE"}, True),
    ("a = FALSE", {"a": "yes"}, True),
    ("a = TRUE", {}, False),
    ("a=TRUE OR b=FALSE", {"a": "false", "b": "true"}, False),
    ("TRUE", {}, True),
    ("FALSE", {}, False),
    ("NULL", {}, False),
    ("NOT FALSE", {}, True),
    ("TRUE = TRUE", {}, True),
    # RocketMQ: a property used as a condition is FALSE when present, NULL when missing
    ("a", {"a": "true"}, False),
    ("NOT a", {"a": "x"}, True),
    ("NOT a", {}, False),
    # unary minus and plus; minus of a property is NULL (its value is a string)
    ("a > -5", {"a": "-4"}, True),
    ("a < -5", {"a": "-6"}, True),
    ("a = - -5", {"a": "5"}, True),
    ("a > +5", {"a": "6"}, True),
    ("-a < 5", {"a": "1"}, False),
    ("-a IS NULL", {"a": "1"}, True),
    ("a = -2147483648", {"a": "-2147483648"}, True),
    # BETWEEN and NOT BETWEEN (bounds included)
    ("a BETWEEN 2 AND 10", {"a": "2"}, True),
    ("a BETWEEN 2 AND 10", {"a": "10"}, True),
    ("a BETWEEN 2 AND 10", {"a": "3"}, True),
    ("a BETWEEN 2 AND 10", {"a": "1"}, False),
    ("a BETWEEN 2 AND 10", {"a": "11"}, False),
    ("a BETWEEN 2 AND 10", {}, False),
    ("a BETWEEN 2 AND 10", {"a": "x"}, False),
    ("a BETWEEN 1.5 AND 2.5", {"a": "2"}, True),
    ("a BETWEEN -5 AND 5", {"a": "0"}, True),
    ("a BETWEEN 5 AND -5", {"a": "0"}, False),  # a negated bound escapes the bounds check
    ("a NOT BETWEEN 2 AND 10", {"a": "1"}, True),
    ("a NOT BETWEEN 2 AND 10", {"a": "11"}, True),
    ("a NOT BETWEEN 2 AND 10", {"a": "2"}, False),
    ("a NOT BETWEEN 2 AND 10", {}, False),
    ("a BETWEEN 2 AND 10 AND b = 'x'", {"a": "5", "b": "x"}, True),
    ("a BETWEEN 2 AND 10 AND b = 'x'", {"a": "5", "b": "y"}, False),
    # IN and NOT IN
    ("a IN ('3', '4', '5')", {"a": "4"}, True),
    ("a IN ('3', '4', '5')", {"a": "8"}, False),
    ("a IN ('3', '4', '5')", {}, False),
    ("a IN ('x')", {"a": "x"}, True),
    ("a IN ('it''s', 'b')", {"a": "it's"}, True),
    ("a NOT IN ('3', '4', '5')", {"a": "8"}, True),
    ("a NOT IN ('3', '4', '5')", {"a": "3"}, False),
    ("a NOT IN ('3', '4', '5')", {}, False),
    ("(a) IN ('x')", {"a": "x"}, True),
    # IS NULL and IS NOT NULL
    ("a IS NULL", {}, True),
    ("a IS NULL", {"a": ""}, False),
    ("a IS NOT NULL", {"a": ""}, True),
    ("a IS NOT NULL", {}, False),
    ("a is null OR a = 'hello'", {}, True),
    ("a is null OR a = 'hello'", {"a": "hello"}, True),
    ("a is null OR a = 'hello'", {"a": "abc"}, False),
    ("a is not null and a = 'hello'", {"a": "hello"}, True),
    # CONTAINS, STARTSWITH, ENDSWITH and their NOT forms
    ("value contains 'x'", {"value": "axb"}, True),
    ("value startswith 'ax'", {"value": "axb"}, True),
    ("value endswith 'xb'", {"value": "axb"}, True),
    ("value contains 'u'", {"value": "axb"}, False),
    ("value startswith 'x'", {"value": "axb"}, False),
    ("value endswith 'a'", {"value": "axb"}, False),
    ("value not contains 'x'", {"value": "axb"}, False),
    ("value not startswith 'ax'", {"value": "axb"}, False),
    ("value not endswith 'xb'", {"value": "axb"}, False),
    ("value not contains 'u'", {"value": "axb"}, True),
    ("value not startswith 'u'", {"value": "axb"}, True),
    ("value not endswith 'u'", {"value": "axb"}, True),
    ("value contains 'X'", {"value": "axb"}, False),
    ("value contains ''", {"value": "axb"}, False),  # RocketMQ: an empty search is FALSE
    ("value not contains ''", {"value": "axb"}, False),
    ("'axb' contains 'x'", {}, True),
    ("' ' startswith ' '", {}, True),
    ("'s' endswith '\\'", {}, False),
    # RocketMQ: these answer FALSE (not NULL) for a missing property, negated or not
    ("a CONTAINS 'x'", {}, False),
    ("a NOT CONTAINS 'x'", {}, False),
    ("NOT (a CONTAINS 'x')", {}, True),
    ("NOT (a STARTSWITH 'x')", {}, True),
    ("a NOT ENDSWITH 'x'", {}, False),
    # three-valued logic: NULL AND TRUE is NULL, NULL AND FALSE is FALSE, NOT NULL is NULL
    ("a = 1 AND b = 2", {"b": "2"}, False),
    ("NOT (a = 1 AND b = 2)", {"b": "2"}, False),
    ("NOT (a = 1 AND b = 2)", {"b": "3"}, True),
    ("a = 1 OR b = 2", {"b": "2"}, True),
    ("a = 1 OR b = 2", {"b": "3"}, False),
    ("NOT (a = 1 OR b = 2)", {"b": "3"}, False),
    ("NOT (a = 1 OR b = 2)", {"a": "0", "b": "3"}, True),
    ("NOT (a = 1)", {}, False),
    ("NOT (a = 1)", {"a": "2"}, True),
    ("(a = 1) IS NULL", {}, True),
    ("(a = 1) IS NULL", {"a": "2"}, False),
    ("(a = 1) IS NOT NULL", {"a": "2"}, True),
    ("NOT (NULL AND FALSE)", {}, True),
    ("NOT (NULL AND TRUE)", {}, False),
    ("NOT (NULL OR TRUE)", {}, False),
    ("NOT (NULL OR FALSE)", {}, False),
    ("NOT NOT (a = 1)", {}, False),
    # short-circuit decides whether a failing comparison is evaluated at all
    ("b = 'x' OR a > 5", {"a": "zz", "b": "x"}, True),
    ("a > 5 OR b = 'x'", {"a": "zz", "b": "x"}, False),
    ("TRUE OR a > 5", {"a": "zz"}, True),
    ("NOT (FALSE AND a > 5)", {"a": "zz"}, True),
    ("NOT (a > 5 AND FALSE)", {"a": "zz"}, False),
    # precedence: NOT > AND > OR, comparisons bind tighter than AND and OR
    ("a = 1 OR b = 1 AND c = 1", {"a": "1"}, True),
    ("a = 1 AND b = 1 OR c = 1", {"c": "1"}, True),
    ("(a = 1 OR b = 1) AND c = 1", {"a": "1"}, False),
    ("NOT FALSE AND FALSE", {}, False),
    ("NOT TRUE OR TRUE", {}, True),
    ("NOT (a = 1) AND b = 1", {"a": "2", "b": "1"}, True),
    ("a=3 and b<>4 And c>5 AND d<=4", {"a": "3", "b": "5", "c": "6", "d": "1"}, True),
    ("a=3 and b<>4 And c>5 AND d<=4", {"a": "4", "b": "5", "c": "6", "d": "1"}, False),
    ("a=3 or b<>4 Or c>5 OR d<=4", {"a": "4", "b": "4", "c": "3", "d": "2"}, True),
    ("a=3 or b<>4 Or c>5 OR d<=4", {"a": "4", "b": "4", "c": "3", "d": "10"}, False),
    # keywords ignore case; property names do not
    ("a bEtWeEn 1 aNd 3", {"a": "2"}, True),
    ("a iS nOt NuLl", {"a": "2"}, True),
    ("a NoT iN ('x')", {"a": "y"}, True),
    ("a = tRuE", {"a": "true"}, True),
    ("A = 'x'", {"a": "x"}, False),
    ("A = 'x'", {"A": "x"}, True),
    ("$a_1 = 'x'", {"$a_1": "x"}, True),
    ("nothing IS NULL", {}, True),  # an identifier that starts with a keyword
    # string literals, comments and whitespace
    ("a = 'it''s'", {"a": "it's"}, True),
    ("a = ''", {"a": ""}, True),
    ("TAGS is not null and TAGS='''''tag'''''", {"TAGS": "''tag''"}, True),
    ("a = 'naïve ✓'", {"a": "naïve ✓"}, True),
    ("a = 1 -- a note", {"a": "1"}, True),
    ("-- first line\na = 1", {"a": "1"}, True),
    ("a = /* why */ 1", {"a": "1"}, True),
    ("\ta\n=\r1\f", {"a": "1"}, True),
    ("TAGS = 'TagA'", {"TAGS": "TagA"}, True),
]


@pytest.mark.parametrize(("text", "props", "expected"), CASES)
def test_evaluates_like_rocketmq(text: str, props: P, expected: bool) -> None:
    assert compile_expression(text).evaluate(props) is expected


ERRORS: list[tuple[str, int, str]] = [
    ("", 0, "empty expression"),
    ("   -- only a comment\n", 0, "empty expression"),
    ("a =", 3, "expected an operand, found end of input"),
    ("a = 1 AND", 9, "expected an operand"),
    ("(a = 1", 6, "expected ')' to close the '(' at position 0"),
    ("((a = 1)", 8, "expected ')'"),
    ("a = 1)", 5, "')' without a matching '('"),
    ("a = 'x", 4, "unterminated string literal"),
    ("a = 1 /* open", 6, "unterminated comment"),
    ("a = 1 b", 6, "unexpected identifier b after a complete condition"),
    ("a NOT = 1", 2, "unexpected keyword NOT"),
    ("a = 007", 5, "unexpected integer literal 0"),
    ("a == 1", 3, "expected an operand, found '='"),
    ("a != 1", 2, "use <> for 'not equal'"),
    ('a = "x"', 4, "single quotes"),
    ("a = 1 && b = 2", 6, "use AND"),
    ("a = 1 ;", 6, "unexpected character ';'"),
    ("a.b = 1", 1, "may not contain '.'"),
    ("a = \x00", 4, "unexpected character"),
    ("in = 1", 0, "expected an operand, found keyword IN"),
    ("a IN ()", 6, "IN takes a string literal"),
    ("a IN (1)", 6, "IN takes a string literal, found integer literal 1"),
    ("a IN ('x',)", 10, "IN takes a string literal"),
    ("a IN 'x'", 5, "expected '(' after IN"),
    ("a IN ('x'", 9, "expected ')' to close the IN list"),
    ("a CONTAINS x", 11, "CONTAINS takes a string literal"),
    ("a NOT STARTSWITH 1", 17, "STARTSWITH takes a string literal"),
    ("a BETWEEN 1 OR 2", 12, "expected AND in BETWEEN"),
    ("a IS 5", 5, "expected NULL after IS"),
    ("a IS NOT 5", 9, "expected NULL after IS NOT"),
    ("a > 'x'", 2, "'x' cannot be compared with '>'"),
    ("a > TRUE", 2, "TRUE cannot be compared"),
    ("a < NULL", 2, "NULL cannot be compared"),
    ("(a = 1) > 2", 8, "a boolean expression cannot be compared with '>'"),
    ("a = NULL", 2, "NULL cannot be compared with '=' (use IS NULL)"),
    ("NULL <> a", 5, "NULL cannot be compared with '<>'"),
    ("TRUE = 1", 5, "TRUE cannot be compared with 1"),
    ("5", 0, "5 is not a condition"),
    ("'x'", 0, "'x' is not a condition"),
    ("-a", 0, "a negation expression is not a condition"),
    ("5 AND a = 1", 0, "5 is not a condition"),
    ("a = 1 AND 5", 10, "5 is not a condition"),
    ("NOT 5", 4, "5 is not a condition"),
    ("'x' IN ('x')", 4, "IN needs a property on its left"),
    ("a BETWEEN 10 AND 1", 2, "lower bound 10 is above upper bound 1"),
    ("a BETWEEN NULL AND 1", 2, "BETWEEN bounds cannot be NULL"),
    ("a BETWEEN 'a' AND 'b'", 2, "'a' cannot be compared with '>='"),
    ("a > 0.0", 4, "below 4.9E-324"),
    ("a > 1e-400", 4, "below 4.9E-324"),
    ("a > 1e999", 4, "out of the double range"),
    ("a > 9223372036854775808", 4, "out of the long range"),
    ("a > " + "9" * 5000, 4, "out of the long range"),
    # NOT binds to its operand alone in RocketMQ; the ambiguous spelling is refused
    ("NOT a = 1", 6, "ambiguous NOT before ="),
    ("NOT a <> 1", 6, "ambiguous NOT before <>"),
    ("NOT a IS NULL", 6, "ambiguous NOT before IS"),
    ("NOT a > 1", 6, "ambiguous NOT before >"),
    ("NOT a IN ('x')", 6, "ambiguous NOT before IN"),
    ("NOT a NOT IN ('x')", 6, "ambiguous NOT before NOT IN"),
    ("NOT a CONTAINS 'x'", 6, "ambiguous NOT before CONTAINS"),
    ("NOT a BETWEEN 1 AND 2", 6, "ambiguous NOT before BETWEEN"),
    ("x = 1 AND NOT a = 1", 16, "ambiguous NOT"),
]


@pytest.mark.parametrize(("text", "position", "reason"), ERRORS)
def test_parse_errors_give_reason_and_position(text: str, position: int, reason: str) -> None:
    with pytest.raises(SqlParseError) as info:
        compile_expression(text)
    assert reason in info.value.reason
    assert info.value.position == position
    assert str(info.value).endswith(f"(at position {position})")
    assert isinstance(info.value, ValueError)


def test_parenthesised_not_is_rocketmqs_reading() -> None:
    # (NOT a) = TRUE: NOT of a present property is TRUE (its cast is FALSE).
    assert compile_expression("(NOT a) = TRUE").evaluate({"a": "x"}) is True
    assert compile_expression("(NOT a) = TRUE").evaluate({}) is False


def test_nesting_is_capped_with_a_clear_error() -> None:
    ok = "(" * (MAX_DEPTH - 1) + "a = 1" + ")" * (MAX_DEPTH - 1)
    assert compile_expression(ok).evaluate({"a": "1"})
    for text, where in [
        ("(" * 10_000 + "a = 1" + ")" * 10_000, MAX_DEPTH),
        ("NOT " * 10_000 + "a", 4 * MAX_DEPTH),
        ("- " * 5_000 + "1 = a", 2 * MAX_DEPTH),
        ("x = " * 10_000 + "1", 4 * (MAX_DEPTH - 1) + 2),
        ("a IS NULL " + "IS NULL " * 5_000, 10 + 8 * (MAX_DEPTH - 2)),
    ]:
        with pytest.raises(SqlParseError, match="nests deeper than") as info:
            compile_expression(text)
        assert info.value.position == where


def test_long_and_or_chains_stay_flat() -> None:
    text = " AND ".join(f"p{i} IS NULL" for i in range(3000))
    assert compile_expression(text).evaluate({})
    assert not compile_expression(text).evaluate({"p2999": "x"})
    text = " OR ".join(f"p{i} = 'v'" for i in range(3000))
    assert compile_expression(text).evaluate({"p2999": "v"})


def test_length_is_capped() -> None:
    text = "a = 1 AND " * (MAX_EXPRESSION_CHARS // 10 + 1) + "a = 1"
    with pytest.raises(SqlParseError, match="the limit is 65536") as info:
        compile_expression(text)
    assert info.value.position == MAX_EXPRESSION_CHARS
    assert compile_expression("a = '" + "x" * (MAX_EXPRESSION_CHARS - 6) + "'")


def test_deep_caller_stack_gets_parse_error_not_recursion_error() -> None:
    text = "(" * (MAX_DEPTH - 1) + "a = 1" + ")" * (MAX_DEPTH - 1)

    def at_depth(n: int) -> Expression:
        return compile_expression(text) if n == 0 else at_depth(n - 1)

    with pytest.raises(SqlParseError, match="nests too deeply"):
        at_depth(sys.getrecursionlimit() - 100)


def test_expression_keeps_its_text() -> None:
    e = compile_expression("a = 1")
    assert e.text == "a = 1"
    assert repr(e) == "Expression('a = 1')"


# Hypothesis: garbage in, SqlParseError out; whatever compiles evaluates to a bool.

_PIECES = [
    "a", "b", "TAGS", "$x", "NOT", "AND", "OR", "BETWEEN", "IN", "IS", "NULL", "TRUE", "FALSE",
    "CONTAINS", "STARTSWITH", "ENDSWITH", "=", "<>", "<", ">", "<=", ">=", "(", ")", ",", "+",
    "-", "'x'", "'it''s'", "''", "'", "0", "5", "5L", "2147483648", "9223372036854775808",
    "3.5", ".5", "1e3", "0.0", "1e999", "--", "/*", "*/", "\n", "!", ".", '"', "\x00",
]  # fmt: skip
_PROPS = st.dictionaries(
    st.sampled_from(["a", "b", "TAGS", "$x"]),
    st.sampled_from(["", "x", "5", "-3", "2.5", "abc", "true", "NaN", "9999999999", "it's"]),
)


def _compile_or_parse_error(text: str) -> Expression | None:
    try:
        return compile_expression(text)
    except SqlParseError as exc:
        assert 0 <= exc.position <= len(text)
        return None


@settings(max_examples=400)
@given(st.text(max_size=80), _PROPS)
def test_random_text_raises_only_sql_parse_error(text: str, props: P) -> None:
    e = _compile_or_parse_error(text)
    if e is not None:
        assert e.evaluate(props) in (True, False)


@settings(max_examples=600)
@given(st.lists(st.sampled_from(_PIECES), max_size=14).map(" ".join), _PROPS)
def test_random_token_soup_raises_only_sql_parse_error(text: str, props: P) -> None:
    e = _compile_or_parse_error(text)
    if e is not None:
        assert e.evaluate(props) in (True, False)


_OPERAND = st.sampled_from(
    ["a", "b", "TAGS", "5", "-3", "2.5", "'x'", "'5'", "TRUE", "NULL", "2147483648", "(a)"]
)
_LEAF = st.one_of(
    st.builds(
        "{} {} {}".format, _OPERAND, st.sampled_from(["=", "<>", "<", ">", "<=", ">="]), _OPERAND
    ),
    st.builds("{} IS {}NULL".format, _OPERAND, st.sampled_from(["", "NOT "])),
    st.builds("{} {}IN ('x', '5')".format, _OPERAND, st.sampled_from(["", "NOT "])),
    st.builds("{} {}BETWEEN -3 AND {}".format, _OPERAND, st.sampled_from(["", "NOT "]), _OPERAND),
    st.builds(
        "{} {}{} 'x'".format,
        _OPERAND,
        st.sampled_from(["", "NOT "]),
        st.sampled_from(["CONTAINS", "STARTSWITH", "ENDSWITH"]),
    ),
    _OPERAND,
)
_CONDITION = st.recursive(
    _LEAF,
    lambda inner: st.one_of(
        st.builds("({}) AND ({})".format, inner, inner),
        st.builds("({}) OR ({})".format, inner, inner),
        st.builds("NOT ({})".format, inner),
    ),
    max_leaves=8,
)


@settings(max_examples=300)
@given(_CONDITION, _CONDITION, _PROPS)
def test_three_valued_logic_laws_hold(c1: str, c2: str, props: P) -> None:
    e1, e2 = _compile_or_parse_error(c1), _compile_or_parse_error(c2)
    if e1 is None or e2 is None:
        return

    def ev(text: str) -> bool:
        return compile_expression(text).evaluate(props)

    # A condition and its negation are never both TRUE; "c OR NOT c" is TRUE exactly when c is
    # neither NULL nor failing; De Morgan holds, failures included (same evaluation order).
    assert not (e1.evaluate(props) and ev(f"NOT ({c1})"))
    assert ev(f"({c1}) OR NOT ({c1})") is (e1.evaluate(props) or ev(f"NOT ({c1})"))
    assert ev(f"NOT (({c1}) AND ({c2}))") is ev(f"NOT ({c1}) OR NOT ({c2})")
    assert ev(f"NOT (({c1}) OR ({c2}))") is ev(f"NOT ({c1}) AND NOT ({c2})")


@given(st.integers(-(2**31), 2**31 - 1), st.integers(-(2**31), 2**31 - 1))
def test_int_comparisons_match_python(value: int, literal: int) -> None:
    props = {"a": str(value)}
    for op, fn in _INT_OPS.items():
        assert compile_expression(f"a {op} {literal}").evaluate(props) is fn(value, literal)


_INT_OPS: dict[str, Callable[[int, int], bool]] = {
    "=": lambda x, y: x == y,
    "<>": lambda x, y: x != y,
    "<": lambda x, y: x < y,
    ">": lambda x, y: x > y,
    "<=": lambda x, y: x <= y,
    ">=": lambda x, y: x >= y,
}


@given(
    st.floats(allow_nan=False, allow_infinity=False), st.floats(min_value=1e-300, max_value=1e300)
)
def test_double_comparisons_match_python(value: float, literal: float) -> None:
    props = {"a": repr(value)}
    assert compile_expression(f"a > {literal!r}").evaluate(props) is (value > literal)
    assert compile_expression(f"a <= {literal!r}").evaluate(props) is (value <= literal)


# Java value rules, directly


def test_java_number_parsing() -> None:
    assert java_int("+7") == 7 and java_int("-0") == 0 and java_int("٣") == 3
    assert java_int("0" * 5000 + "12") == 12
    for bad in ["", "+", "-", " 1", "1 ", "1_0", "1.0", "0x10", "2147483648"]:
        with pytest.raises(EvalError):
            java_int(bad)
    assert java_long("9223372036854775807") == 2**63 - 1
    with pytest.raises(EvalError):
        java_long("9223372036854775808")
    assert java_double("1.5f") == 1.5 and java_double("-Infinity") == float("-inf")
    assert java_double("\t2.\n") == 2.0 and java_double("0x1.8p1") == 3.0
    assert java_double("0x1p99999") == float("inf")
    for bad in ["", "inf", "nan", "NaNd", "1e", "1_0", "1.5x", "0x1", "e5", "."]:
        with pytest.raises(EvalError):
            java_double(bad)


def test_java_comparison_rules() -> None:
    assert compare_doubles(-0.0, 0.0) == -1 and compare_doubles(0.0, -0.0) == 1
    nan = float("nan")
    assert compare_doubles(nan, nan) == 0 and compare_doubles(nan, float("inf")) == 1
    assert java_compare(JavaLong(2**40), 5) == 1
    assert java_compare(2**53 + 1, float(2**53)) == 0  # Java widens the long to a double
    assert java_compare(True, 1) == -1 and java_compare(1, True) == -1
    with pytest.raises(EvalError):
        java_compare(True, "true")  # ClassCastException in RocketMQ
    assert java_compare("TRUE", True) == 0
