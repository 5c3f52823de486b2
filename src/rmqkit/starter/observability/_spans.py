"""The span scopes behind `MessagingTracer`: `send`, `process` and batch `process` spans.

Each scope is a single-use context manager that starts its span on entry, makes it current,
and ends it on exit, recording an escaping exception the way the conventions ask.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from rmqkit.common.types import GroupName, TopicName
from rmqkit.starter.observability import semconv as sc

if TYPE_CHECKING:
    from rmqkit.starter.observability.tracing import MessagingTracer

TRACEPARENT: Final = "traceparent"
"""The user-property key that carries the W3C trace context."""


def _split_keys(keys: str | Sequence[str] | None) -> Sequence[str]:
    if not keys:
        return ()
    if isinstance(keys, str):
        # The KEYS property holds several keys separated by spaces.
        return tuple(k for k in keys.split(" ") if k)
    return tuple(keys)


class MessagingSpan:
    """The span of one messaging operation, as a `with` block sees it.

    Attributes:
        span: the OpenTelemetry span (non-recording when no SDK samples it).
    """

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    @property
    def is_recording(self) -> bool:
        """Whether attributes set now are kept (False without an SDK or when sampled out)."""
        return self.span.is_recording()

    def set_message_id(self, msg_id: str, *, queue_id: int | None = None) -> None:
        """Record the id the broker assigned (and the queue it landed in) after a send.

        Args:
            msg_id: the message id from the send result.
            queue_id: the queue the message was written to, if known.
        """
        if self.span.is_recording():
            self.span.set_attribute(sc.MESSAGE_ID, msg_id)
            if queue_id is not None:
                self.span.set_attribute(sc.DESTINATION_PARTITION_ID, str(queue_id))

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Set one more attribute on the span."""
        self.span.set_attribute(key, value)

    def set_error(self, error: BaseException | str, description: str | None = None) -> None:
        """Mark the operation failed without raising (for a status-style failure).

        Args:
            error: the exception, or an error type string such as a send status name.
            description: the status description; the exception's text when None.
        """
        _mark_failed(self.span, error, description)


def _mark_failed(span: Span, error: BaseException | str, description: str | None) -> None:
    if not span.is_recording():
        return
    if isinstance(error, BaseException):
        span.record_exception(error)
        if description is None:
            description = f"{type(error).__name__}: {error}"
    span.set_attribute(sc.ERROR_TYPE, sc.error_type(error))
    span.set_status(Status(StatusCode.ERROR, description))


class SpanScope:
    """A single-use context manager: starts a span on entry, makes it current, ends it on exit."""

    __slots__ = ("_span", "_token", "_tracer")

    def __init__(self, tracer: MessagingTracer) -> None:
        self._tracer = tracer
        self._span: Span | None = None
        self._token: Token[Context] | None = None

    def _start(self, tracer: Tracer) -> tuple[Span, Context]:
        """Start the span; return it and the context to make current while the block runs."""
        raise NotImplementedError

    def __enter__(self) -> MessagingSpan:
        span, ctx = self._start(self._tracer.tracer())
        self._span = span
        self._token = otel_context.attach(ctx)
        return MessagingSpan(span)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        assert span is not None, "span scope exited before it was entered"
        if exc is not None:
            _mark_failed(span, exc, None)
        span.end()
        if self._token is not None:
            otel_context.detach(self._token)
            self._token = None


class SendScope(SpanScope):
    __slots__ = (
        "_client_group",
        "_delay_level",
        "_deliver_at_ms",
        "_keys",
        "_message_group",
        "_message_type",
        "_properties",
        "_tag",
        "_topic",
    )

    def __init__(
        self,
        tracer: MessagingTracer,
        topic: TopicName,
        tag: str | None,
        keys: str | Sequence[str] | None,
        message_type: sc.MessageType | None,
        client_group: GroupName | None,
        properties: MutableMapping[str, str],
        delay_level: int | None,
        deliver_at_ms: int | None,
        message_group: str | None,
    ) -> None:
        super().__init__(tracer)
        self._topic = topic
        self._tag = tag
        self._keys = keys
        self._message_type = message_type
        self._client_group = client_group
        self._properties = properties
        self._delay_level = delay_level
        self._deliver_at_ms = deliver_at_ms
        self._message_group = message_group

    def _start(self, tracer: Tracer) -> tuple[Span, Context]:
        props = self._properties
        owner = self._tracer
        attrs: dict[str, AttributeValue] = {
            sc.MESSAGING_SYSTEM: sc.SYSTEM,
            sc.DESTINATION_NAME: self._topic,
            sc.OPERATION_NAME: sc.OP_SEND,
            sc.OPERATION_TYPE: sc.OP_SEND,
        }
        if owner.namespace:
            attrs[sc.ROCKETMQ_NAMESPACE] = owner.namespace
        span = tracer.start_span(f"send {self._topic}", kind=SpanKind.PRODUCER, attributes=attrs)
        ctx = trace.set_span_in_context(span)
        custom = TRACEPARENT in props
        if span.is_recording():
            self._describe(span)
            if custom:
                # The user chose the creation context: keep it, and link to it (conventions).
                creation = trace.get_current_span(owner.extract(props)).get_span_context()
                if creation.is_valid:
                    span.add_link(creation)
        if not custom:
            # Without an SDK the span is the ambient one (or invalid): a pass-through.
            owner.inject(props, ctx)
        return span, ctx

    def _describe(self, span: Span) -> None:
        if self._tag:
            span.set_attribute(sc.ROCKETMQ_MESSAGE_TAG, self._tag)
        keys = _split_keys(self._keys)
        if keys:
            span.set_attribute(sc.ROCKETMQ_MESSAGE_KEYS, keys)
        delayed = bool(self._delay_level) or self._deliver_at_ms is not None
        message_type = self._message_type or ("delay" if delayed else "normal")
        span.set_attribute(sc.ROCKETMQ_MESSAGE_TYPE, message_type)
        if self._client_group:
            span.set_attribute(sc.ROCKETMQ_CLIENT_GROUP, self._client_group)
        if self._delay_level:
            span.set_attribute(sc.ROCKETMQ_DELAY_TIME_LEVEL, self._delay_level)
        if self._deliver_at_ms is not None:
            span.set_attribute(sc.ROCKETMQ_DELIVERY_TIMESTAMP, self._deliver_at_ms)
        if self._message_group:
            span.set_attribute(sc.ROCKETMQ_MESSAGE_GROUP, self._message_group)


class ProcessScope(SpanScope):
    __slots__ = (
        "_group",
        "_keys",
        "_model",
        "_msg_id",
        "_properties",
        "_queue_id",
        "_reconsume_times",
        "_tag",
        "_topic",
    )

    def __init__(
        self,
        tracer: MessagingTracer,
        topic: TopicName,
        group: GroupName,
        msg_id: str | None,
        tag: str | None,
        keys: str | Sequence[str] | None,
        reconsume_times: int,
        properties: Mapping[str, str],
        queue_id: int | None,
        consumption_model: sc.ConsumptionModel | None,
    ) -> None:
        super().__init__(tracer)
        self._topic = topic
        self._group = group
        self._msg_id = msg_id
        self._tag = tag
        self._keys = keys
        self._reconsume_times = reconsume_times
        self._properties = properties
        self._queue_id = queue_id
        self._model = consumption_model

    def _start(self, tracer: Tracer) -> tuple[Span, Context]:
        owner = self._tracer
        props = self._properties
        ctx = otel_context.get_current()
        links: list[Link] | None = None
        if owner.carries_context(props):
            # The producer's context becomes the parent (a single-message scenario) and is also
            # linked, the correlation the conventions ask every "process" span to carry. Without
            # an SDK this still passes the context through to sends the handler makes.
            ambient = trace.get_current_span(ctx).get_span_context()
            ctx = owner.extract(props, ctx)
            creation = trace.get_current_span(ctx).get_span_context()
            # Same object: the properties held no usable traceparent, the parent stays ambient.
            if creation is not ambient and creation.is_valid:
                links = [Link(creation)]
        attrs: dict[str, AttributeValue] = {
            sc.MESSAGING_SYSTEM: sc.SYSTEM,
            sc.DESTINATION_NAME: self._topic,
            sc.OPERATION_NAME: sc.OP_PROCESS,
            sc.OPERATION_TYPE: sc.OP_PROCESS,
            sc.CONSUMER_GROUP_NAME: self._group,
        }
        if owner.namespace:
            attrs[sc.ROCKETMQ_NAMESPACE] = owner.namespace
        span = tracer.start_span(
            f"process {self._topic}",
            context=ctx,
            kind=SpanKind.CONSUMER,
            attributes=attrs,
            links=links,
        )
        if span.is_recording():
            self._describe(span)
        return span, trace.set_span_in_context(span, ctx)

    def _describe(self, span: Span) -> None:
        if self._msg_id:
            span.set_attribute(sc.MESSAGE_ID, self._msg_id)
        if self._tag:
            span.set_attribute(sc.ROCKETMQ_MESSAGE_TAG, self._tag)
        keys = _split_keys(self._keys)
        if keys:
            span.set_attribute(sc.ROCKETMQ_MESSAGE_KEYS, keys)
        span.set_attribute(sc.RMQKIT_RECONSUME_TIMES, self._reconsume_times)
        if self._queue_id is not None:
            span.set_attribute(sc.DESTINATION_PARTITION_ID, str(self._queue_id))
        if self._model:
            span.set_attribute(sc.ROCKETMQ_CONSUMPTION_MODEL, self._model)


class BatchProcessScope(SpanScope):
    __slots__ = ("_group", "_messages", "_topic")

    def __init__(
        self,
        tracer: MessagingTracer,
        topic: TopicName,
        group: GroupName,
        messages: Sequence[Mapping[str, str]],
    ) -> None:
        super().__init__(tracer)
        self._topic = topic
        self._group = group
        self._messages = messages

    def _start(self, tracer: Tracer) -> tuple[Span, Context]:
        owner = self._tracer
        attrs: dict[str, AttributeValue] = {
            sc.MESSAGING_SYSTEM: sc.SYSTEM,
            sc.DESTINATION_NAME: self._topic,
            sc.OPERATION_NAME: sc.OP_PROCESS,
            sc.OPERATION_TYPE: sc.OP_PROCESS,
            sc.CONSUMER_GROUP_NAME: self._group,
            sc.BATCH_MESSAGE_COUNT: len(self._messages),
        }
        if owner.namespace:
            attrs[sc.ROCKETMQ_NAMESPACE] = owner.namespace
        # A batch has many producers, so the parent stays the ambient context; links correlate.
        span = tracer.start_span(f"process {self._topic}", kind=SpanKind.CONSUMER, attributes=attrs)
        if span.is_recording():
            # Links are added after the start so an unsampled batch never parses its messages;
            # samplers therefore do not see them (the SDK's built-in samplers ignore links).
            for props in self._messages:
                if owner.carries_context(props):
                    creation = trace.get_current_span(owner.extract(props)).get_span_context()
                    if creation.is_valid:
                        span.add_link(creation)
        return span, trace.set_span_in_context(span)
