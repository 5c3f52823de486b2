"""Java value semantics of RocketMQ's SQL92 filter: its typed constants and `__compare`.

RocketMQ evaluates on Java objects: Integer, Long, Double, Boolean, String, null. Here they are
`int`, `JavaLong`, `float`, `bool`, `str` and `None`. Message properties are always strings; when a
comparison meets a string and a number, RocketMQ parses the string as the number's type
(`Integer.valueOf`, `Long.valueOf`, `Double.valueOf`), and a string that does not parse makes
the whole evaluation fail (the broker then logs and does not deliver). `EvalError` carries that.
"""

from __future__ import annotations

import re
import struct
import unicodedata
from typing import TypeAlias

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
DOUBLE_MIN_VALUE = 5e-324
"""Java's `Double.MIN_VALUE`, the least positive double; RocketMQ refuses literals below it."""


class JavaLong(int):
    """An integer constant outside int32: a Java `Long` (strings compared with it parse as long)."""

    __slots__ = ()


JavaValue: TypeAlias = str | int | float | bool | None
"""What an operand evaluates to (`bool` before `int`: Python's bool is an int)."""


class EvalError(Exception):
    """RocketMQ would throw while evaluating: the message does not match (not a caller error)."""


def java_int(s: str, lo: int = INT_MIN, hi: int = INT_MAX) -> int:
    """`Integer.parseInt` (or `Long.parseLong` with the long bounds): sign, then decimal digits."""
    body = s[1:] if s[:1] in ("-", "+") else s
    if not body.isdecimal():  # False for "", whitespace, "_", "1.5", "1e3"
        raise EvalError
    if len(body) > 19:
        # Java accepts any number of leading zeros; Python's int() refuses over 4,300 digits.
        if not body.isascii():
            body = "".join(str(unicodedata.decimal(c)) for c in body)
        body = body.lstrip("0") or "0"
        if len(body) > 19:
            raise EvalError
        s = s[0] + body if s[0] in "+-" else body
    n = int(s)
    if n < lo or n > hi:
        raise EvalError
    return n


def java_long(s: str) -> int:
    """`Long.parseLong`."""
    return java_int(s, LONG_MIN, LONG_MAX)


# `Double.valueOf`: what FloatingDecimal reads after String.trim(): an optional sign, then
# NaN | Infinity | decimal digits with an optional point and exponent | a hex float, the last
# two optionally followed by a type suffix f/F/d/D. Digits are ASCII only.
_JAVA_TRIM = "".join(chr(i) for i in range(0x21))
_JAVA_DEC = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_JAVA_SPECIAL = re.compile(r"[+-]?(?:NaN|Infinity)")
_JAVA_HEX = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+")


def java_double(s: str) -> float:
    """`Double.valueOf`: Java's syntax, not Python's (no underscores, `inf` or inner spaces)."""
    t = s.strip(_JAVA_TRIM)
    core = t[:-1] if t[-1:] in ("f", "F", "d", "D") else t
    if _JAVA_DEC.fullmatch(core):
        return float(core)
    if _JAVA_SPECIAL.fullmatch(t):
        return float(t)
    if _JAVA_HEX.fullmatch(core):
        try:
            return float.fromhex(core)
        except OverflowError:
            return float("-inf") if core[0] == "-" else float("inf")
    raise EvalError


def java_boolean(s: str) -> bool:
    """`Boolean.valueOf`: true only for "true" in any case, false for every other string."""
    return s.lower() == "true"


_DOUBLE_BITS = struct.Struct(">q")
_CANONICAL_NAN = 0x7FF8000000000000


def _double_bits(d: float) -> int:
    return _CANONICAL_NAN if d != d else _DOUBLE_BITS.unpack(struct.pack(">d", d))[0]


def compare_doubles(a: float, b: float) -> int:
    """`Double.compareTo`: a total order where -0.0 < 0.0 and NaN equals itself, above +inf."""
    if a < b:
        return -1
    if a > b:
        return 1
    if a == b and a != 0.0:
        return 0
    x, y = _double_bits(a), _double_bits(b)
    return (x > y) - (x < y)


def _cmp(a: int, b: int) -> int:
    return (a > b) - (a < b)


def java_compare(lv: JavaValue, rv: JavaValue) -> int:
    """RocketMQ's `ComparisonExpression.__compare` with string conversion on (as it always is).

    Unlike types convert up (int to long to double); a string facing a number or a boolean is
    parsed as that type; a boolean facing a non-boolean compares as -1, except a boolean facing a
    string, which throws in Java (a cast bug) and so fails the evaluation. Both operands non-null.
    """
    if isinstance(lv, str):
        if isinstance(rv, str):
            # String.compareTo orders UTF-16 units, not code points; only equality of strings is
            # ever used (ordering operators parse two strings as doubles first).
            return (lv > rv) - (lv < rv)
        if isinstance(rv, bool):
            return _cmp(java_boolean(lv), rv)
        if isinstance(rv, JavaLong):
            return _cmp(java_long(lv), rv)
        if isinstance(rv, int):
            return _cmp(java_int(lv), rv)
        if isinstance(rv, float):
            return compare_doubles(java_double(lv), rv)
        raise EvalError
    if isinstance(lv, bool):
        if isinstance(rv, bool):
            return _cmp(lv, rv)
        if isinstance(rv, str):
            raise EvalError  # Java casts the Boolean to String: ClassCastException
        return -1
    if isinstance(lv, int | float) and rv is not None:
        if isinstance(rv, bool):
            return -1
        if isinstance(rv, str):
            if isinstance(lv, float):
                return compare_doubles(lv, java_double(rv))
            return _cmp(lv, java_long(rv) if isinstance(lv, JavaLong) else java_int(rv))
        if isinstance(rv, float) or isinstance(lv, float):
            # Java widens long to double, rounding; Python would compare int and float exactly.
            return compare_doubles(float(lv), float(rv))
        return _cmp(lv, rv)
    raise EvalError


def negate(v: JavaValue) -> JavaValue:
    """RocketMQ's unary minus: numbers keep their type, anything else (strings too) is null."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return JavaLong(-v) if isinstance(v, JavaLong) else -v
