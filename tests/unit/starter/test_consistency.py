"""`differences` / `describe`: a listener group's subscription against its running members'."""

from __future__ import annotations

import pytest

from rmqkit.starter.consistency import GroupView, describe, differences

RUNNING = GroupView(
    ("10.0.0.5@svc@1", "10.0.0.6@svc@1"),
    "CLUSTERING",
    {"order": ("paid || shipped", "TAG"), "%RETRY%svc": ("*", "TAG")},
)


@pytest.mark.parametrize(
    "ours",
    [
        {"order": ("paid || shipped", "TAG")},
        {"order": ("shipped||paid", "TAG")},  # the same tag set, spelt otherwise
        {"order": (" shipped || paid ", "")},  # an empty type is TAG
    ],
)
def test_the_same_subscription_differs_in_nothing(ours: dict[str, tuple[str, str]]) -> None:
    assert differences(ours, "CLUSTERING", RUNNING) == []


def test_each_difference_is_named() -> None:
    ours = {"order": ("paid", "TAG"), "audit": ("*", "TAG")}
    assert differences(ours, "CLUSTERING", RUNNING) == [
        "topic audit: here '*', there nothing",
        "topic order: here 'paid', there 'paid || shipped'",
    ]
    assert differences({"order": ("paid || shipped", "TAG")}, "BROADCASTING", RUNNING) == [
        "message model: here BROADCASTING, there CLUSTERING"
    ]


def test_star_and_sql92() -> None:
    star = GroupView(("a",), "CLUSTERING", {"t": ("*", "TAG")})
    assert differences({"t": ("", "TAG")}, "CLUSTERING", star) == []
    assert differences({"t": ("* || x", "TAG")}, "CLUSTERING", star) == []
    sql = GroupView(("a",), "CLUSTERING", {"t": ("a > 1  AND b = 'x'", "SQL92")})
    assert differences({"t": ("a > 1 AND b = 'x'", "SQL92")}, "CLUSTERING", sql) == []
    assert differences({"t": ("a > 2", "SQL92")}, "CLUSTERING", sql) == [
        "topic t: here SQL92 'a > 2', there SQL92 \"a > 1  AND b = 'x'\""
    ]


def test_broadcasting_members_may_subscribe_differently() -> None:
    running = GroupView(("a",), "BROADCASTING", {"order": ("paid", "TAG")})
    assert differences({"order": ("shipped", "TAG")}, "BROADCASTING", running) == []


def test_the_message_names_the_group_the_members_and_the_way_out() -> None:
    many = GroupView(tuple(f"id{i}" for i in range(5)), "CLUSTERING", {})
    text = describe("svc", ["topic order: here 'paid', there nothing"], many)
    assert text.startswith("listener group 'svc' subscribes differently")
    assert "(id0, id1, id2 and 2 more)" in text
    assert "topic order: here 'paid', there nothing" in text
    assert "subscription-check=warn" in text
