"""Choosing a queue to send to: the writable queues of a route, round-robin, avoiding brokers
that just failed (RocketMQ `TopicPublishInfo` and `LatencyFaultTolerance`).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from rmqkit.client.message import MessageQueue
from rmqkit.common.topic import perm_writable
from rmqkit.protocol.route import TopicRouteData

FAULT_AVOID_S = 30.0
"""How long a broker that failed a send is passed over while others are available."""


@dataclass(slots=True)
class PublishInfo:
    """The queues a topic can be sent to, and where their brokers are."""

    topic: str
    queues: list[MessageQueue]
    master_addrs: dict[str, str]
    order_topic: bool = False
    counter: itertools.count[int] = field(default_factory=itertools.count)

    @classmethod
    def from_route(
        cls, topic: str, route: TopicRouteData, max_queues: int | None = None
    ) -> PublishInfo:
        masters = {
            bd.broker_name: bd.broker_addrs[0] for bd in route.broker_datas if 0 in bd.broker_addrs
        }
        queues: list[MessageQueue] = []
        for qd in sorted(route.queue_datas, key=lambda q: q.broker_name):
            if qd.broker_name not in masters or not perm_writable(qd.perm):
                continue
            n = qd.write_queue_nums if max_queues is None else min(qd.write_queue_nums, max_queues)
            queues.extend(MessageQueue(topic, qd.broker_name, i) for i in range(n))
        return cls(topic, queues, masters, bool(route.order_topic_conf))

    def select(self, faults: FaultTracker, avoid_broker: str | None = None) -> MessageQueue:
        """The next queue round-robin, skipping brokers in trouble when another one is fine."""
        n = len(self.queues)
        start = next(self.counter)
        for i in range(n):
            q = self.queues[(start + i) % n]
            if q.broker_name != avoid_broker and faults.available(q.broker_name):
                return q
        for i in range(n):
            q = self.queues[(start + i) % n]
            if q.broker_name != avoid_broker:
                return q
        return self.queues[start % n]


class FaultTracker:
    """Brokers to pass over for a while after a failure."""

    def __init__(self, avoid_s: float = FAULT_AVOID_S) -> None:
        self.avoid_s = avoid_s
        self._until: dict[str, float] = {}

    def failed(self, broker_name: str) -> None:
        self._until[broker_name] = time.monotonic() + self.avoid_s

    def succeeded(self, broker_name: str) -> None:
        if self._until:  # nearly always empty: no call on the send path
            self._until.pop(broker_name, None)

    def available(self, broker_name: str) -> bool:
        if not self._until:
            return True
        until = self._until.get(broker_name)
        return until is None or time.monotonic() >= until
