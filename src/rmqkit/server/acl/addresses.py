"""Remote address patterns of plain ACL (`globalWhiteRemoteAddresses`, `whiteRemoteAddress`).

The forms RocketMQ's `RemoteAddressStrategyFactory` accepts, for IPv4 and IPv6:

    ""  (or missing)              matches nothing
    "*", "*.*.*.*", "*:*:*:*:*:*:*:*"   matches every address
    "192.168.1.{1,2,10}"          a prefix and a list of last parts
    "10.0.0.1,10.0.0.2"           a list of whole addresses
    "192.168.*.*", "192.168.1.1-10"   a range: the first part (after the first) that is "*" or
                                  "a-b" decides; the parts before it must be equal, the parts
                                  after it are not compared (each must be "*" or a number)
    "10.0.0.1", "::1"             one address

IPv6 ranges use hexadecimal parts ("fe80:0:0:0:0:0:0:1-ff", "fe80::*" once expanded). A pattern
that fits none of these is refused when the ACL file is loaded.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable

AddressMatcher = Callable[[str], bool]
"""True when a client's IP (no port) matches the pattern."""

_EVERYTHING = frozenset({"*", "*.*.*.*", "*:*:*:*:*:*:*:*"})


class AddressPatternError(ValueError):
    """An address pattern rmqkit cannot read; the message names it."""


@functools.lru_cache(maxsize=4096)  # every request asks again for its client's address
def _canonical(addr: str) -> str | None:
    """The address in full, upper case; an IPv4-mapped IPv6 address as its IPv4 address."""
    try:  # a link-local peer may come with its zone ("fe80::1%eth0"): the zone is not compared
        ip = ipaddress.ip_address(addr.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.exploded.upper()


def _exact(addr: str, pattern: str) -> str:
    canon = _canonical(addr)
    if canon is None:
        raise AddressPatternError(f"{addr!r} in {pattern!r} is not an IPv4 or IPv6 address")
    return canon


def _expand_v6(text: str) -> list[str]:
    """The 8 parts of an IPv6 pattern whose parts may be '*' or 'a-b' ('::' expanded)."""
    if "::" in text:
        head, _, tail = text.partition("::")
        left = head.split(":") if head else []
        right = tail.split(":") if tail else []
        parts = [*left, *["0"] * (8 - len(left) - len(right)), *right]
    else:
        parts = text.split(":")
    if len(parts) != 8:
        raise AddressPatternError(f"{text!r} does not have 8 IPv6 parts")
    return parts


def _range_matcher(pattern: str) -> AddressMatcher:
    v6 = ":" in pattern
    parts = _expand_v6(pattern) if v6 else pattern.split(".")
    base, top = (16, 0xFFFF) if v6 else (10, 255)
    if not v6 and len(parts) != 4:
        raise AddressPatternError(f"{pattern!r} does not have 4 IPv4 parts")

    def number(text: str) -> int:
        try:
            value = int(text, base)
        except ValueError:
            raise AddressPatternError(f"{text!r} in {pattern!r} is not a number") from None
        if not 0 <= value <= top:
            raise AddressPatternError(f"{text!r} in {pattern!r} is out of range")
        return value

    for i, part in enumerate(parts):
        if i == 0 or (part != "*" and "-" not in part):
            number(part)  # an exact part: must be a number
            continue
        low, high = (0, top) if part == "*" else map(number, part.split("-", 1))
        if low > high:
            raise AddressPatternError(f"{part!r} in {pattern!r} is an empty range")
        prefix = [number(p) for p in parts[:i]]
        index = i
        for later in parts[i + 1 :]:  # not compared, but must be "*" or a number
            if later != "*":
                number(later)
        break
    else:
        raise AddressPatternError(f"{pattern!r} has no '*' or 'a-b' part after the first")

    def match(ip: str) -> bool:
        canon = _canonical(ip)
        if canon is None or (":" in canon) != v6:
            return False
        got = [int(p, base) for p in canon.split(":" if v6 else ".")]
        return got[:index] == prefix and low <= got[index] <= high

    return match


def address_matcher(pattern: str | None) -> AddressMatcher:
    """A matcher for one pattern (see the module docstring).

    Raises:
        AddressPatternError: the pattern fits none of the forms.
    """
    text = (pattern or "").strip()
    if not text:
        return lambda ip: False
    if text in _EVERYTHING:
        return lambda ip: True
    if text.endswith("}"):
        head, brace, items = text[:-1].partition("{")
        if not brace or not items:
            raise AddressPatternError(f"{text!r}: a list needs 'prefix{{a,b}}'")
        allowed = {_exact(head + item.strip(), text) for item in items.split(",")}
        return lambda ip: _canonical(ip) in allowed
    if "," in text:
        allowed = {_exact(a, text) for a in text.split(",")}
        return lambda ip: _canonical(ip) in allowed
    if "*" in text or "-" in text:
        return _range_matcher(text)
    one = _exact(text, text)
    return lambda ip: _canonical(ip) == one
