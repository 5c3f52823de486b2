"""Producer and consumer metrics for the starter, through `opentelemetry-api` only.

Mirrors what RocketMQ's client reports (send TPS and failures, consume OK/failed TPS, retries,
DLQ, consumer lag) with the OpenTelemetry messaging metric names where one exists. Every event
is also tallied in-process, so a `MetricsSnapshot` is available without any SDK.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Final, Literal, TypeAlias

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.util.types import Attributes

from rmqkit.common.types import GroupName, TopicName
from rmqkit.starter.observability import semconv as sc

log = logging.getLogger(__name__)

Outcome: TypeAlias = Literal["ack", "retry", "dlq", "drop", "duplicate"]
_NO_OP_PROVIDERS = frozenset({"_ProxyMeterProvider", "NoOpMeterProvider"})
"""How a delivered message ended: acknowledged; failed and sent back for redelivery; failed past
its retries and moved to the DLQ; failed and not redelivered (broadcasting, or retries off);
skipped as a duplicate by the idempotency check."""

LagSource: TypeAlias = Callable[[], Iterable[tuple[GroupName, TopicName, int]]]
"""Returns `(group, topic, lag)` for every subscription; lag is messages behind the broker."""

DURATION_BUCKETS_S: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
"""Histogram bucket advice for messaging durations, in seconds (the conventions' advice)."""

_FAILED_OUTCOMES: Final = frozenset({"retry", "dlq", "drop"})


@dataclass(frozen=True, slots=True)
class SendCounts:
    """Send attempts to one topic."""

    sent: int = 0
    """Messages handed to the broker that it stored."""
    failed: int = 0
    """Messages whose send raised or was refused."""


@dataclass(frozen=True, slots=True)
class ConsumeCounts:
    """Deliveries to one consumer group from one topic."""

    consumed: int = 0
    """Messages delivered to the listener layer (every outcome below counts here)."""
    acked: int = 0
    failed: int = 0
    """Listener failures: `retried + dead_lettered + dropped`."""
    retried: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """In-process counts since start, readable without an OpenTelemetry SDK.

    Attributes:
        sent: send counts per topic.
        consumed: consume counts per (group, topic).
        lag: messages behind per (group, topic), from the registered lag source.
    """

    sent: Mapping[TopicName, SendCounts]
    consumed: Mapping[tuple[GroupName, TopicName], ConsumeCounts]
    lag: Mapping[tuple[GroupName, TopicName], int]

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly form: `{"sent": {topic: {...}}, "consumed": {group: {topic: {...}}}}`."""
        consumed: dict[str, dict[str, dict[str, int]]] = {}
        for (group, topic), counts in self.consumed.items():
            consumed.setdefault(group, {})[topic] = asdict(counts)
        lag: dict[str, dict[str, int]] = {}
        for (group, topic), behind in self.lag.items():
            lag.setdefault(group, {})[topic] = behind
        return {
            "sent": {topic: asdict(counts) for topic, counts in self.sent.items()},
            "consumed": consumed,
            "lag": lag,
        }


class _ConsumeTally:
    __slots__ = (
        "acked",
        "consumed",
        "dead_lettered",
        "dropped",
        "duplicates",
        "failed",
        "retried",
    )

    def __init__(self) -> None:
        self.consumed = self.acked = self.failed = self.retried = 0
        self.dead_lettered = self.dropped = self.duplicates = 0

    def freeze(self) -> ConsumeCounts:
        return ConsumeCounts(
            consumed=self.consumed,
            acked=self.acked,
            failed=self.failed,
            retried=self.retried,
            dead_lettered=self.dead_lettered,
            dropped=self.dropped,
            duplicates=self.duplicates,
        )


class StarterMetrics:
    """The starter's producer and consumer instruments, plus in-process tallies.

    Instruments (meter `rmqkit`):

    - `messaging.client.sent.messages` (counter; `error.type` on failures)
    - `messaging.client.operation.duration` (histogram, s; the send round trip)
    - `messaging.client.consumed.messages` (counter)
    - `messaging.process.duration` (histogram, s; the listener call)
    - `rmqkit.consumer.failed` / `.retried` / `.dead_lettered` / `.duplicates` (counters)
    - `rmqkit.consumer.lag` (observable gauge fed by the lag source)

    Attribute dicts are built once per (group, topic, error) and reused: the send and consume
    paths only look them up.

    Args:
        meter_provider: the provider to use; the global one when None (an SDK set up later
            is still picked up through the API's proxy).
        lag_source: feeds the lag gauge; may also be set later with `set_lag_source`.
    """

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        lag_source: LagSource | None = None,
    ) -> None:
        meter = metrics.get_meter(
            sc.INSTRUMENTATION_NAME, sc.instrumentation_version(), meter_provider=meter_provider
        )
        self._explicit = meter_provider is not None
        self._live = [self._explicit, 0.0]  # instruments record? and until when that is trusted
        msg = "{message}"
        self._sent = meter.create_counter(
            sc.METRIC_SENT_MESSAGES, unit=msg, description="Messages the producer tried to send."
        )
        self._send_duration = meter.create_histogram(
            sc.METRIC_OPERATION_DURATION,
            unit="s",
            description="Duration of a send to the broker.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self._consumed = meter.create_counter(
            sc.METRIC_CONSUMED_MESSAGES,
            unit=msg,
            description="Messages delivered to the application.",
        )
        self._process_duration = meter.create_histogram(
            sc.METRIC_PROCESS_DURATION,
            unit="s",
            description="Duration of the listener call for a message.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self._failed = meter.create_counter(
            sc.METRIC_CONSUMER_FAILED, unit=msg, description="Listener failures."
        )
        self._retried = meter.create_counter(
            sc.METRIC_CONSUMER_RETRIED, unit=msg, description="Messages sent back for retry."
        )
        self._dead_lettered = meter.create_counter(
            sc.METRIC_CONSUMER_DEAD_LETTERED,
            unit=msg,
            description="Messages moved to the dead-letter queue.",
        )
        self._duplicates = meter.create_counter(
            sc.METRIC_CONSUMER_DUPLICATES,
            unit=msg,
            description="Messages skipped by the idempotency check.",
        )
        self._lag_source = lag_source
        meter.create_observable_gauge(
            sc.METRIC_CONSUMER_LAG,
            callbacks=[self._observe_lag],
            unit=msg,
            description="Messages not yet consumed by a group on a topic.",
        )
        self._lock = threading.Lock()
        self._send_tally: dict[TopicName, list[int]] = {}
        self._consume_tally: dict[tuple[GroupName, TopicName], _ConsumeTally] = {}
        self._attrs: dict[tuple[str, ...], Attributes] = {}

    # -- attributes, built once per key

    def _send_attrs(self, topic: TopicName, error: str | None) -> Attributes:
        key = ("send", topic, error or "")
        attrs = self._attrs.get(key)
        if attrs is None:
            built = {
                sc.MESSAGING_SYSTEM: sc.SYSTEM,
                sc.DESTINATION_NAME: topic,
                sc.OPERATION_NAME: sc.OP_SEND,
                sc.OPERATION_TYPE: sc.OP_SEND,
            }
            if error:
                built[sc.ERROR_TYPE] = error
            attrs = self._attrs[key] = built
        return attrs

    def _consume_attrs(
        self, group: GroupName, topic: TopicName, error: str = "", outcome: str = ""
    ) -> Attributes:
        key = ("consume", group, topic, error, outcome)
        attrs = self._attrs.get(key)
        if attrs is None:
            built = {
                sc.MESSAGING_SYSTEM: sc.SYSTEM,
                sc.DESTINATION_NAME: topic,
                sc.CONSUMER_GROUP_NAME: group,
                sc.OPERATION_NAME: sc.OP_PROCESS,
            }
            if error:
                built[sc.ERROR_TYPE] = error
            if outcome:
                built[sc.RMQKIT_OUTCOME] = outcome
            attrs = self._attrs[key] = built
        return attrs

    # -- events

    def sent(
        self,
        topic: TopicName,
        *,
        error: BaseException | str | None = None,
        duration_s: float | None = None,
        count: int = 1,
    ) -> None:
        """Count one send attempt (or a batch of `count` messages) to `topic`.

        Args:
            topic: the destination topic.
            error: the exception or error type if the send failed; None on success.
            duration_s: the send round trip in seconds, if measured.
            count: messages in the send (more than 1 for a batch send).
        """
        error_type = None if error is None else sc.error_type(error)
        attrs = self._send_attrs(topic, error_type)
        self._sent.add(count, attrs)
        if duration_s is not None:
            self._send_duration.record(duration_s, attrs)
        with self._lock:
            tally = self._send_tally.get(topic)
            if tally is None:
                tally = self._send_tally[topic] = [0, 0]
            tally[0 if error is None else 1] += count

    def consumed(
        self,
        group: GroupName,
        topic: TopicName,
        *,
        outcome: Outcome,
        duration_s: float | None = None,
        error: BaseException | str | None = None,
    ) -> None:
        """Count one message delivered to a listener, and how it ended.

        Every outcome counts in `messaging.client.consumed.messages`. `retry`, `dlq` and `drop`
        also count in `rmqkit.consumer.failed` (with `error.type` and the outcome), and in
        `retried` / `dead_lettered`; `duplicate` counts in `rmqkit.consumer.duplicates` and
        records no processing time (the listener did not run).

        Args:
            group: the consumer group.
            topic: the topic the message came from.
            outcome: how the delivery ended (see `Outcome`).
            duration_s: the listener call in seconds, if measured.
            error: what the listener raised, for failed outcomes.
        """
        if self._instruments_live():
            self._record_consumed(group, topic, outcome, duration_s, error)
        self._tally_consumed(group, topic, outcome)

    def _instruments_live(self) -> bool:
        """Whether a real MeterProvider is behind the instruments (with the API's default one
        every call is a no-op that still costs microseconds); looked at once a second."""
        if self._explicit:
            return True
        now = time.monotonic()
        if now >= self._live[1]:
            provider = metrics.get_meter_provider()
            self._live[0] = type(provider).__name__ not in _NO_OP_PROVIDERS
            self._live[1] = now + 1.0
        return bool(self._live[0])

    def _record_consumed(
        self, group: GroupName, topic: TopicName, outcome: Outcome, duration_s: float | None,
        error: BaseException | str | None,
    ) -> None:  # fmt: skip
        base = self._consume_attrs(group, topic)
        self._consumed.add(1, base)
        failed = outcome in _FAILED_OUTCOMES
        if failed:
            error_type = sc.error_type(error)
            self._failed.add(1, self._consume_attrs(group, topic, error_type, outcome))
            if outcome == "retry":
                self._retried.add(1, base)
            elif outcome == "dlq":
                self._dead_lettered.add(1, base)
            if duration_s is not None:
                self._process_duration.record(
                    duration_s, self._consume_attrs(group, topic, error_type)
                )
        elif outcome == "duplicate":
            self._duplicates.add(1, base)
        elif duration_s is not None:
            self._process_duration.record(duration_s, base)

    def _tally_consumed(self, group: GroupName, topic: TopicName, outcome: Outcome) -> None:
        with self._lock:
            tally = self._consume_tally.get((group, topic))
            if tally is None:
                tally = self._consume_tally[(group, topic)] = _ConsumeTally()
            tally.consumed += 1
            if outcome == "ack":
                tally.acked += 1
            elif outcome == "duplicate":
                tally.duplicates += 1
            else:
                tally.failed += 1
                if outcome == "retry":
                    tally.retried += 1
                elif outcome == "dlq":
                    tally.dead_lettered += 1
                else:
                    tally.dropped += 1

    # -- lag

    def set_lag_source(self, source: LagSource | None) -> None:
        """Register (or clear) the function the lag gauge and `snapshot()` read."""
        self._lag_source = source

    def _read_lag(self) -> list[tuple[GroupName, TopicName, int]]:
        source = self._lag_source
        if source is None:
            return []
        try:
            return list(source())
        except Exception:
            # A collection cycle must not fail because one consumer is mid-rebalance.
            log.warning("consumer lag source failed", exc_info=True)
            return []

    def _lag_attrs(self, group: GroupName, topic: TopicName) -> Attributes:
        key = ("lag", group, topic)
        attrs = self._attrs.get(key)
        if attrs is None:
            attrs = self._attrs[key] = {
                sc.MESSAGING_SYSTEM: sc.SYSTEM,
                sc.DESTINATION_NAME: topic,
                sc.CONSUMER_GROUP_NAME: group,
            }
        return attrs

    def _observe_lag(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(lag, self._lag_attrs(group, topic))
            for group, topic, lag in self._read_lag()
        ]

    # -- in-process view

    def snapshot(self) -> MetricsSnapshot:
        """The in-process counts so far, and the current lag."""
        with self._lock:
            sent = {
                topic: SendCounts(sent=ok, failed=bad)
                for topic, (ok, bad) in self._send_tally.items()
            }
            consumed = {key: tally.freeze() for key, tally in self._consume_tally.items()}
        lag = {(group, topic): behind for group, topic, behind in self._read_lag()}
        return MetricsSnapshot(sent=sent, consumed=consumed, lag=lag)
