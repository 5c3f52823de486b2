"""Who is connected: producer groups and consumer groups, with their subscriptions.

RocketMQ's `ConsumerManager` and `ProducerManager`. Clients are keyed by their connection; a client
that stops heart-beating for `channelExpiredTimeout` or whose connection closes leaves its groups,
and the group's remaining consumers are told (NOTIFY_CONSUMER_IDS_CHANGED) so they rebalance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rmqkit.common.subscription import SubscriptionData
from rmqkit.protocol.heartbeat import ConsumerEntry
from rmqkit.remoting.connection import Connection

log = logging.getLogger("rmqkit.broker.clients")


@dataclass(slots=True)
class ClientChannel:
    client_id: str
    conn: Connection
    language: str
    version: int
    last_update: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class ConsumerGroupInfo:
    group: str
    consume_type: str = "CONSUME_PASSIVELY"
    message_model: str = "CLUSTERING"
    consume_from_where: str = "CONSUME_FROM_LAST_OFFSET"
    subscriptions: dict[str, SubscriptionData] = field(default_factory=dict)
    clients: dict[Connection, ClientChannel] = field(default_factory=dict)

    def client_ids(self) -> list[str]:
        return sorted(c.client_id for c in self.clients.values())


class ClientRegistry:
    """Producer and consumer groups; `on_ids_changed(group)` fires when a group's members change."""

    def __init__(self, on_ids_changed: Callable[[ConsumerGroupInfo], None]) -> None:
        self.consumers: dict[str, ConsumerGroupInfo] = {}
        self.producers: dict[str, dict[Connection, ClientChannel]] = {}
        self.on_ids_changed = on_ids_changed

    def register_consumer(self, entry: ConsumerEntry, channel: ClientChannel) -> ConsumerGroupInfo:
        info = self.consumers.get(entry.group)
        if info is None:
            info = self.consumers[entry.group] = ConsumerGroupInfo(entry.group)
        info.consume_type = entry.consume_type
        info.message_model = entry.message_model
        info.consume_from_where = entry.consume_from_where
        changed = False
        old = info.clients.get(channel.conn)
        if old is None or old.client_id != channel.client_id:
            changed = True
            log.info("consumer %s joined group %s", channel.client_id, entry.group)
        info.clients[channel.conn] = channel
        subs = {}
        for s in entry.subscriptions:
            prev = info.subscriptions.get(s.topic)
            if (
                prev is not None
                and prev.sub_string == s.sub_string
                and (prev.expression_type == s.expression_type)
            ):
                subs[s.topic] = prev
            else:
                subs[s.topic] = SubscriptionData.build(s.topic, s.sub_string, s.expression_type)
                if s.sub_version:
                    subs[s.topic].sub_version = s.sub_version
                changed = changed or prev is not None
        if entry.subscriptions:
            info.subscriptions = subs
        if changed:
            self.on_ids_changed(info)
        return info

    def register_producer(self, group: str, channel: ClientChannel) -> None:
        self.producers.setdefault(group, {})[channel.conn] = channel

    def unregister(
        self, conn: Connection, *, consumer_group: str | None, producer_group: str | None
    ) -> None:
        if producer_group:
            self.producers.get(producer_group, {}).pop(conn, None)
        if consumer_group:
            info = self.consumers.get(consumer_group)
            if info is not None and info.clients.pop(conn, None) is not None:
                self._after_leave(info)

    def connection_closed(self, conn: Connection) -> None:
        for members in self.producers.values():
            members.pop(conn, None)
        for info in list(self.consumers.values()):
            if info.clients.pop(conn, None) is not None:
                self._after_leave(info)

    def expire(self, timeout_s: float) -> int:
        """Drop clients silent for `timeout_s`; returns how many."""
        now = time.monotonic()
        gone = 0
        for members in self.producers.values():
            for conn, ch in list(members.items()):
                if now - ch.last_update > timeout_s:
                    del members[conn]
                    gone += 1
        for info in list(self.consumers.values()):
            stale = [c for c, ch in info.clients.items() if now - ch.last_update > timeout_s]
            for conn in stale:
                log.warning("consumer %s of %s expired", info.clients[conn].client_id, info.group)
                del info.clients[conn]
                conn.close()
                gone += 1
            if stale:
                self._after_leave(info)
        return gone

    def _after_leave(self, info: ConsumerGroupInfo) -> None:
        if not info.clients:
            del self.consumers[info.group]
        else:
            self.on_ids_changed(info)

    def subscribed_topics(self, group: str) -> list[str]:
        info = self.consumers.get(group)
        return list(info.subscriptions) if info else []

    def consumer_ids(self, group: str) -> list[str]:
        info = self.consumers.get(group)
        return info.client_ids() if info else []

    def producer_channels(self, group: str) -> list[ClientChannel]:
        return list(self.producers.get(group, {}).values())
