"""Messages cross clients: what one client stores through rmqkit, another client decodes.

ali-ons writes SEND_MESSAGE_V2 with native-JSON header values and compresses bodies over 4 KiB;
the C++ client writes SEND_MESSAGE (v1 header names) with its UNIQ_KEY. Each consumer
must get the exact bodies, tags and keys. The rmqkit client's directions are in
test_rmqkit_client.py.
"""

from __future__ import annotations

import pytest

from .harness import Lab

pytestmark = pytest.mark.integration

BIG = "".join(chr(ord("a") + i % 26) for i in range(6000))  # both clients deflate > 4 KiB


async def test_alions_produces_cpp_consumes(lab: Lab) -> None:
    await lab.create_topic("TP_js_to_cpp")
    msgs = [{"body": f"js{i}", "tag": f"Tag{i % 3}", "keys": [f"js-key{i}"]} for i in range(10)]
    msgs.append({"body": BIG, "tag": "Big", "keys": ["big"]})
    before = msgs[:5]  # sent before the consumer starts, the rest while it long-polls
    await lab.produce("alions", "TP_js_to_cpp", before)
    consumer = await lab.cpp("cpp-consumer", "consume", group="GID_js_cpp", topic="TP_js_to_cpp")
    await consumer.wait_for(lambda: consumer.of("ready"), what="consumer started")
    await lab.produce("alions", "TP_js_to_cpp", msgs[5:])

    expected = {m["body"]: (m["tag"], m["keys"][0]) for m in msgs}
    await consumer.wait_for(lambda: set(consumer.bodies) == set(expected), what="every message")
    await consumer.finish_ok()
    got = {m["body"]: (m["tags"], m["keys"]) for m in consumer.messages}
    assert got == expected
    assert len(consumer.messages) == len(msgs)
    await lab.stop_server()


async def test_cpp_produces_alions_consumes(lab: Lab) -> None:
    await lab.create_topic("TP_cpp_to_js")
    msgs = [{"body": f"cpp{i}", "tag": f"Tag{i % 2}", "keys": f"cpp-key{i}"} for i in range(10)]
    msgs.append({"body": BIG, "tag": "Tag0", "keys": "big"})
    every = await lab.alions("alions-all", "consume", group="GID_cpp_js", topic="TP_cpp_to_js")
    tag0 = await lab.alions("alions-Tag0", "consume", group="GID_cpp_js0", topic="TP_cpp_to_js",
                            subExpression="Tag0")  # fmt: skip
    for c in (every, tag0):
        await c.wait_for(lambda c=c: c.queues() == {0, 1, 2, 3}, what="all queues taken")
    await lab.produce("cpp", "TP_cpp_to_js", msgs)

    expected = {m["body"]: (m["tag"], m["keys"]) for m in msgs}
    await every.wait_for(lambda: set(every.bodies) == set(expected), what="every message")
    want0 = {b for b, (tag, _) in expected.items() if tag == "Tag0"}
    await tag0.wait_for(lambda: set(tag0.bodies) >= want0, what="the Tag0 messages")
    for c in (every, tag0):
        await c.finish_ok()
    assert {m["body"]: (m["tags"], m["keys"]) for m in every.messages} == expected
    assert len(every.messages) == len(msgs), "a message was consumed twice"
    assert {m["tags"] for m in tag0.messages} == {"Tag0"}, tag0.describe()
    await lab.stop_server()
