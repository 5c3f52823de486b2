"""Plain ACL address patterns (RocketMQ's `RemoteAddressStrategyFactory`): every form, v4 and v6."""

from __future__ import annotations

import pytest

from rmqkit.server.acl.addresses import AddressPatternError, address_matcher

MATCHES: list[tuple[str | None, str, bool]] = [
    # blank: matches nothing
    (None, "10.0.0.1", False),
    ("", "10.0.0.1", False),
    ("   ", "::1", False),
    # everything
    ("*", "10.0.0.1", True),
    ("*", "::1", True),
    ("*", "not-an-address", True),
    ("*.*.*.*", "192.168.7.9", True),
    ("*:*:*:*:*:*:*:*", "fe80::1", True),
    (" * ", "10.0.0.1", True),
    # prefix and a list of last parts
    ("192.168.1.{1,2,10}", "192.168.1.1", True),
    ("192.168.1.{1,2,10}", "192.168.1.10", True),
    ("192.168.1.{1,2,10}", "192.168.1.3", False),
    ("192.168.1.{1,2,10}", "192.168.2.1", False),
    ("192.168.1.{ 1, 2 }", "192.168.1.2", True),
    ("fe80::{1,2}", "fe80::2", True),
    ("fe80::{1,2}", "FE80:0:0:0:0:0:0:1", True),
    ("fe80::{1,2}", "fe80::3", False),
    # a list of whole addresses
    ("10.0.0.1,10.0.0.2", "10.0.0.2", True),
    ("10.0.0.1, 10.0.0.2", "10.0.0.2", True),
    ("10.0.0.1,10.0.0.2", "10.0.0.3", False),
    ("::1,::2", "0:0:0:0:0:0:0:2", True),
    ("::1,10.0.0.1", "10.0.0.1", True),
    ("::1,::2", "::3", False),
    # IPv4 ranges: the first '*' or 'a-b' after the first part decides; later parts ignored
    ("192.168.*.*", "192.168.7.9", True),
    ("192.168.*.*", "192.169.7.9", False),
    ("192.168.1.*", "192.168.1.255", True),
    ("192.168.1.*", "192.168.2.1", False),
    ("10.*.*.*", "10.200.1.1", True),
    ("10.*.5.5", "10.200.1.1", True),
    ("192.168.1.1-10", "192.168.1.1", True),
    ("192.168.1.1-10", "192.168.1.10", True),
    ("192.168.1.1-10", "192.168.1.0", False),
    ("192.168.1.1-10", "192.168.1.11", False),
    ("192.168.1.1-10", "192.168.2.5", False),
    ("192.168.1-3.*", "192.168.2.200", True),
    ("192.168.1-3.*", "192.168.4.200", False),
    ("192.168.1-3.7", "192.168.2.200", True),
    ("10.0-0.*.*", "10.0.9.9", True),
    ("10.*.*.*", "garbage", False),
    ("10.*.*.*", "::1", False),
    # IPv6 ranges: hexadecimal parts, '::' expanded
    ("fe80:0:0:0:0:0:0:1-ff", "fe80::ff", True),
    ("fe80:0:0:0:0:0:0:1-ff", "fe80::1", True),
    ("fe80:0:0:0:0:0:0:1-ff", "fe80::100", False),
    ("fe80:0:0:0:0:0:0:1-ff", "fe80::0", False),
    ("fe80::*", "fe80::abcd", True),
    ("FE80::*", "fe80::ffff", True),
    ("fe80::*", "fe80:1::abcd", False),
    ("fe80::*", "fe81::1", False),
    ("fe80:*:0:0:0:0:0:0", "fe80:1:2:3:4:5:6:7", True),
    ("fe80::1-ff", "fe80::a0", True),
    ("fe80::*", "10.0.0.1", False),
    # one address
    ("10.0.0.1", "10.0.0.1", True),
    (" 10.0.0.1 ", "10.0.0.1", True),
    ("10.0.0.1", "10.0.0.2", False),
    ("10.0.0.1", "not-an-ip", False),
    ("::1", "::1", True),
    ("::1", "0:0:0:0:0:0:0:1", True),
    ("::1", "::2", False),
    ("FE80::1", "fe80:0000::0001", True),
    ("[::1]", "::1", True),
    # IPv4-mapped IPv6 clients (dual-stack sockets) match their IPv4 patterns
    ("10.0.0.1", "::ffff:10.0.0.1", True),
    ("10.0.0.1", "::ffff:10.0.0.2", False),
    ("10.*.*.*", "::ffff:10.1.2.3", True),
    ("10.*.*.*", "::ffff:11.1.2.3", False),
    ("10.0.0.1-5", "::ffff:10.0.0.3", True),
    ("10.0.0.{1,2}", "::ffff:10.0.0.2", True),
    ("10.0.0.1,10.0.0.2", "::ffff:10.0.0.1", True),
    ("::ffff:10.0.0.1", "10.0.0.1", True),
]


@pytest.mark.parametrize(("pattern", "ip", "expected"), MATCHES)
def test_pattern_matches(pattern: str | None, ip: str, expected: bool) -> None:
    assert address_matcher(pattern)(ip) is expected


REFUSED = [
    # prefix lists
    "192.168.{1,2}",  # prefix too short: "192.168.1" is no address
    "{1,2}",
    "192.168.1.{}",
    "192.168.1.1}",
    "192.168.1.{1,x}",
    "192.168.1.{1,256}",
    "192.168.1.{1,}",
    # address lists
    "10.0.0.1,not-an-ip",
    "10.0.0.1,",
    "10.0.0.1,10.0.0.256",
    # IPv4 ranges
    "192.168.*",
    "1.2.3.4.*",
    "*.168.1.1",
    "10.x.*.*",
    "10.0.0.5-3",
    "10.0.0.1-300",
    "10.0.0.a-b",
    "10.0.0.-5",
    "10.0.0.1-2-3",
    "300.0.0.*",
    # IPv6 ranges
    "fe80:0:0:0:0:0:0:ff-1",
    "fe80:0:0:0:0:0:0:1-10000",
    "fe80:0:0:0:0:0:0:g-h",
    "fe80:0:0:*",
    "*::1",
    "::ffff:10.0.0.1-5",
    # one address
    "10.0.0.256",
    "10.0.0",
    "localhost",
    "10.0.0.0/24",
    "fe80::1::2",
]


@pytest.mark.parametrize("pattern", REFUSED)
def test_bad_pattern_raises(pattern: str) -> None:
    with pytest.raises(AddressPatternError):
        address_matcher(pattern)


def test_error_message_names_the_pattern() -> None:
    with pytest.raises(AddressPatternError, match=r"10\.0\.0\.5-3"):
        address_matcher("10.0.0.5-3")
    with pytest.raises(AddressPatternError, match="localhost"):
        address_matcher("localhost")


def test_pattern_error_is_a_value_error() -> None:
    assert issubclass(AddressPatternError, ValueError)


@pytest.mark.parametrize("pattern", ["192.168.*.banana", "fe80::*::1"])
def test_garbage_after_the_range_part_is_refused(pattern: str) -> None:
    with pytest.raises(AddressPatternError):
        address_matcher(pattern)


# A socket reports a link-local IPv6 peer with its zone ("fe80::1%eth0"): the zone is ignored.


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("fe80::1", True),
        ("fe80::{1,2}", True),
        ("fe80::*", True),
        ("fe80::2", False),
        ("10.0.0.*", False),
        ("10.0.0.1,10.0.0.2", False),
    ],
)
def test_client_address_with_a_zone_id(pattern: str, expected: bool) -> None:
    assert address_matcher(pattern)("fe80::1%eth0") is expected


def test_pattern_with_a_zone_id_is_read_or_refused_cleanly() -> None:
    # plain.py turns only AddressPatternError into a ConfigurationError naming the file.
    try:
        address_matcher("fe80::1%eth0")
    except AddressPatternError:
        pass
