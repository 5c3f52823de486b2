"""Header and JSON values as Java reads them: `Boolean.parseBoolean`, `Long.parseLong` with the
leniency RocketMQ's own fields need, and fastjson's reading of a JSON value into an `int`, a
`long` or a `boolean` field. Shared by the protocol decoders and the stored JSON tables, so a
value the broker refuses in a request is refused the same way in a file."""

from __future__ import annotations

from collections.abc import Mapping


def parse_bool(value: str | None, default: bool = False) -> bool:
    """Java's `Boolean.parseBoolean`: true only for "true" in any case; "1" is false."""
    if value is None:
        return default
    return value.strip().lower() == "true"


LONG_MIN, LONG_MAX = -(1 << 63), (1 << 63) - 1
"""Java's `long`, the widest type of any header field."""


def parse_int(value: str | None, default: int | None = None) -> int | None:
    """A lenient integer: surrounding spaces and a trailing ".0" are accepted. A number past
    Java's `long` is not one (`default`), as Java's parsing fails on it."""
    if value is None or value == "":
        return default
    v = value.strip()
    try:
        n = int(v)
    except ValueError:
        try:
            f = float(v)
        except ValueError:
            return default
        if not f.is_integer():
            return default
        n = int(f)
    return n if LONG_MIN <= n <= LONG_MAX else default


def json_int(value: object, bits: int = 64) -> int | None:
    """A whole number as Java reads one into a `long` (or an `int`, `bits=32`) from a JSON
    number or string; None for anything else (a bool, 5.7, a number that does not fit)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    n = value if isinstance(value, int) else parse_int(str(value))
    if n is None or not -(1 << (bits - 1)) <= n < 1 << (bits - 1):
        return None
    return n


_TRUE = frozenset({"true", "1", "y", "t"})
_FALSE = frozenset({"false", "0", "n", "f"})


def json_bool(value: object, default: bool = False) -> bool | None:
    """A JSON value as fastjson reads one into a `boolean` field: true and false; a number is
    true when its whole part is 1; the strings true/false (any case), 1/0, Y/N and T/F; null,
    "" and "null" give `default`. None for anything else (a list, "yes", ...)."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value == value and abs(value) < 1 << 63 and int(value) == 1
    if not isinstance(value, str):
        return None
    if value in ("", "null", "NULL"):
        return default
    low = value.lower()
    return True if low in _TRUE else False if low in _FALSE else None


_JAVA_INTS = {32: "int", 64: "long"}


def field_int(d: Mapping[str, object], key: str, default: int, bits: int = 64) -> int:
    """`d[key]` as fastjson reads it into a `long` (`bits=32`: an `int`) field; `default` when
    absent or null. Raises ValueError naming the key and the value."""
    raw = d.get(key)
    n = default if raw is None else json_int(raw, bits)
    if n is None:
        raise ValueError(f"{key} {raw!r:.40} is not a number (a Java {_JAVA_INTS[bits]})")
    return n


def field_bool(d: Mapping[str, object], key: str, default: bool) -> bool:
    """`d[key]` as fastjson reads it into a `boolean` field (see `json_bool`). Raises
    ValueError naming the key and the value."""
    raw = d.get(key)
    b = json_bool(raw, default)
    if b is None:
        raise ValueError(f"{key} {raw!r:.40} is not a boolean")
    return b

