"""The ports between the starter and a RocketMQ: a producer port, a consumer port and a transport
that makes them. `RemotingTransport` uses rmqkit's client against any RocketMQ (the bundled broker
or Apache RocketMQ); `rmqkit.testing` has an in-memory transport with RocketMQ's semantics, so a
listener behaves the same in a unit test and against a real broker.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from rmqkit.client.admin import AdminClient
from rmqkit.client.message import Message, SendResult
from rmqkit.client.namespace import unwrap, wrap
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.client.transaction import (
    Checker,
    Execute,
    TransactionProducer,
    TransactionSendResult,
)
from rmqkit.errors import BrokerResponseError, RemotingError
from rmqkit.protocol.acl import SessionCredentials
from rmqkit.protocol.record import StoredMessage
from rmqkit.remoting.tls import ClientTls
from rmqkit.starter.consistency import GroupView

log = logging.getLogger("rmqkit.app")

ConsumerHandler = Callable[[list[StoredMessage], ConsumeContext], Awaitable[ConsumeResult | None]]


@dataclass(frozen=True)
class Endpoint:
    """Where a consumer connects and as whom: its cluster, namespace, client instance, ACL keys
    and TLS. A listener group may have its own (`rocketmq.consumer.listeners.<g>.<t>.*`); the
    admin calls about a group (`group_view`, `consumer_lag`) use the group's."""

    name_server: str | None = None
    """None: the transport's own (rocketmq.name-server, or the embedded cluster)."""
    namespace: str = ""
    instance_name: str = "DEFAULT"
    credentials: SessionCredentials | None = None
    tls: ClientTls | None = None


class ProducerPort(Protocol):
    """What the template needs from a producer (rmqkit's `Producer` has exactly this)."""

    group: str

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send(self, msg: Message, *, timeout_ms: int | None = None) -> SendResult: ...
    async def send_orderly(
        self, msg: Message, hash_key: str, *, timeout_ms: int | None = None
    ) -> SendResult: ...
    async def send_oneway(self, msg: Message) -> None: ...
    async def send_batch(
        self, msgs: list[Message], *, timeout_ms: int | None = None
    ) -> SendResult: ...
    async def request(
        self, msg: Message, *, timeout_ms: int = 3000, hash_key: str | None = None
    ) -> StoredMessage: ...


class TransactionProducerPort(ProducerPort, Protocol):
    """A producer that also sends half messages tied to a local transaction."""

    async def send_in_transaction(
        self, msg: Message, execute: Execute
    ) -> TransactionSendResult: ...


class ConsumerPort(Protocol):
    """What a listener group needs from a consumer (rmqkit's `PushConsumer` has exactly this)."""

    group: str

    def subscribe(
        self, topic: str, expression: str = "*", expression_type: str = "TAG"
    ) -> None: ...
    def register(self, handler: ConsumerHandler) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Transport(Protocol):
    """Makes producers and consumers for one cluster."""

    def producer(self, group: str, **options: Any) -> ProducerPort: ...
    def transaction_producer(
        self, group: str, checker: Checker, **options: Any
    ) -> TransactionProducerPort: ...
    def consumer(
        self, group: str, *, endpoint: Endpoint | None = None, **options: Any
    ) -> ConsumerPort: ...
    async def consumer_lag(
        self, group: str, topics: Iterable[str], endpoint: Endpoint | None = None
    ) -> dict[str, int]: ...
    async def group_view(
        self, group: str, endpoint: Endpoint | None = None
    ) -> GroupView | None: ...
    async def close(self) -> None: ...


class RemotingTransport:
    """Producers and consumers of rmqkit's client, talking to a NameServer list.

    Args:
        namesrv_addr: `host:port;host:port`.
        instance_name: the client instance (one per process unless told otherwise).
        offset_store_dir: where BROADCASTING consumers keep their offsets.
        namespace: the consumers' namespace (RocketMQ's `ns%group`).
        credentials: ACL credentials of the consumers.
        tls: TLS settings of the consumers; None: plain connections.

    These make the default `endpoint`: consumers and the admin calls behind `group_view` and
    `consumer_lag` use it unless a call names another (a listener group with a cluster, keys or
    TLS of its own). A producer gets its own settings through its options.
    """

    def __init__(
        self, namesrv_addr: str, *, instance_name: str = "DEFAULT",
        offset_store_dir: Path | None = None, namespace: str = "",
        credentials: SessionCredentials | None = None, tls: ClientTls | None = None,
    ) -> None:  # fmt: skip
        self.endpoint = Endpoint(namesrv_addr, namespace, instance_name, credentials, tls)
        """Consumers' and admin calls' settings when the caller gives none."""
        self.namesrv_addr = namesrv_addr
        self.instance_name = instance_name
        self.offset_store_dir = offset_store_dir
        self._admins: dict[Endpoint, AdminClient] = {}

    def producer(self, group: str, **options: Any) -> ProducerPort:
        options.setdefault("instance_name", self.instance_name)
        return Producer(group, self.namesrv_addr, **options)

    def transaction_producer(
        self, group: str, checker: Checker, **options: Any
    ) -> TransactionProducerPort:
        options.setdefault("instance_name", self.instance_name)
        return TransactionProducer(group, self.namesrv_addr, checker=checker, **options)

    def consumer(
        self, group: str, *, endpoint: Endpoint | None = None, **options: Any
    ) -> ConsumerPort:
        e = endpoint or self.endpoint
        if self.offset_store_dir is not None:
            options.setdefault("offset_store_dir", self.offset_store_dir)
        return PushConsumer(
            group, e.name_server or self.namesrv_addr, instance_name=e.instance_name,
            namespace=e.namespace,
            credentials=e.credentials, tls=e.tls, **options,
        )  # fmt: skip

    async def _admin_client(self, endpoint: Endpoint | None) -> AdminClient:
        # Admin calls read no namespace: one admin client serves every namespace of a cluster.
        e = endpoint or self.endpoint
        key = replace(e, name_server=e.name_server or self.namesrv_addr, namespace="")
        admin = self._admins.get(key)
        if admin is None:
            admin = AdminClient(
                key.name_server or self.namesrv_addr, instance_name=f"{key.instance_name}-ADMIN",
                credentials=key.credentials, tls=key.tls,
            )  # fmt: skip
            await admin.start()
            self._admins[key] = admin
        return admin

    async def group_view(self, group: str, endpoint: Endpoint | None = None) -> GroupView | None:
        """The running members of `group` and their subscription, as the brokers know them
        (GET_CONSUMER_CONNECTION_LIST); None when no member is online."""
        ns = (endpoint or self.endpoint).namespace
        admin = await self._admin_client(endpoint)
        try:
            info = await admin.consumer_connections(wrap(ns, group) if ns else group)
        except BrokerResponseError:
            return None  # CONSUMER_NOT_ONLINE on every broker (or no broker has the group)
        except RemotingError as exc:
            log.warning("cannot compare group %s with its running members: %s", group, exc)
            return None
        subs = {
            unwrap(t, ns) if ns else t: (
                str(s.get("subString", "*")),
                str(s.get("expressionType") or "TAG"),
            )
            for t, s in (info.get("subscriptionTable") or {}).items()
        }
        ids = tuple(str(c.get("clientId", "?")) for c in info.get("connectionSet") or ())
        return GroupView(ids, str(info.get("messageModel", "CLUSTERING")), subs)

    async def consumer_lag(
        self, group: str, topics: Iterable[str], endpoint: Endpoint | None = None
    ) -> dict[str, int]:
        """Messages of each topic the group has not consumed, from the brokers' consume stats
        (GET_CONSUME_STATS: max offset minus the committed offset, which consumers persist every
        few seconds)."""
        admin = await self._admin_client(endpoint)
        ns = (endpoint or self.endpoint).namespace
        lag = dict.fromkeys(topics, 0)
        for p in await admin.consumer_progress(wrap(ns, group) if ns else group):
            topic = unwrap(p.queue.topic, ns) if ns else p.queue.topic
            if topic in lag:
                lag[topic] += p.lag
        return lag

    async def close(self) -> None:
        admins, self._admins = self._admins, {}
        for admin in admins.values():
            await admin.stop()
