"""The official C++ client (PyPI `rocketmq` 0.4.4, bundled librocketmq) against `rmqkit serve`.

It speaks differently from ali-ons: SEND_MESSAGE (code 10, long header names), language CPP,
integer enums and a string subVersion in its heartbeat, several requests in flight on one
connection, and it relies on QUERY_CONSUMER_OFFSET answering 0 for a new group to see messages
sent before it started.
"""

from __future__ import annotations

import pytest

from .harness import Lab

pytestmark = pytest.mark.integration


def messages(prefix: str, n: int) -> list[dict[str, str]]:
    tags = ("TagA", "TagB")
    return [
        {"body": f"{prefix}{i}", "tag": tags[i % 2], "keys": f"key-{prefix}{i}"} for i in range(n)
    ]


async def test_sync_send_then_push_consume_with_and_without_tag_filter(lab: Lab) -> None:
    await lab.create_topic("TP_cpp")
    # Sent before any consumer exists: delivered only if a new group starts at offset 0.
    early = messages("early", 8)
    early.append({"body": "x" * 6000, "tag": "TagA", "keys": "big"})  # > 4 KiB: zlib-compressed
    producer = await lab.produce("cpp", "TP_cpp", early)
    uniq = {s["body"]: s["msgId"] for s in producer.of("sent")}

    every = await lab.cpp("consumer-all", "consume", group="GID_cpp_all", topic="TP_cpp")
    only_a = await lab.cpp("consumer-TagA", "consume", group="GID_cpp_a", topic="TP_cpp",
                           subExpression="TagA")  # fmt: skip

    def wanted(batch: list[dict[str, str]], tag: str | None = None) -> set[str]:
        return {m["body"] for m in batch if tag is None or m["tag"] == tag}

    await every.wait_for(lambda: set(every.bodies) >= wanted(early), what="early messages")
    await only_a.wait_for(lambda: set(only_a.bodies) >= wanted(early, "TagA"), what="early TagA")

    # Sent while both consumers long-poll: the arrivals must release their parked pulls.
    late = messages("late", 8) + [
        {"body": f"tail{i}", "tag": "TagA", "keys": "t"} for i in range(4)
    ]
    producer = await lab.produce("cpp", "TP_cpp", late)
    uniq.update({s["body"]: s["msgId"] for s in producer.of("sent")})
    await every.wait_for(lambda: set(every.bodies) == wanted(early + late), what="all messages")
    await only_a.wait_for(
        lambda: set(only_a.bodies) == wanted(early + late, "TagA"), what="all TagA messages"
    )

    sent = {m["body"]: m for m in early + late}
    for m in every.messages + only_a.messages:
        s = sent[m["body"]]
        assert (m["tags"], m["keys"], m["msgId"]) == (s["tag"], s["keys"], uniq[m["body"]])
    await every.finish_ok()
    await only_a.finish_ok()
    assert len(every.messages) == len(sent), "a message was consumed twice"
    assert {m["tags"] for m in only_a.messages} == {"TagA"}, only_a.describe()
    # The 4 TagA "tail" messages went round-robin to all 4 queues and were the last of each, so
    # the TagA consumer has passed every TagB message: none reached its handler.
    tail_queues = {m["queueId"] for m in every.messages if m["body"].startswith("tail")}
    assert tail_queues == {0, 1, 2, 3}, every.describe()
    await lab.stop_server()


async def test_clustering_members_split_the_queues_and_rebalance_when_one_leaves(lab: Lab) -> None:
    await lab.create_topic("TP_cpp_group")
    c1 = await lab.cpp("member-1", "consume", group="GID_cpp_group", topic="TP_cpp_group")
    c2 = await lab.cpp("member-2", "consume", group="GID_cpp_group", topic="TP_cpp_group")

    def split() -> bool:
        a, b = c1.cpp_allocation("TP_cpp_group"), c2.cpp_allocation("TP_cpp_group")
        return bool(a and b and not a & b and a | b == {0, 1, 2, 3})

    # The second member's heartbeat makes the broker send NOTIFY_CONSUMER_IDS_CHANGED to the
    # first, which rebalances at once (its own timer would take 20 s).
    await c1.wait_for(split, what="the two members split the 4 queues")
    producer = await lab.produce("cpp", "TP_cpp_group", messages("g", 20))
    bodies = {s["body"] for s in producer.of("sent")}
    await c1.wait_for(lambda: set(c1.bodies) | set(c2.bodies) == bodies, what="every message")
    for member in (c1, c2):
        assert member.messages, f"{member.name} got no share\n{member.describe()}"
        mine = member.cpp_allocation("TP_cpp_group") or set()
        assert {m["queueId"] for m in member.messages} <= mine, member.describe()
    assert len(c1.messages) + len(c2.messages) == 20, "a message was consumed twice"

    # member-1 leaves (UNREGISTER_CLIENT): member-2 is notified and takes over every queue,
    # starting from the offsets member-1 committed.
    await c1.finish_ok()
    await c2.wait_for(lambda: c2.cpp_allocation("TP_cpp_group") == {0, 1, 2, 3}, what="takeover")
    producer = await lab.produce("cpp", "TP_cpp_group", messages("after", 8))
    after = {s["body"] for s in producer.of("sent")}
    await c2.wait_for(lambda: set(c2.bodies) >= after, what="messages after the takeover")
    await c2.finish_ok()
    assert len(c2.messages) == len(set(c2.bodies)), "a message was consumed twice"
    assert not set(c1.bodies) & set(c2.bodies), "member-2 re-consumed member-1's messages"
    await lab.stop_server()
