"""Tracing: context round trip through message properties, span attributes, batch links,
exception recording, and the pass-through behaviour without an SDK."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Mapping, MutableMapping

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

from rmqkit.errors import TopicNotExistError
from rmqkit.starter.observability import MessagingTracer, extract, inject

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331
UPSTREAM = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [s for s in exporter.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


def ctx_of(span: ReadableSpan) -> trace.SpanContext:
    sc_ = span.get_span_context()
    assert sc_ is not None
    return sc_


# -- round trip --------------------------------------------------------------------------------


def test_process_span_is_a_child_of_the_send_span(
    tracer: MessagingTracer, exporter: InMemorySpanExporter
) -> None:
    props: dict[str, str] = {}
    with tracer.send_span("orders", properties=props) as sending:
        sending.set_message_id("MSG1")
    assert props["traceparent"].startswith("00-")

    with tracer.process_span("orders", group="g1", properties=dict(props), msg_id="MSG1"):
        pass

    send = only(exporter, "send orders")
    process = only(exporter, "process orders")
    assert process.parent is not None
    assert process.parent.span_id == ctx_of(send).span_id
    assert ctx_of(process).trace_id == ctx_of(send).trace_id
    assert [link.context.span_id for link in process.links] == [ctx_of(send).span_id]
    assert send.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER


def test_inject_and_extract_round_trip_the_current_span() -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    span = provider.get_tracer("t").start_span("outer")
    props: dict[str, str] = {"KEYS": "k1"}
    inject(props, trace.set_span_in_context(span))
    extracted = trace.get_current_span(extract(props)).get_span_context()
    assert extracted.trace_id == span.get_span_context().trace_id
    assert extracted.span_id == span.get_span_context().span_id
    assert extracted.is_remote
    span.end()
    provider.shutdown()


def test_a_send_inside_a_process_span_continues_the_trace(
    tracer: MessagingTracer, exporter: InMemorySpanExporter
) -> None:
    forwarded: dict[str, str] = {}
    with tracer.process_span("orders", group="g1", properties={"traceparent": UPSTREAM}):
        with tracer.send_span("invoices", properties=forwarded):
            pass
    process = only(exporter, "process orders")
    send = only(exporter, "send invoices")
    assert ctx_of(process).trace_id == TRACE_ID
    assert process.parent is not None and process.parent.span_id == SPAN_ID
    assert send.parent is not None and send.parent.span_id == ctx_of(process).span_id
    assert forwarded["traceparent"].split("-")[1] == f"{TRACE_ID:032x}"


def test_process_span_makes_the_message_baggage_current(tracer: MessagingTracer) -> None:
    props = {"traceparent": UPSTREAM, "baggage": "tenant=acme"}
    with tracer.process_span("orders", group="g1", properties=props):
        assert baggage.get_baggage("tenant") == "acme"
    assert baggage.get_baggage("tenant") is None


def test_process_span_without_context_keeps_the_ambient_parent(
    tracer: MessagingTracer,
    tracer_provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    with tracer_provider.get_tracer("app").start_as_current_span("poll loop") as outer:
        with tracer.process_span("orders", group="g1", properties={"KEYS": "a"}):
            pass
    process = only(exporter, "process orders")
    assert process.parent is not None
    assert process.parent.span_id == outer.get_span_context().span_id
    assert list(process.links) == []


def test_a_user_supplied_traceparent_is_kept_and_linked(
    tracer: MessagingTracer, exporter: InMemorySpanExporter
) -> None:
    props = {"traceparent": UPSTREAM}
    with tracer.send_span("orders", properties=props):
        pass
    assert props == {"traceparent": UPSTREAM}
    send = only(exporter, "send orders")
    assert [(x.context.trace_id, x.context.span_id) for x in send.links] == [(TRACE_ID, SPAN_ID)]


# -- attributes --------------------------------------------------------------------------------


def test_send_span_attributes(
    tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = MessagingTracer(tracer_provider, namespace="ns1")
    with tracer.send_span(
        "orders", properties={}, tag="created", keys="k1 k2", client_group="pg"
    ) as span:
        assert span.is_recording
        span.set_message_id("7F0000010001", queue_id=3)
    assert dict(only(exporter, "send orders").attributes or {}) == {
        "messaging.system": "rocketmq",
        "messaging.destination.name": "orders",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.rocketmq.namespace": "ns1",
        "messaging.rocketmq.message.tag": "created",
        "messaging.rocketmq.message.keys": ("k1", "k2"),
        "messaging.rocketmq.message.type": "normal",
        "messaging.rocketmq.client_group": "pg",
        "messaging.message.id": "7F0000010001",
        "messaging.destination.partition.id": "3",
    }


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"delay_level": 3}, {"messaging.rocketmq.message.delay_time_level": 3}),
        (
            {"deliver_at_ms": 1665987217045},
            {"messaging.rocketmq.message.delivery_timestamp": 1665987217045},
        ),
    ],
)
def test_a_delayed_send_is_typed_delay(
    tracer: MessagingTracer,
    exporter: InMemorySpanExporter,
    kwargs: dict[str, int],
    expected: dict[str, int],
) -> None:
    with tracer.send_span("orders", properties={}, **kwargs):  # type: ignore[arg-type]
        pass
    attrs = dict(only(exporter, "send orders").attributes or {})
    assert attrs["messaging.rocketmq.message.type"] == "delay"
    assert expected.items() <= attrs.items()


def test_fifo_send_records_the_message_group(
    tracer: MessagingTracer, exporter: InMemorySpanExporter
) -> None:
    with tracer.send_span("orders", properties={}, message_type="fifo", message_group="user-7"):
        pass
    attrs = dict(only(exporter, "send orders").attributes or {})
    assert attrs["messaging.rocketmq.message.type"] == "fifo"
    assert attrs["messaging.rocketmq.message.group"] == "user-7"


def test_process_span_attributes(tracer: MessagingTracer, exporter: InMemorySpanExporter) -> None:
    with tracer.process_span(
        "orders",
        group="g1",
        properties={},
        msg_id="MSG1",
        tag="created",
        keys=["k1"],
        reconsume_times=2,
        queue_id=1,
        consumption_model="clustering",
    ):
        pass
    assert dict(only(exporter, "process orders").attributes or {}) == {
        "messaging.system": "rocketmq",
        "messaging.destination.name": "orders",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.consumer.group.name": "g1",
        "messaging.message.id": "MSG1",
        "messaging.rocketmq.message.tag": "created",
        "messaging.rocketmq.message.keys": ("k1",),
        "rmqkit.message.reconsume_times": 2,
        "messaging.destination.partition.id": "1",
        "messaging.rocketmq.consumption_model": "clustering",
    }


# -- batches -----------------------------------------------------------------------------------


def test_batch_process_span_links_every_message(
    tracer: MessagingTracer,
    tracer_provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    batch: list[dict[str, str]] = []
    for _ in range(3):
        props: dict[str, str] = {}
        with tracer.send_span("orders", properties=props):
            pass
        batch.append(props)
    batch.append({"KEYS": "no-context"})
    batch.append({"traceparent": "not a traceparent"})

    with tracer_provider.get_tracer("app").start_as_current_span("poll loop") as outer:
        with tracer.batch_process_span("orders", group="g1", messages=batch):
            pass

    sends = [s for s in exporter.get_finished_spans() if s.name == "send orders"]
    process = only(exporter, "process orders")
    assert [x.context.span_id for x in process.links] == [ctx_of(s).span_id for s in sends]
    assert process.parent is not None
    assert process.parent.span_id == outer.get_span_context().span_id
    attrs = dict(process.attributes or {})
    assert attrs["messaging.batch.message_count"] == 5
    assert attrs["messaging.consumer.group.name"] == "g1"


# -- errors ------------------------------------------------------------------------------------


def test_an_escaping_exception_is_recorded_and_propagates(
    tracer: MessagingTracer, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(ValueError, match="bad payload"):
        with tracer.process_span("orders", group="g1", properties={}):
            raise ValueError("bad payload")
    span = only(exporter, "process orders")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: bad payload"
    assert (span.attributes or {})["error.type"] == "ValueError"
    [event] = span.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == "ValueError"


def test_a_broker_refusal_is_typed_by_its_response_code(
    tracer: MessagingTracer, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(TopicNotExistError):
        with tracer.send_span("orders", properties={}):
            raise TopicNotExistError("no route")
    span = only(exporter, "send orders")
    assert (span.attributes or {})["error.type"] == "TOPIC_NOT_EXIST"
    assert span.status.status_code is StatusCode.ERROR


def test_set_error_marks_a_failure_without_raising(
    tracer: MessagingTracer, exporter: InMemorySpanExporter
) -> None:
    with tracer.send_span("orders", properties={}) as span:
        span.set_error("SLAVE_NOT_AVAILABLE", "stored on the master only")
    sent = only(exporter, "send orders")
    assert (sent.attributes or {})["error.type"] == "SLAVE_NOT_AVAILABLE"
    assert sent.status.description == "stored on the master only"
    assert list(sent.events) == []


def test_the_context_is_restored_after_the_block(tracer: MessagingTracer) -> None:
    before = otel_context.get_current()
    with pytest.raises(RuntimeError):
        with tracer.send_span("orders", properties={}):
            raise RuntimeError("boom")
    assert otel_context.get_current() == before


# -- without an SDK ----------------------------------------------------------------------------


def test_without_an_sdk_spans_do_not_record_and_properties_stay_empty() -> None:
    tracer = MessagingTracer(NoOpTracerProvider())
    props: dict[str, str] = {"KEYS": "k1"}
    with tracer.send_span("orders", properties=props, tag="t", keys="k1") as span:
        assert not span.is_recording
        span.set_message_id("MSG1")
    with tracer.process_span("orders", group="g1", properties=props) as span:
        assert not span.is_recording
    with tracer.batch_process_span("orders", group="g1", messages=[props]) as span:
        assert not span.is_recording
    assert props == {"KEYS": "k1"}


def test_without_an_sdk_the_upstream_context_passes_through() -> None:
    tracer = MessagingTracer(NoOpTracerProvider())
    forwarded: dict[str, str] = {}
    with tracer.process_span("orders", group="g1", properties={"traceparent": UPSTREAM}):
        with tracer.send_span("invoices", properties=forwarded):
            pass
    assert forwarded == {"traceparent": UPSTREAM}


def test_the_global_functions_write_nothing_or_a_valid_traceparent() -> None:
    # Whatever another test did to the global provider, the properties stay well-formed.
    from rmqkit.starter.observability import send_span

    props: dict[str, str] = {}
    with send_span("orders", properties=props):
        pass
    assert set(props) <= {"traceparent", "tracestate"}
    if "traceparent" in props:
        assert trace.get_current_span(extract(props)).get_span_context().is_valid


def test_an_sdk_set_after_import_is_used() -> None:
    # Global providers can be set once per process, so this runs in a fresh interpreter.
    script = textwrap.dedent(
        """
        from rmqkit.starter.observability import send_span
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        with send_span("early", properties={}) as span:
            assert not span.is_recording
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        props = {}
        with send_span("late", properties=props) as span:
            assert span.is_recording
        print([s.name for s in exporter.get_finished_spans()], sorted(props))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "['send late'] ['traceparent']"


# -- the properties setter ---------------------------------------------------------------------


class _HostilePropagator(TextMapPropagator):
    """Writes a value holding RocketMQ's property separators, and a clean one."""

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        setter.set(carrier, "x-bad", "a\x01b")
        setter.set(carrier, "x-also-bad", "a\x02b")
        setter.set(carrier, "x-good", "ab")

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        return context if context is not None else Context()

    @property
    def fields(self) -> set[str]:
        return {"x-bad", "x-also-bad", "x-good"}


def test_values_that_would_break_the_property_encoding_are_dropped(
    tracer_provider: TracerProvider,
) -> None:
    tracer = MessagingTracer(tracer_provider, propagator=_HostilePropagator())
    props: MutableMapping[str, str] = {}
    with tracer.send_span("orders", properties=props):
        pass
    assert props == {"x-good": "ab"}


def test_carries_context_looks_only_at_the_propagator_fields(tracer: MessagingTracer) -> None:
    with_ctx: Mapping[str, str] = {"traceparent": UPSTREAM}
    assert tracer.carries_context(with_ctx)
    assert tracer.carries_context({"baggage": "a=b"})
    assert not tracer.carries_context({"KEYS": "k", "TAGS": "t"})
    assert not MessagingTracer(propagator=_HostilePropagator()).carries_context(with_ctx)
