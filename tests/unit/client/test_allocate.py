"""Queue allocation: every queue owned by exactly one consumer, RocketMQ's shapes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rmqkit.client.allocate import (
    allocate_averagely,
    allocate_averagely_by_circle,
    by_machine_room,
    consistent_hash,
)
from rmqkit.client.message import MessageQueue


def queues(n: int, brokers: tuple[str, ...] = ("b",)) -> list[MessageQueue]:
    return [MessageQueue("T", b, i) for b in brokers for i in range(n)]


def test_averagely_gives_contiguous_blocks_extra_to_the_first() -> None:
    mqs = queues(8)
    got = {c: allocate_averagely(c, mqs, ["c1", "c2", "c3"]) for c in ("c1", "c2", "c3")}
    assert [q.queue_id for q in got["c1"]] == [0, 1, 2]
    assert [q.queue_id for q in got["c2"]] == [3, 4, 5]
    assert [q.queue_id for q in got["c3"]] == [6, 7]
    assert allocate_averagely("c9", mqs, ["c1"]) == []  # not a member: nothing


def test_more_consumers_than_queues() -> None:
    mqs = queues(2)
    cids = ["a", "b", "c"]
    assert [len(allocate_averagely(c, mqs, cids)) for c in cids] == [1, 1, 0]


def test_by_circle() -> None:
    got = allocate_averagely_by_circle("c2", queues(5), ["c1", "c2"])
    assert [q.queue_id for q in got] == [1, 3]


def test_machine_room() -> None:
    mqs = queues(2, ("hz@b1", "sh@b2", "hz@b3"))
    alloc = by_machine_room({"hz"})
    a = alloc("c1", mqs, ["c1", "c2"])
    b = alloc("c2", mqs, ["c1", "c2"])
    assert {q.broker_name for q in a + b} == {"hz@b1", "hz@b3"} and len(a) + len(b) == 4


@given(
    n=st.integers(1, 40),
    cids=st.lists(st.text("abcdef0123456789@.", min_size=1, max_size=12), min_size=1,
                  max_size=8, unique=True),
)  # fmt: skip
def test_every_strategy_partitions_the_queues(n: int, cids: list[str]) -> None:
    mqs = queues(n, ("b1", "b2"))
    for strategy in (allocate_averagely, allocate_averagely_by_circle, consistent_hash()):
        owned = [q for c in cids for q in strategy(c, mqs, cids)]
        assert sorted(owned, key=str) == sorted(mqs, key=str), strategy


def test_consistent_hash_moves_few_queues_when_a_consumer_joins() -> None:
    mqs = queues(64)
    alloc = consistent_hash()
    before = {q: c for c in ("c1", "c2", "c3") for q in alloc(c, mqs, ["c1", "c2", "c3"])}
    after = {
        q: c for c in ("c1", "c2", "c3", "c4") for q in alloc(c, mqs, ["c1", "c2", "c3", "c4"])
    }
    moved = [q for q in mqs if before[q] != after[q]]
    assert all(after[q] == "c4" for q in moved)  # only to the newcomer
