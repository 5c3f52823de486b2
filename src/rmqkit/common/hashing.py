"""Java-compatible hashing: `String.hashCode()` as RocketMQ uses it for tag codes."""

from __future__ import annotations

import operator
from functools import lru_cache

_MASK32 = 0xFFFFFFFF
_MAX_FAST = 512
# 31**i mod 2**32, reversed so that a slice lines up with the characters of a string.
_POW31_REV = [pow(31, i, 1 << 32) for i in range(_MAX_FAST)][::-1]


def _to_int32(h: int) -> int:
    h &= _MASK32
    return h - (1 << 32) if h & 0x80000000 else h


def java_string_hash(text: str) -> int:
    """Java's `String.hashCode()`: UTF-16 units times powers of 31, as a signed int32."""
    if text.isascii():
        units: bytes | list[int] = text.encode("ascii")
    else:
        raw = text.encode("utf-16-be")
        units = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    n = len(units)
    if n <= _MAX_FAST:
        return _to_int32(sum(map(operator.mul, units, _POW31_REV[_MAX_FAST - n :])))
    h = 0
    for u in units:
        h = (31 * h + u) & _MASK32
    return _to_int32(h)


@lru_cache(maxsize=8192)
def tags_code(tags: str | None) -> int:
    """The ConsumeQueue tag code of a TAGS value: 0 for none, else `tags.hashCode()` (cached)."""
    if not tags:
        return 0
    return java_string_hash(tags)
