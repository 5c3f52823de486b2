"""ali-ons 3.12.0 (the pure-JS remoting client) against `rmqkit serve`.

Covers what ali-ons does on the wire: NameServer routes, SEND_MESSAGE_V2, heartbeats, the consumer
list and rebalancing, QUERY/UPDATE_CONSUMER_OFFSET, long-polling PULL with tag subscriptions,
UNREGISTER_CLIENT at close.
"""

from __future__ import annotations

import pytest

from .harness import Client, Lab

pytestmark = pytest.mark.integration

QUEUES = {0, 1, 2, 3}


def split_evenly(a: Client, b: Client) -> bool:
    qa, qb = a.queues(), b.queues()
    return bool(qa and qb and not qa & qb and qa | qb == QUEUES)


async def test_clustering_consumers_share_the_queues_and_get_every_message(lab: Lab) -> None:
    await lab.create_topic("TP_cluster")
    c1 = await lab.alions("consumer-1", "consume", group="GID_cluster", topic="TP_cluster")
    c2 = await lab.alions("consumer-2", "consume", group="GID_cluster", topic="TP_cluster")
    # Both heart-beat, see each other in GET_CONSUMER_LIST_BY_GROUP and split the 4 queues.
    await c1.wait_for(lambda: split_evenly(c1, c2), what="queues split between the consumers")

    msgs = [{"body": f"m{i}", "tag": "TagA", "keys": [f"k{i}"]} for i in range(20)]
    producer = await lab.produce("alions", "TP_cluster", msgs)
    sent = {s["body"]: s for s in producer.of("sent")}
    assert {int(s["queueId"]) for s in sent.values()} == QUEUES  # round robin over 4 queues

    await c1.wait_for(
        lambda: set(c1.bodies) | set(c2.bodies) == set(sent), what="all 20 messages consumed"
    )
    keys = {m["body"]: m["keys"][0] for m in msgs}
    for consumer in (c1, c2):
        mine = consumer.queues()
        assert consumer.messages, f"{consumer.name} got no share\n{consumer.describe()}"
        for m in consumer.messages:
            s = sent[m["body"]]
            assert m["queueId"] in mine, m  # only from its own queues
            # The offsetMsgId ali-ons derives from the stored record equals the send result's.
            assert (m["msgId"], m["queueId"], m["queueOffset"], m["tags"], m["keys"]) == (
                s["msgId"], int(s["queueId"]), s["queueOffset"], "TagA", keys[m["body"]]
            )  # fmt: skip
    assert len(c1.bodies) + len(c2.bodies) == 20, "a message was consumed twice"
    await c1.finish_ok()
    await c2.finish_ok()

    # Closing committed the offsets (UPDATE_CONSUMER_OFFSET): a new member of the group resumes
    # after the 20 and sees only what comes next.
    c3 = await lab.alions("consumer-3", "consume", group="GID_cluster", topic="TP_cluster")
    await c3.wait_for(lambda: c3.queues() == QUEUES, what="all queues taken")
    await lab.produce("alions", "TP_cluster", [{"body": "after", "tag": "TagA"}])
    await c3.wait_for(lambda: "after" in c3.bodies, what="the message sent after the restart")
    await c3.finish_ok()
    assert c3.bodies == ["after"], c3.describe()
    await lab.stop_server()


async def test_broadcasting_consumers_each_get_every_message(lab: Lab) -> None:
    await lab.create_topic("TP_broadcast")
    consumers = [
        await lab.alions(
            f"consumer-{i}", "consume", group="GID_bcast", topic="TP_broadcast", broadcast=True
        )
        for i in (1, 2)
    ]
    for c in consumers:
        await c.wait_for(lambda c=c: c.queues() == QUEUES, what="all queues taken")

    bodies = [f"b{i}" for i in range(12)]
    await lab.produce("alions", "TP_broadcast", [{"body": b, "tag": "TagB"} for b in bodies])

    for c in consumers:
        await c.wait_for(lambda c=c: sorted(c.bodies) == sorted(bodies), what="every message")
    for c in consumers:
        await c.finish_ok()
        assert sorted(c.bodies) == sorted(bodies), c.describe()  # and nothing twice
    await lab.stop_server()


async def test_tag_subscriptions_get_only_their_tags(lab: Lab) -> None:
    await lab.create_topic("TP_tags")
    only_a = await lab.alions("only-TagA", "consume", group="GID_a", topic="TP_tags",
                              subExpression="TagA")  # fmt: skip
    a_or_c = await lab.alions("TagA-or-TagC", "consume", group="GID_ac", topic="TP_tags",
                              subExpression="TagA || TagC")  # fmt: skip
    for c in (only_a, a_or_c):
        await c.wait_for(lambda c=c: c.queues() == QUEUES, what="all queues taken")

    tags = ["TagA", "TagB", "TagC"]
    mixed = [{"body": f"t{i}-{tags[i % 3]}", "tag": tags[i % 3]} for i in range(24)]
    # A TagA message last on every queue: once it arrives, every earlier one there was filtered.
    closing = [{"body": f"end{i}-TagA", "tag": "TagA"} for i in range(4)]
    producer = await lab.produce("alions", "TP_tags", mixed + closing)
    sent = producer.of("sent")
    last_on_queue = {int(s["queueId"]): s["tag"] for s in sent}
    assert set(last_on_queue.values()) == {"TagA"}, sent

    def bodies_with(*wanted: str) -> set[str]:
        return {s["body"] for s in sent if s["tag"] in wanted}

    await only_a.wait_for(lambda: set(only_a.bodies) == bodies_with("TagA"), what="TagA")
    await a_or_c.wait_for(lambda: set(a_or_c.bodies) == bodies_with("TagA", "TagC"), what="A|C")
    for c in (only_a, a_or_c):
        await c.finish_ok()
    assert {m["tags"] for m in only_a.messages} == {"TagA"}
    assert {m["tags"] for m in a_or_c.messages} == {"TagA", "TagC"}
    assert len(only_a.messages) == 12 and len(a_or_c.messages) == 20
    await lab.stop_server()
