"""`RocketTemplate`: sending from a service, as rocketmq-spring's `RocketMQTemplate` does, but
every method is a coroutine and payloads are converted by type (see `rmqkit.starter.payload`).

Destinations are `"topic"` or `"topic:tag"` (split on the first colon), or `topic=`/`tag=`. Every
send takes `keys` (searchable with a query by key) and an `idempotency_key` (carried in a
property, and added to the keys, so that a listener with `idempotency_key="auto"` skips
duplicates, including the ones a producer retry creates).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar, overload

from rmqkit.client.message import Message, SendResult
from rmqkit.client.transaction import TransactionSendResult
from rmqkit.common.properties import Prop
from rmqkit.errors import ConfigurationError
from rmqkit.starter.meta import IDEMPOTENCY_KEY
from rmqkit.starter.observability import MessageType, StarterMetrics, send_span
from rmqkit.starter.outcomes import DEFAULT_DELAY_LEVELS_S
from rmqkit.starter.payload import PayloadType, encode_payload
from rmqkit.starter.transactional import TransactionFlows
from rmqkit.starter.transport import ProducerPort

T = TypeVar("T")
KeyFn = Callable[[Any], str]
MAX_DELAY_LEVEL = len(DEFAULT_DELAY_LEVELS_S)


def parse_destination(destination: str | None, topic: str | None, tag: str | None) -> tuple[str, str | None]:  # noqa: E501
    """(topic, tag) from `"topic:tag"` or explicit arguments.

    Raises:
        ConfigurationError: neither or both forms given, or an empty topic.
    """
    if destination is not None:
        if topic is not None:
            raise ConfigurationError("give a destination or topic=, not both")
        topic, _, dtag = destination.partition(":")
        if dtag and tag is not None and dtag != tag:
            raise ConfigurationError(f"destination {destination!r} and tag={tag!r} disagree")
        tag = tag or dtag or None
    if not topic:
        raise ConfigurationError("a send needs a topic (\"topic\" or \"topic:tag\")")
    return topic, tag


class RocketTemplate:
    """Sends typed payloads.

    Args:
        producer: the producer to send with (the app gives the template its own).
        metrics: where send counts and latencies go (optional).
        tracing: put W3C trace context into each message's properties and record send spans.
        idempotency_key: derives an idempotency key from each payload when a send gives none
            (for example `lambda order: order.id`).
    """

    def __init__(
        self,
        producer: ProducerPort,
        *,
        metrics: StarterMetrics | None = None,
        tracing: bool = True,
        idempotency_key: KeyFn | None = None,
        flows: TransactionFlows | None = None,
    ) -> None:
        self.producer = producer
        self.metrics = metrics
        self.tracing = tracing
        self.default_key = idempotency_key
        self.flows = flows

    # -- building messages -------------------------------------------------------------------------

    def message(
        self,
        destination: str | None,
        payload: Any,
        *,
        topic: str | None = None,
        tag: str | None = None,
        keys: str | Iterable[str] | None = None,
        idempotency_key: str | None = None,
        properties: dict[str, str] | None = None,
        delay_level: int = 0,
    ) -> Message:
        """The `Message` a send of this payload would send (useful for tests and batching)."""
        topic, tag = parse_destination(destination, topic, tag)
        key_list = [keys] if isinstance(keys, str) else list(keys or ())
        props = dict(properties or {})
        idem = idempotency_key
        if idem is None and self.default_key is not None:
            idem = self.default_key(payload)
        if idem:
            props[IDEMPOTENCY_KEY] = str(idem)
            if str(idem) not in key_list:
                key_list.append(str(idem))
        if not 0 <= delay_level <= MAX_DELAY_LEVEL:
            raise ConfigurationError(f"delay_level must be 0..{MAX_DELAY_LEVEL}, not {delay_level}")
        return Message(topic, encode_payload(payload), tags=tag, keys=key_list,
                       properties=props, delay_level=delay_level)  # fmt: skip

    async def _traced(self, msg: Message, kind: MessageType, send: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            if not self.tracing:
                return await send()
            with send_span(
                msg.topic, tag=msg.tags, keys=msg.keys, message_type=kind,
                client_group=self.producer.group, properties=msg.properties,
            ) as span:  # fmt: skip
                result = await send()
                msg_id = getattr(result, "msg_id", None)
                if msg_id:
                    span.set_message_id(msg_id)
                return result
        except Exception as exc:
            error = exc
            raise
        finally:
            if self.metrics is not None:
                self.metrics.sent(msg.topic, error=error, duration_s=time.perf_counter() - start)

    # -- sends -------------------------------------------------------------------------------------

    async def send(self, destination: str | None = None, payload: Any = None, *,
                   timeout_ms: int | None = None, **opts: Any) -> SendResult:  # fmt: skip
        """Send and wait for the broker to store it (`syncSend`).

        Args:
            destination: `"topic"` or `"topic:tag"`.
            payload: bytes, str, a pydantic model, a dataclass, or anything JSON-serializable.
            timeout_ms: per attempt (default: the producer's send timeout).
            **opts: topic, tag, keys, idempotency_key, properties, delay_level.

        Raises:
            BrokerResponseError / RemotingError: the send failed after the producer's retries.
        """
        msg = self.message(destination, payload, **opts)
        kind: MessageType = "delay" if msg.delay_level else "normal"
        result: SendResult = await self._traced(
            msg, kind, lambda: self.producer.send(msg, timeout_ms=timeout_ms)
        )
        return result

    def send_async(
        self, destination: str | None = None, payload: Any = None, *,
        timeout_ms: int | None = None, **opts: Any,
    ) -> asyncio.Task[SendResult]:  # fmt: skip
        """Start a send and return at once: await the task (or add a done callback) later."""
        msg = self.message(destination, payload, **opts)
        return asyncio.get_running_loop().create_task(
            self._traced(msg, "normal", lambda: self.producer.send(msg, timeout_ms=timeout_ms))
        )

    async def send_oneway(self, destination: str | None = None, payload: Any = None,
                          **opts: Any) -> None:  # fmt: skip
        """Send without waiting for the broker's answer (no result, no retry, may be lost)."""
        msg = self.message(destination, payload, **opts)
        await self._traced(msg, "normal", lambda: self.producer.send_oneway(msg))

    async def send_orderly(self, destination: str | None = None, payload: Any = None, *,
                           hash_key: str, timeout_ms: int | None = None,
                           **opts: Any) -> SendResult:  # fmt: skip
        """Send to the queue chosen by `hash_key`: messages with one key stay in order."""
        if not hash_key:
            raise ConfigurationError("send_orderly needs a hash_key (an order id, for example)")
        msg = self.message(destination, payload, **opts)
        result: SendResult = await self._traced(
            msg, "fifo", lambda: self.producer.send_orderly(msg, hash_key, timeout_ms=timeout_ms)
        )
        return result

    async def send_delayed(self, destination: str | None = None, payload: Any = None, *,
                           level: int | None = None, seconds: float | None = None,
                           at: datetime | None = None, timeout_ms: int | None = None,
                           **opts: Any) -> SendResult:  # fmt: skip
        """Send for delivery later: after a delay level (1..18: 1s 5s 10s 30s 1m ... 2h), after
        `seconds`, or `at` a time. Seconds matching a level use it; other delays use RocketMQ 5's
        timer properties (`TIMER_DELAY_MS` / `TIMER_DELIVER_MS`).
        """
        given = [x for x in (level, seconds, at) if x is not None]
        if len(given) != 1:
            raise ConfigurationError("send_delayed takes exactly one of level=, seconds=, at=")
        props = dict(opts.pop("properties", None) or {})
        if level is not None:
            opts["delay_level"] = level
        elif seconds is not None:
            if seconds <= 0:
                raise ConfigurationError(f"seconds must be positive, not {seconds}")
            if seconds in DEFAULT_DELAY_LEVELS_S:
                opts["delay_level"] = DEFAULT_DELAY_LEVELS_S.index(seconds) + 1
            else:
                props[Prop.TIMER_DELAY_MS] = str(round(seconds * 1000))
        elif at is not None:
            if at.tzinfo is None:
                raise ConfigurationError("at= needs a timezone-aware datetime")
            props[Prop.TIMER_DELIVER_MS] = str(round(at.timestamp() * 1000))
        msg = self.message(destination, payload, properties=props, **opts)
        result: SendResult = await self._traced(
            msg, "delay", lambda: self.producer.send(msg, timeout_ms=timeout_ms)
        )
        return result

    async def send_batch(self, destination: str | None = None, payloads: Sequence[Any] = (), *,
                         timeout_ms: int | None = None, **opts: Any) -> SendResult:  # fmt: skip
        """Send several payloads of one topic in one request (`syncSend(Collection)`); they are
        stored together on one queue. Per-message keys: pass `keys=` as a callable of the payload.
        """
        key_fn = opts.pop("keys", None)
        idem_fn = opts.pop("idempotency_key", None)
        msgs = [
            self.message(
                destination, p,
                keys=key_fn(p) if callable(key_fn) else key_fn,
                idempotency_key=idem_fn(p) if callable(idem_fn) else idem_fn, **opts,
            )
            for p in payloads
        ]  # fmt: skip
        if not msgs:
            raise ConfigurationError("send_batch needs at least one payload")
        result: SendResult = await self._traced(
            msgs[0], "normal", lambda: self.producer.send_batch(msgs, timeout_ms=timeout_ms)
        )
        return result

    @overload
    async def send_and_receive(self, destination: str | None, payload: Any, reply_type: type[T], *,
                               timeout_ms: int = ..., hash_key: str | None = ...,
                               **opts: Any) -> T: ...  # fmt: skip
    @overload
    async def send_and_receive(self, destination: str | None, payload: Any, reply_type: None = ...,
                               *, timeout_ms: int = ..., hash_key: str | None = ...,
                               **opts: Any) -> bytes: ...  # fmt: skip
    async def send_and_receive(self, destination: str | None, payload: Any,
                               reply_type: Any = None, *, timeout_ms: int = 3_000,
                               hash_key: str | None = None, **opts: Any) -> Any:  # fmt: skip
        """Request-reply: send and wait for the listener's reply, converted to `reply_type`.

        The listener replies by returning a value. Raises `RequestTimeoutError` when no reply
        comes within `timeout_ms`, `PayloadError` when the reply does not convert.
        """
        msg = self.message(destination, payload, **opts)
        reply = await self._traced(
            msg, "normal",
            lambda: self.producer.request(msg, timeout_ms=timeout_ms, hash_key=hash_key),
        )  # fmt: skip
        return PayloadType(reply_type).decode(reply.body)

    async def send_in_transaction(self, destination: str | None = None, payload: Any = None, *,
                                  flow: str, arg: Any = None,
                                  **opts: Any) -> TransactionSendResult:  # fmt: skip
        """Send a half message, run the flow's local transaction, then commit or roll back.

        Args:
            flow: the name given to `@transactional_producer(...)`; its `execute` runs the local
                transaction, its `check` answers the broker's check-back.
            arg: passed to `execute` as it is.
        """
        if self.flows is None:
            raise ConfigurationError(
                "send_in_transaction needs transactional flows: declare one with "
                "@transactional_producer and start the template from a RocketApp"
            )
        msg = self.message(destination, payload, **opts)
        flows = self.flows
        result: TransactionSendResult = await self._traced(
            msg, "transaction", lambda: flows.send(msg, flow, payload, arg)
        )
        return result
