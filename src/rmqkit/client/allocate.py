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


def md5_hash(key: str) -> int:
    """The first 4 bytes of the MD5 of `key` as an unsigned int (RocketMQ's default ring hash)."""
    d = hashlib.md5(key.encode("utf-8"), usedforsecurity=False).digest()
    return (d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]


def java_queue_string(q: MessageQueue) -> str:
    """`MessageQueue.toString()` in Java: the key a queue is hashed by on the ring."""
    return f"MessageQueue [topic={q.topic}, brokerName={q.broker_name}, queueId={q.queue_id}]"


def consistent_hash(
    virtual_nodes: int = 10, hash_function: Callable[[str], int] = md5_hash
) -> Allocate:
    """A hash ring with `virtual_nodes` per consumer (the hash of `cid-i`); a queue goes to the
    first node at or after the hash of its Java `toString()`, wrapping round. Moves few queues
    when members change.

    Two nodes with one hash keep the later one (consumers in sorted order, then `i`), as Java's
    `TreeMap.put` does.
    """
    if virtual_nodes < 0:
        raise ValueError(f"virtual_nodes must be >= 0, not {virtual_nodes}")

    def allocate(cid: str, mqs: Sequence[MessageQueue], cids: Sequence[str]) -> list[MessageQueue]:
        prep = _prepare(cid, mqs, cids)
        if prep is None:
            return []
        _, ordered, all_cids = prep
        nodes: dict[int, str] = {}
        for c in all_cids:
            for i in range(virtual_nodes):
                nodes[hash_function(f"{c}-{i}")] = c
        if not nodes:
            return []
        keys = sorted(nodes)
        out = []
        for q in ordered:
            i = bisect.bisect_left(keys, hash_function(java_queue_string(q)))
            if nodes[keys[i % len(keys)]] == cid:
                out.append(q)
        return out

    return allocate


def _machine_room(broker_name: str) -> str | None:
    """The room of a `room@name` broker, split as Java's `String.split("@")` does (trailing
    empty parts dropped); None unless that gives exactly two parts."""
    parts = broker_name.split("@")
    while parts and not parts[-1]:
        parts.pop()
    return parts[0] if len(parts) == 2 else None


def by_machine_room(consumer_rooms: set[str]) -> Allocate:
    """Queues of brokers named `room@name` whose room is in `consumer_rooms`, shared averagely:
    equal blocks first, then the remainder one each to the first consumers."""

    def allocate(cid: str, mqs: Sequence[MessageQueue], cids: Sequence[str]) -> list[MessageQueue]:
        prep = _prepare(cid, mqs, cids)
        if prep is None:
            return []
        index, ordered, all_cids = prep
        premq = [q for q in ordered if _machine_room(q.broker_name) in consumer_rooms]
        c = len(all_cids)
        mod, rem = divmod(len(premq), c)
        out = premq[index * mod : index * mod + mod]
        if rem > index:
            out.append(premq[index + mod * c])
        return out

    return allocate


def strategy(name: str, *, consumer_rooms: set[str] | None = None) -> Allocate:
    """A strategy by RocketMQ's name for it (`getName()`): AVG, AVG_BY_CIRCLE, CONSISTENT_HASH,
    MACHINE_ROOM (which needs `consumer_rooms`).

    Raises:
        ValueError: an unknown name, or MACHINE_ROOM without rooms.
    """
    key = name.strip().upper()
    if key == "AVG":
        return allocate_averagely
    if key == "AVG_BY_CIRCLE":
        return allocate_averagely_by_circle
    if key == "CONSISTENT_HASH":
        return consistent_hash()
    if key == "MACHINE_ROOM":
        if not consumer_rooms:
            raise ValueError("MACHINE_ROOM allocation needs consumer_rooms")
        return by_machine_room(consumer_rooms)
    raise ValueError(f"unknown allocation strategy {name!r}; "
                     "use AVG, AVG_BY_CIRCLE, CONSISTENT_HASH or MACHINE_ROOM")  # fmt: skip
