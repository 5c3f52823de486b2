"""StarterMetrics: counters, histograms and the lag gauge as an SDK reads them, and the
in-process snapshot that needs no SDK."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    NumberDataPoint,
    Sum,
)

from rmqkit.errors import SystemBusyError
from rmqkit.starter.observability import ConsumeCounts, SendCounts, StarterMetrics
from rmqkit.starter.observability.metrics import DURATION_BUCKETS_S


def collect(reader: InMemoryMetricReader) -> dict[str, Metric]:
    data = reader.get_metrics_data()
    found: dict[str, Metric] = {}
    if data is None:  # nothing recorded yet
        return found
    for rm in data.resource_metrics:
        for scope in rm.scope_metrics:
            assert scope.scope.name == "rmqkit"
            found.update({m.name: m for m in scope.metrics})
    return found


def counts(metric: Metric) -> dict[frozenset[tuple[str, object]], int | float]:
    """Each data point's value, keyed by its attribute set."""
    assert isinstance(metric.data, Sum | Gauge)
    out: dict[frozenset[tuple[str, object]], int | float] = {}
    for point in metric.data.data_points:
        assert isinstance(point, NumberDataPoint)
        out[frozenset((point.attributes or {}).items())] = point.value
    return out


def histogram(metric: Metric) -> list[HistogramDataPoint]:
    assert isinstance(metric.data, Histogram)
    return list(metric.data.data_points)


def attrs(**extra: object) -> frozenset[tuple[str, object]]:
    base: dict[str, object] = {"messaging.system": "rocketmq"}
    renames = {
        "topic": "messaging.destination.name",
        "group": "messaging.consumer.group.name",
        "op": "messaging.operation.name",
        "op_type": "messaging.operation.type",
        "error": "error.type",
        "outcome": "rmqkit.consume.outcome",
    }
    base.update({renames[k]: v for k, v in extra.items()})
    return frozenset(base.items())


def test_sends_are_counted_and_timed(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    metrics = StarterMetrics(meter_provider)
    metrics.sent("orders", duration_s=0.004)
    metrics.sent("orders", duration_s=0.006)
    metrics.sent("orders", error=SystemBusyError("busy"), duration_s=0.5)
    metrics.sent("audit", count=10)

    got = collect(reader)
    sent = got["messaging.client.sent.messages"]
    assert sent.unit == "{message}"
    ok = attrs(topic="orders", op="send", op_type="send")
    failed = attrs(topic="orders", op="send", op_type="send", error="SYSTEM_BUSY")
    assert counts(sent) == {
        ok: 2,
        failed: 1,
        attrs(topic="audit", op="send", op_type="send"): 10,
    }
    duration = got["messaging.client.operation.duration"]
    assert duration.unit == "s"
    points: dict[frozenset[tuple[str, object]], HistogramDataPoint] = {
        frozenset((p.attributes or {}).items()): p for p in histogram(duration)
    }
    assert set(points) == {ok, failed}
    assert points[ok].count == 2
    assert points[ok].sum == pytest.approx(0.010)
    assert points[failed].count == 1
    assert tuple(points[ok].explicit_bounds) == DURATION_BUCKETS_S


def test_each_consume_outcome_lands_in_its_counters(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    metrics = StarterMetrics(meter_provider)
    for outcome in ("ack", "ack", "retry", "dlq", "drop", "duplicate"):
        error = ValueError("bad") if outcome in ("retry", "dlq", "drop") else None
        metrics.consumed("g1", "orders", outcome=outcome, duration_s=0.01, error=error)

    got = collect(reader)
    base = attrs(topic="orders", group="g1", op="process")
    assert counts(got["messaging.client.consumed.messages"]) == {base: 6}
    assert counts(got["rmqkit.consumer.failed"]) == {
        attrs(topic="orders", group="g1", op="process", error="ValueError", outcome=o): 1
        for o in ("retry", "dlq", "drop")
    }
    assert counts(got["rmqkit.consumer.retried"]) == {base: 1}
    assert counts(got["rmqkit.consumer.dead_lettered"]) == {base: 1}
    assert counts(got["rmqkit.consumer.duplicates"]) == {base: 1}
    process = {
        frozenset((p.attributes or {}).items()): p.count
        for p in histogram(got["messaging.process.duration"])
    }
    # The duplicate was never handed to the listener, so it has no processing time.
    failed = attrs(topic="orders", group="g1", op="process", error="ValueError")
    assert process == {base: 2, failed: 3}


def test_a_failure_without_an_exception_is_typed_other(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    StarterMetrics(meter_provider).consumed("g1", "orders", outcome="drop")
    failed = counts(collect(reader)["rmqkit.consumer.failed"])
    assert failed == {
        attrs(topic="orders", group="g1", op="process", error="_OTHER", outcome="drop"): 1
    }


def test_the_lag_gauge_reads_the_registered_source(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    lag = {("g1", "orders"): 5, ("g2", "orders"): 0}

    def source() -> Iterable[tuple[str, str, int]]:
        return [(g, t, n) for (g, t), n in lag.items()]

    metrics = StarterMetrics(meter_provider)
    assert "rmqkit.consumer.lag" not in collect(reader)  # no source yet: no points
    metrics.set_lag_source(source)
    gauge = collect(reader)["rmqkit.consumer.lag"]
    assert gauge.unit == "{message}"
    assert counts(gauge) == {
        attrs(topic="orders", group="g1"): 5,
        attrs(topic="orders", group="g2"): 0,
    }
    lag[("g1", "orders")] = 2
    assert counts(collect(reader)["rmqkit.consumer.lag"])[attrs(topic="orders", group="g1")] == 2


def test_a_failing_lag_source_is_logged_not_raised(
    meter_provider: MeterProvider,
    reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> Iterable[tuple[str, str, int]]:
        raise RuntimeError("rebalancing")

    metrics = StarterMetrics(meter_provider, lag_source=broken)
    with caplog.at_level(logging.WARNING, logger="rmqkit.starter.observability.metrics"):
        assert "rmqkit.consumer.lag" not in collect(reader)
        assert metrics.snapshot().lag == {}
    assert "consumer lag source failed" in caplog.text


def test_the_snapshot_needs_no_sdk() -> None:
    metrics = StarterMetrics(NoOpMeterProvider(), lag_source=lambda: [("g1", "orders", 7)])
    metrics.sent("orders")
    metrics.sent("orders", error="TIMEOUT")
    for outcome in ("ack", "retry", "retry", "dlq", "drop", "duplicate"):
        metrics.consumed("g1", "orders", outcome=outcome)
    metrics.consumed("g2", "orders", outcome="ack")

    snap = metrics.snapshot()
    assert snap.sent == {"orders": SendCounts(sent=1, failed=1)}
    assert snap.consumed[("g1", "orders")] == ConsumeCounts(
        consumed=6, acked=1, failed=4, retried=2, dead_lettered=1, dropped=1, duplicates=1
    )
    assert snap.consumed[("g2", "orders")] == ConsumeCounts(consumed=1, acked=1)
    assert snap.lag == {("g1", "orders"): 7}

    as_json = json.loads(json.dumps(snap.to_dict()))
    assert as_json["sent"]["orders"] == {"sent": 1, "failed": 1}
    assert as_json["consumed"]["g1"]["orders"]["retried"] == 2
    assert as_json["lag"] == {"g1": {"orders": 7}}


def test_a_snapshot_does_not_change_afterwards() -> None:
    metrics = StarterMetrics(NoOpMeterProvider())
    metrics.consumed("g1", "orders", outcome="ack")
    before = metrics.snapshot()
    metrics.consumed("g1", "orders", outcome="ack")
    assert before.consumed[("g1", "orders")].consumed == 1
    assert metrics.snapshot().consumed[("g1", "orders")].consumed == 2
