"""Observability for the starter: tracing, metrics and health, on `opentelemetry-api` only.

The counterpart of RocketMQ's message trace and client metrics: trace context travels in message
user properties, spans and metrics follow the OpenTelemetry messaging conventions for RocketMQ,
and `Health` answers readiness and liveness probes. The application chooses (or omits) the SDK.
"""

from __future__ import annotations

from rmqkit.starter.observability.health import (
    NAME_SERVER_CHECK,
    Check,
    CheckOutcome,
    CheckResult,
    Health,
    HealthReport,
    consumer_check_name,
    name_server_check,
    producer_check_name,
)
from rmqkit.starter.observability.metrics import (
    ConsumeCounts,
    LagSource,
    MetricsSnapshot,
    Outcome,
    SendCounts,
    StarterMetrics,
)
from rmqkit.starter.observability.semconv import ConsumptionModel, MessageType, error_type
from rmqkit.starter.observability.tracing import (
    TRACEPARENT,
    MessagingSpan,
    MessagingTracer,
    SpanScope,
    batch_process_span,
    extract,
    inject,
    process_span,
    send_span,
    span_needed,
)

__all__ = [
    "NAME_SERVER_CHECK",
    "TRACEPARENT",
    "Check",
    "CheckOutcome",
    "CheckResult",
    "ConsumeCounts",
    "ConsumptionModel",
    "Health",
    "HealthReport",
    "LagSource",
    "MessageType",
    "MessagingSpan",
    "MessagingTracer",
    "MetricsSnapshot",
    "Outcome",
    "SendCounts",
    "SpanScope",
    "StarterMetrics",
    "batch_process_span",
    "consumer_check_name",
    "error_type",
    "extract",
    "inject",
    "name_server_check",
    "process_span",
    "producer_check_name",
    "send_span",
    "span_needed",
]
