"""Small parts the app wires together: where listener methods' instances come from, how settings
become producer options and a listener group's endpoint, how a listener's return value becomes a
reply, and how the starter writes a message to a dead-letter queue itself (with the reason in a
property)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from rmqkit.client.message import Message
from rmqkit.client.request import create_reply
from rmqkit.common.names import dlq_topic
from rmqkit.common.properties import Prop
from rmqkit.errors import BrokerResponseError, ConfigurationError, RemotingError
from rmqkit.protocol.record import StoredMessage
from rmqkit.starter.listener import ListenerSpec
from rmqkit.starter.meta import ERROR_PROPERTY
from rmqkit.starter.payload import PayloadError, encode_payload
from rmqkit.starter.settings import ProducerSettings, RocketSettings, TlsClientSettings
from rmqkit.starter.transport import Endpoint, ProducerPort

log = logging.getLogger("rmqkit.app")
MAX_REASON = 1_000
"""Characters of an error kept in the dead-letter property (properties are limited in size)."""

# Routing properties of the original delivery that must not steer the dead-letter copy.
_NOT_COPIED = frozenset({
    Prop.DELAY_TIME_LEVEL, Prop.TRANSACTION_PREPARED, Prop.WAIT_STORE_MSG_OK, Prop.REAL_TOPIC,
    Prop.REAL_QUEUE_ID, Prop.MIN_OFFSET, Prop.MAX_OFFSET, Prop.TIMER_DELIVER_MS,
    Prop.TIMER_DELAY_SEC, Prop.TIMER_DELAY_MS, Prop.TRANSACTION_PREPARED_QUEUE_OFFSET,
    Prop.CLUSTER, Prop.MESSAGE_REPLY_TO_CLIENT, Prop.CORRELATION_ID, Prop.MESSAGE_TYPE,
    Prop.TAGS, Prop.KEYS,
})  # fmt: skip


class Instances:
    """Objects that own listener methods and flows, found or made once per class."""

    def __init__(self, given: Iterable[object], container: Any) -> None:
        self._by_class: dict[type, object] = {type(o): o for o in given}
        self.container = container

    def get(self, cls: type) -> Any:
        """The instance for `cls`: a given one, the container's provider for it, or `cls()`."""
        if cls in self._by_class:
            return self._by_class[cls]
        obj = self._from_container(cls)
        if obj is None:
            try:
                obj = cls()
            except TypeError as exc:
                raise ConfigurationError(
                    f"{cls.__qualname__} has decorated methods but cannot be made with no "
                    f"arguments ({exc}); pass an instance in RocketApp(instances=[...]) or give "
                    "the container a provider for it"
                ) from exc
        self._by_class[cls] = obj
        return obj

    def _from_container(self, cls: type) -> Any:
        if self.container is None:
            return None
        for provider in self.container.traverse():
            if getattr(provider, "cls", None) is cls or getattr(provider, "provides", None) is cls:
                return provider()
        return None

    def get_owner(self, spec: ListenerSpec) -> Any:
        """The instance a listener method belongs to (its class found from the qualified name)."""
        func = inspect.unwrap(spec.func)
        owner_name = func.__qualname__.rsplit(".", 1)[0]
        module = inspect.getmodule(func)
        owner: Any = module
        for part in owner_name.split("."):
            owner = getattr(owner, part, None)
        if not inspect.isclass(owner):
            raise ConfigurationError(
                f"cannot find the class of listener method {func.__qualname__}; declare "
                "listener methods in classes at module level"
            )
        return self.get(owner)


def producer_options(
    p: ProducerSettings, tls: TlsClientSettings | None = None, access_channel: str = "LOCAL"
) -> dict[str, Any]:
    """`Producer` keyword arguments from the `rocketmq.producer.*` settings (and, with
    `tls-enable`, `rocketmq.tls.*`; with `enable-msg-trace`, `rocketmq.access-channel`)."""
    credentials = p.credentials()
    return {
        **trace_options(p.enable_msg_trace, p.customized_trace_topic, access_channel),
        **({"credentials": credentials} if credentials is not None else {}),
        **({"tls": (tls or TlsClientSettings()).client_tls()} if p.tls_enable else {}),
        "instance_name": p.instance_name,
        "send_timeout_ms": p.send_message_timeout_ms,
        "retry_times_when_send_failed": p.retry_times_when_send_failed,
        "retry_times_when_send_async_failed": p.retry_times_when_send_async_failed,
        "retry_another_broker_when_not_store_ok": p.retry_next_server,
        "compress_msg_body_over_bytes": p.compress_message_body_threshold_bytes,
        "max_message_size_bytes": p.max_message_size_bytes,
        "namespace": p.namespace,
    }


def replier(producer: ProducerPort) -> Callable[[StoredMessage, Any], Awaitable[None]]:
    """Sends a listener's return value as the reply when the message was a request."""

    async def reply(m: StoredMessage, value: Any) -> None:
        if Prop.CORRELATION_ID not in m.properties or value is None:
            return
        try:
            body = encode_payload(value)
            await producer.send(create_reply(m, body))
        except (PayloadError, ConfigurationError, RemotingError, BrokerResponseError) as exc:
            log.error("reply to %s failed: %r", m.msg_id, exc)

    return reply


def dead_letterer(
    producer: ProducerPort,
) -> Callable[[str], Callable[[StoredMessage, str], Awaitable[bool]]]:
    """For a group: writes a message to `%DLQ%<group>` with the reason in `RMQKIT_ERROR`.
    False when the DLQ cannot be written (the consumer then asks the broker to dead-letter it)."""

    def for_group(group: str) -> Callable[[StoredMessage, str], Awaitable[bool]]:
        async def dead_letter(m: StoredMessage, reason: str) -> bool:
            props = {k: v for k, v in m.properties.items() if k not in _NOT_COPIED}
            origin = props.pop(Prop.RETRY_TOPIC, None) or m.topic
            props[ERROR_PROPERTY] = reason[:MAX_REASON]
            props[Prop.DLQ_ORIGIN_TOPIC] = origin
            props[Prop.DLQ_ORIGIN_MESSAGE_ID] = m.msg_id
            props[Prop.RECONSUME_TIME] = str(m.reconsume_times)
            msg = Message(dlq_topic(group), m.body, tags=m.tags, keys=m.keys, properties=props)
            try:
                await producer.send(msg)
            except (RemotingError, BrokerResponseError) as exc:
                log.warning("could not write %s to %s (%r); asking the broker instead",
                            m.msg_id, dlq_topic(group), exc)  # fmt: skip
                return False
            return True

        return dead_letter

    return for_group


def trace_options(enabled: bool, topic: str, access_channel: str) -> dict[str, Any]:
    """A producer's or consumer's RocketMQ message trace options (none when it is off)."""
    if not enabled:
        return {}
    return {"enable_msg_trace": True, "trace_topic": topic, "access_channel": access_channel}


def group_endpoint(settings: RocketSettings, group: str, topics: Iterable[str]) -> Endpoint:
    """Where a listener group's consumer connects and as whom: each listener's own
    `rocketmq.consumer.listeners.<group>.<topic>.*` keys, else `rocketmq.consumer.*`.

    Raises:
        ConfigurationError: the group's listeners disagree (they share one consumer); the
            message names each listener's value of every setting that differs.
    """
    c = settings.consumer
    by_topic: dict[str, Endpoint] = {}
    for topic in topics:
        o = settings.listener_override(group, topic)
        tls_on = o.tls_enable if o.tls_enable is not None else c.tls_enable
        by_topic[topic] = Endpoint(
            name_server=o.name_server,
            namespace=o.namespace if o.namespace is not None else c.namespace,
            instance_name=o.instance_name or c.instance_name,
            credentials=o.credentials() or c.credentials(),
            tls=settings.tls.client_tls() if tls_on else None,
        )
    if len(set(by_topic.values())) <= 1:
        return next(iter(by_topic.values()), Endpoint())
    if len({e.credentials for e in by_topic.values()}) > 1:
        shown = ", ".join(
            f"{t}: {e.credentials.access_key if e.credentials else 'unsigned'}"
            for t, e in sorted(by_topic.items())
        )
        raise ConfigurationError(
            f"listeners of group {group!r} sign with different ACL keys or secrets ({shown}); "
            "they share one consumer, which signs every request with one key: give them the "
            f"same access-key and secret-key under rocketmq.consumer.listeners.{group}.<topic>, "
            "or separate groups"
        )
    differ = [
        (key, attr) for key, attr in _ENDPOINT_KEYS
        if len({getattr(e, attr) for e in by_topic.values()}) > 1
    ]  # fmt: skip
    shown = "; ".join(
        f"{key}: "
        + ", ".join(f"{t}={_shown(getattr(e, attr))}" for t, e in sorted(by_topic.items()))
        for key, attr in differ
    )
    raise ConfigurationError(
        f"listeners of group {group!r} connect differently ({shown}); they share one consumer:"
        f" give them the same values under rocketmq.consumer.listeners.{group}.<topic>, or"
        " separate groups"
    )


_ENDPOINT_KEYS = (
    ("name-server", "name_server"), ("namespace", "namespace"),
    ("instance-name", "instance_name"), ("tls-enable", "tls"),
)  # fmt: skip


def _shown(value: object) -> str:
    if value is None:
        return "default"
    return "on" if not isinstance(value, str) else repr(value)
