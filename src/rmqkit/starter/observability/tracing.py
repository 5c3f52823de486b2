"""Tracing for the send path and the consume path, through `opentelemetry-api` only.

The W3C trace context of a send rides in the message's user properties (`traceparent`,
`tracestate`, `baggage`), the way RocketMQ's own trace hook carries its context beside the
message. Spans follow the OpenTelemetry messaging conventions for RocketMQ: `send <topic>`
(PRODUCER) and `process <topic>` (CONSUMER). With no SDK installed everything here stays a
pass-through of the ambient context and costs a few microseconds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Final

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter, TextMapPropagator
from opentelemetry.trace import Tracer, TracerProvider

from rmqkit.common.properties import NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR
from rmqkit.common.types import GroupName, TopicName
from rmqkit.starter.observability import semconv as sc
from rmqkit.starter.observability._spans import (
    TRACEPARENT,
    BatchProcessScope,
    MessagingSpan,
    ProcessScope,
    SendScope,
    SpanScope,
)

__all__ = [
    "TRACEPARENT",
    "MessagingSpan",
    "MessagingTracer",
    "SpanScope",
    "batch_process_span",
    "extract",
    "inject",
    "process_span",
    "send_span",
]


class _PropertiesSetter(Setter[MutableMapping[str, str]]):
    """Writes into message properties, refusing values that would break RocketMQ's encoding."""

    def set(self, carrier: MutableMapping[str, str], key: str, value: str) -> None:
        # A property string is `k \x01 v \x02 ...`: a separator inside a value (possible with a
        # custom propagator) would corrupt every property after it, so the header is dropped.
        if NAME_VALUE_SEPARATOR in value or PROPERTY_SEPARATOR in value:
            return
        carrier[key] = value


class _PropertiesGetter(Getter[Mapping[str, str]]):
    """Reads message properties for a propagator."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


_SETTER: Final = _PropertiesSetter()
_GETTER: Final = _PropertiesGetter()


def inject(properties: MutableMapping[str, str], context: Context | None = None) -> None:
    """Write the current (or given) trace context into message user properties.

    Uses the globally configured propagator (W3C `traceparent`/`tracestate` and `baggage` by
    default). Writes nothing when there is no valid span context and no baggage.

    Args:
        properties: the message's user properties; updated in place.
        context: the context to write; the current one when None.
    """
    propagate.inject(properties, context, setter=_SETTER)


def extract(properties: Mapping[str, str], context: Context | None = None) -> Context:
    """Read the trace context a producer wrote into message user properties.

    Args:
        properties: the message's user properties.
        context: the context to add the extracted values to; an empty one when None.

    Returns:
        A context holding the producer's span context (as a non-recording parent) and baggage;
        unchanged from `context` when the properties carry neither.
    """
    return propagate.extract(properties, context, getter=_GETTER)


class MessagingTracer:
    """Creates RocketMQ messaging spans and moves their context through message properties.

    The tracer is looked up on first use, and through the API's proxy, so an SDK configured
    after import (or never) is honoured. Tests pass their own provider.

    Args:
        tracer_provider: the provider to use; the global one when None.
        propagator: the propagator to use; the global one (`opentelemetry.propagate`) when None.
        namespace: the RocketMQ namespace, set as `messaging.rocketmq.namespace` when not empty.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        propagator: TextMapPropagator | None = None,
        namespace: str = "",
    ) -> None:
        self._provider = tracer_provider
        self._propagator = propagator
        self.namespace = namespace
        self._tracer: Tracer | None = None
        self._fields_of: TextMapPropagator | None = None
        self._fields: frozenset[str] = frozenset()

    def tracer(self) -> Tracer:
        """The `rmqkit` tracer, looked up on first use.

        With the global provider this is the API's proxy tracer until an SDK is set, after
        which the proxy forwards to the SDK's tracer, so a late SDK set-up is honoured.
        """
        tracer = self._tracer
        if tracer is None:
            version = sc.instrumentation_version()
            if self._provider is None:
                tracer = trace.get_tracer(sc.INSTRUMENTATION_NAME, version)
            else:
                tracer = self._provider.get_tracer(sc.INSTRUMENTATION_NAME, version)
            self._tracer = tracer
        return tracer

    def recording_possible(self) -> bool:
        """Whether spans can be recorded: a real tracer provider is set (explicitly or as the
        global one). False with the API's default provider, where every span is a no-op."""
        provider = self._provider or trace.get_tracer_provider()
        return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)

    def carries_context(self, properties: Mapping[str, str]) -> bool:
        """Whether the properties hold any key the propagator reads (cheap; parses nothing)."""
        propagator = self._propagator or propagate.get_global_textmap()
        if propagator is not self._fields_of:
            self._fields = frozenset(propagator.fields)
            self._fields_of = propagator
        return not self._fields.isdisjoint(properties.keys())

    def inject(self, properties: MutableMapping[str, str], context: Context | None = None) -> None:
        """Write a trace context into message properties with this tracer's propagator."""
        if self._propagator is None:
            inject(properties, context)
        else:
            self._propagator.inject(properties, context, setter=_SETTER)

    def extract(self, properties: Mapping[str, str], context: Context | None = None) -> Context:
        """Read a trace context from message properties with this tracer's propagator."""
        if self._propagator is None:
            return extract(properties, context)
        return self._propagator.extract(properties, context, getter=_GETTER)

    def send_span(
        self,
        topic: TopicName,
        *,
        properties: MutableMapping[str, str],
        tag: str | None = None,
        keys: str | Sequence[str] | None = None,
        message_type: sc.MessageType | None = None,
        client_group: GroupName | None = None,
        delay_level: int | None = None,
        deliver_at_ms: int | None = None,
        message_group: str | None = None,
    ) -> SpanScope:
        """A PRODUCER span `send <topic>` around one send; injects its context into `properties`.

        Use as `with tracer.send_span(...) as span:` around the broker call, then
        `span.set_message_id(result.msg_id)`. An exception leaving the block is recorded, sets
        `error.type` and the ERROR status, and propagates. If `properties` already hold a
        `traceparent` (a context the user chose), it is kept and the span links to it.

        Args:
            topic: the destination topic.
            properties: the message's user properties; the trace context is written here.
            tag: the message tag.
            keys: the message keys (a list, or the space-separated KEYS property).
            message_type: `normal`, `fifo`, `delay` or `transaction`; inferred as `delay` when a
                delay is given, else `normal`.
            client_group: the producer group.
            delay_level: RocketMQ delay level (1..18), for delay messages.
            deliver_at_ms: epoch milliseconds a timer message becomes visible.
            message_group: the FIFO message group (sharding key), for ordered sends.

        Returns:
            A context manager yielding a `MessagingSpan`.
        """
        return SendScope(
            self,
            topic,
            tag,
            keys,
            message_type,
            client_group,
            properties,
            delay_level,
            deliver_at_ms,
            message_group,
        )

    def process_span(
        self,
        topic: TopicName,
        *,
        group: GroupName,
        properties: Mapping[str, str],
        msg_id: str | None = None,
        tag: str | None = None,
        keys: str | Sequence[str] | None = None,
        reconsume_times: int = 0,
        queue_id: int | None = None,
        consumption_model: sc.ConsumptionModel | None = None,
    ) -> SpanScope:
        """A CONSUMER span `process <topic>` around a listener call for one message.

        Its parent is the producer's context extracted from `properties` (when present; the
        ambient context otherwise), and it links to that context too. The extracted baggage is
        current inside the block.

        Args:
            topic: the topic the message came from.
            group: the consumer group.
            properties: the received message's user properties.
            msg_id: the message id.
            tag: the message tag.
            keys: the message keys (a list, or the space-separated KEYS property).
            reconsume_times: how many times this message was delivered before.
            queue_id: the queue the message was read from.
            consumption_model: `clustering` or `broadcasting`.

        Returns:
            A context manager yielding a `MessagingSpan`.
        """
        return ProcessScope(
            self,
            topic,
            group,
            msg_id,
            tag,
            keys,
            reconsume_times,
            properties,
            queue_id,
            consumption_model,
        )

    def batch_process_span(
        self,
        topic: TopicName,
        *,
        group: GroupName,
        messages: Sequence[Mapping[str, str]],
    ) -> SpanScope:
        """A CONSUMER span `process <topic>` around a listener call for a batch of messages.

        The parent is the ambient context; the span links to each message's producer context
        and carries `messaging.batch.message_count`.

        Args:
            topic: the topic the messages came from.
            group: the consumer group.
            messages: the user properties of each message in the batch.

        Returns:
            A context manager yielding a `MessagingSpan`.
        """
        return BatchProcessScope(self, topic, group, messages)


_GLOBAL: Final = MessagingTracer()


_recording = [False, 0.0]  # the last answer of recording_possible(), and when it expires
RECHECK_S = 1.0
"""How long `span_needed` trusts its last look at the global tracer provider (reading it costs
about as much as the rest of the consume path's tracing)."""


def span_needed(properties: Mapping[str, str]) -> bool:
    """Whether a process span does anything for a message: an SDK may record it, or the
    message carries a trace context that the handler's own sends should continue. When False,
    the consume path skips the span (a few microseconds per message)."""
    now = time.monotonic()
    if now >= _recording[1]:
        _recording[0] = _GLOBAL.recording_possible()
        _recording[1] = now + RECHECK_S
    return bool(_recording[0]) or _GLOBAL.carries_context(properties)

send_span = _GLOBAL.send_span
"""`MessagingTracer.send_span` on the global tracer provider."""
process_span = _GLOBAL.process_span
"""`MessagingTracer.process_span` on the global tracer provider."""
batch_process_span = _GLOBAL.batch_process_span
"""`MessagingTracer.batch_process_span` on the global tracer provider."""
