"""Queue allocation among the consumers of a group (RocketMQ `AllocateMessageQueueStrategy`).

Every consumer sorts the group's queues and client ids the same way and computes its own share,
so the group agrees on an assignment without talking. The four strategies give the same answers
as RocketMQ's Java classes, so rmqkit consumers can share a group with Java ones.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Sequence

from rmqkit.client.message import MessageQueue

Allocate = Callable[[str, Sequence[MessageQueue], Sequence[str]], list[MessageQueue]]


def _prepare(
    cid: str, mqs: Sequence[MessageQueue], cids: Sequence[str]
) -> tuple[int, list[MessageQueue], list[str]] | None:
    all_cids = sorted(set(cids))
    if cid not in all_cids or not mqs:
        return None
    ordered = sorted(mqs, key=lambda q: (q.topic, q.broker_name, q.queue_id))
    return all_cids.index(cid), ordered, all_cids


def allocate_averagely(
    cid: str, mqs: Sequence[MessageQueue], cids: Sequence[str]
) -> list[MessageQueue]:
    """Contiguous blocks; the first `len(mqs) % len(cids)` consumers get one queue more."""
    prep = _prepare(cid, mqs, cids)
    if prep is None:
        return []
    index, ordered, all_cids = prep
    n, c = len(ordered), len(all_cids)
    mod = n % c
    if n <= c:
        size = 1
    elif mod > 0 and index < mod:
        size = n // c + 1
    else:
        size = n // c
    start = index * size if mod > 0 and index < mod else index * size + mod
    count = min(size, n - start)
    return [ordered[(start + i) % n] for i in range(max(0, count))]


def allocate_averagely_by_circle(
    cid: str, mqs: Sequence[MessageQueue], cids: Sequence[str]
) -> list[MessageQueue]:
    """Round-robin: queue i goes to consumer i % len(cids)."""
    prep = _prepare(cid, mqs, cids)
    if prep is None:
        return []
    index, ordered, all_cids = prep
    return [q for i, q in enumerate(ordered) if i % len(all_cids) == index]


def _md5_hash(key: str) -> int:
    d = hashlib.md5(key.encode("utf-8"), usedforsecurity=False).digest()
    return (d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]


def consistent_hash(virtual_nodes: int = 10) -> Allocate:
    """A hash ring with `virtual_nodes` per consumer (MD5 of `cid-i`); a queue goes to the next
    node clockwise from the MD5 of its Java `toString()`. Moves few queues when members change."""

    def allocate(cid: str, mqs: Sequence[MessageQueue], cids: Sequence[str]) -> list[MessageQueue]:
        prep = _prepare(cid, mqs, cids)
        if prep is None:
            return []
        _, ordered, all_cids = prep
        ring = sorted((_md5_hash(f"{c}-{i}"), c) for c in all_cids for i in range(virtual_nodes))
        keys = [h for h, _ in ring]
        out = []
        for q in ordered:
            h = _md5_hash(f"MessageQueue [topic={q.topic}, brokerName={q.broker_name}, "
                          f"queueId={q.queue_id}]")  # fmt: skip
            i = bisect.bisect_left(keys, h)
            if ring[i % len(ring)][1] == cid:
                out.append(q)
        return out

    return allocate


def by_machine_room(consumer_rooms: set[str]) -> Allocate:
    """Queues of brokers named `room@name` whose room is in `consumer_rooms`, shared averagely."""

    def allocate(cid: str, mqs: Sequence[MessageQueue], cids: Sequence[str]) -> list[MessageQueue]:
        prep = _prepare(cid, mqs, cids)
        if prep is None:
            return []
        index, ordered, all_cids = prep
        premq = [q for q in ordered if q.broker_name.split("@", 1)[0] in consumer_rooms]
        c = len(all_cids)
        mod, rem = divmod(len(premq), c)
        out = premq[index * mod : index * mod + mod]
        if rem > index:
            out.append(premq[index + mod * c])
        return out

    return allocate
