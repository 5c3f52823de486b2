"""The allocation strategies give exactly what RocketMQ's Java classes give for fixed inputs.

The expected assignments were computed by running a transcription of the Java algorithms
(`AllocateMessageQueueAveragely`, `...AveragelyByCircle`, `...ByMachineRoom`,
`...ConsistentHash` with `ConsistentHashRouter`'s MD5 ring) on a JDK, with the consumer ids and
queues sorted as `RebalanceImpl` sorts them. The inputs here are given unsorted on purpose.
"""

from __future__ import annotations

import pytest

from rmqkit.client.allocate import (
    Allocate,
    allocate_averagely,
    allocate_averagely_by_circle,
    by_machine_room,
    consistent_hash,
    java_queue_string,
    md5_hash,
    strategy,
)
from rmqkit.client.message import MessageQueue

CIDS = ["10.0.0.3@8801", "10.0.0.1@4242", "10.0.0.2@77"]
FIVE = ["c5", "c1", "c4", "c2", "c3"]


def queues(brokers: list[str], n: int) -> list[MessageQueue]:
    return [MessageQueue("TopicTest", b, i) for b in brokers for i in range(n)]


def assignment(alloc: Allocate, mqs: list[MessageQueue], cids: list[str]) -> dict[str, list[str]]:
    return {c: [f"{q.broker_name}:{q.queue_id}" for q in alloc(c, mqs, cids)] for c in cids}


TEN = queues(["broker-b", "broker-a"], 5)
THREE = queues(["broker-a"], 3)
SIXTEEN = queues(["broker-b", "broker-a"], 8)


def test_averagely_as_java() -> None:
    assert assignment(allocate_averagely, TEN, CIDS) == {
        "10.0.0.1@4242": ["broker-a:0", "broker-a:1", "broker-a:2", "broker-a:3"],
        "10.0.0.2@77": ["broker-a:4", "broker-b:0", "broker-b:1"],
        "10.0.0.3@8801": ["broker-b:2", "broker-b:3", "broker-b:4"],
    }
    assert assignment(allocate_averagely, THREE, FIVE) == {
        "c1": ["broker-a:0"], "c2": ["broker-a:1"], "c3": ["broker-a:2"], "c4": [], "c5": [],
    }  # fmt: skip


def test_averagely_by_circle_as_java() -> None:
    assert assignment(allocate_averagely_by_circle, TEN, CIDS) == {
        "10.0.0.1@4242": ["broker-a:0", "broker-a:3", "broker-b:1", "broker-b:4"],
        "10.0.0.2@77": ["broker-a:1", "broker-a:4", "broker-b:2"],
        "10.0.0.3@8801": ["broker-a:2", "broker-b:0", "broker-b:3"],
    }
    assert assignment(allocate_averagely_by_circle, THREE, FIVE) == {
        "c1": ["broker-a:0"], "c2": ["broker-a:1"], "c3": ["broker-a:2"], "c4": [], "c5": [],
    }  # fmt: skip


def test_machine_room_as_java() -> None:
    # "hz" has no '@' and "hz@x@y" has three parts: Java's split("@") leaves them out; the
    # trailing '@' of "hz@broker-d@" is dropped by split, so that broker counts as room hz.
    mqs = queues(["hz@broker-a", "sh@broker-b", "hz@broker-c", "hz", "hz@x@y", "hz@broker-d@"], 3)
    assert assignment(by_machine_room({"hz"}), mqs, CIDS) == {
        "10.0.0.1@4242": ["hz@broker-a:0", "hz@broker-a:1", "hz@broker-a:2"],
        "10.0.0.2@77": ["hz@broker-c:0", "hz@broker-c:1", "hz@broker-c:2"],
        "10.0.0.3@8801": ["hz@broker-d@:0", "hz@broker-d@:1", "hz@broker-d@:2"],
    }


def test_machine_room_remainder_goes_to_the_first_consumers() -> None:
    mqs = queues(["hz@a"], 5)
    got = assignment(by_machine_room({"hz"}), mqs, ["x", "y"])
    assert got == {"x": ["hz@a:0", "hz@a:1", "hz@a:4"], "y": ["hz@a:2", "hz@a:3"]}


def test_md5_ring_hash_as_java() -> None:
    assert md5_hash(java_queue_string(MessageQueue("TopicTest", "broker-a", 0))) == 1987926524
    assert md5_hash("10.0.0.1@4242-0") == 1476851933


@pytest.mark.parametrize(
    ("virtual_nodes", "cids", "expected"),
    [
        (10, CIDS, {
            "10.0.0.1@4242": ["broker-a:1", "broker-a:2", "broker-a:6", "broker-a:7",
                              "broker-b:1", "broker-b:3", "broker-b:5"],
            "10.0.0.2@77": ["broker-a:3", "broker-a:4", "broker-a:5", "broker-b:2", "broker-b:4"],
            "10.0.0.3@8801": ["broker-a:0", "broker-b:0", "broker-b:6", "broker-b:7"],
        }),
        (3, CIDS, {
            "10.0.0.1@4242": ["broker-a:1", "broker-a:2", "broker-a:4", "broker-a:7",
                              "broker-b:1", "broker-b:3", "broker-b:5"],
            "10.0.0.2@77": ["broker-a:3", "broker-a:5", "broker-a:6", "broker-b:2", "broker-b:4",
                            "broker-b:6"],
            "10.0.0.3@8801": ["broker-a:0", "broker-b:0", "broker-b:7"],
        }),
        (10, [*CIDS, "10.0.0.4@1"], {
            "10.0.0.1@4242": ["broker-a:1", "broker-a:2", "broker-a:6", "broker-b:1",
                              "broker-b:3", "broker-b:5"],
            "10.0.0.2@77": ["broker-a:3", "broker-a:5", "broker-b:2", "broker-b:4"],
            "10.0.0.3@8801": ["broker-a:0", "broker-b:0", "broker-b:6", "broker-b:7"],
            "10.0.0.4@1": ["broker-a:4", "broker-a:7"],
        }),
    ],
)  # fmt: skip
def test_consistent_hash_as_java(
    virtual_nodes: int, cids: list[str], expected: dict[str, list[str]]
) -> None:
    assert assignment(consistent_hash(virtual_nodes), SIXTEEN, cids) == expected


def test_consistent_hash_collision_keeps_the_last_node_put() -> None:
    # Every node hashes alike: Java's TreeMap keeps the last put, the last consumer in order.
    alloc = consistent_hash(3, hash_function=lambda key: 7)
    got = assignment(alloc, THREE, ["b", "c", "a"])
    assert got == {"a": [], "b": [], "c": ["broker-a:0", "broker-a:1", "broker-a:2"]}


def test_consistent_hash_without_virtual_nodes_allocates_nothing() -> None:
    assert consistent_hash(0)("a", THREE, ["a"]) == []
    with pytest.raises(ValueError, match="virtual_nodes"):
        consistent_hash(-1)


def test_strategies_by_java_name() -> None:
    assert strategy("AVG") is allocate_averagely
    assert strategy("avg_by_circle") is allocate_averagely_by_circle
    assert assignment(strategy("CONSISTENT_HASH"), SIXTEEN, CIDS) == assignment(
        consistent_hash(10), SIXTEEN, CIDS
    )
    rooms = strategy("MACHINE_ROOM", consumer_rooms={"hz"})
    assert rooms("a", queues(["hz@a", "sh@b"], 1), ["a"]) == [MessageQueue("TopicTest", "hz@a", 0)]
    with pytest.raises(ValueError, match="consumer_rooms"):
        strategy("MACHINE_ROOM")
    with pytest.raises(ValueError, match="unknown"):
        strategy("NEARBY")
