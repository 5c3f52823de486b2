"""What a push consumer tells an admin about itself (RocketMQ's `ConsumerRunningInfo`), and the
figures behind it (`ConsumerStatsManager`).

An admin asks a broker (GET_CONSUMER_RUNNING_INFO), the broker asks the client over its
connection, and the client answers with one JSON body:

    properties       the consumer's settings and PROP_* facts, every value a string
    subscriptionSet  its subscriptions, as in its heartbeats
    mqTable          per queue it holds (fastjson's MessageQueue-object keys): commitOffset,
                     cachedMsgMinOffset/MaxOffset/Count/SizeInMiB, locked, lastLockTimestamp,
                     droped (sic), lastPullTimestamp, lastConsumeTimestamp, ...
    statusTable      per subscribed topic: pullRT, pullTPS, consumeRT, consumeOKTPS,
                     consumeFailedTPS over the last minute, consumeFailedMsgs over the last hour
    jstack           the stacks of the process's threads and tasks, when asked (jstackEnable)

The figures are plain counters the consumer bumps once per pull and once per handler call; a
sampler copies them every 10 s, and a rate is the counters now against the oldest copy within the
minute (or the hour), as Java's per-minute and per-hour stats items are.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import io
import sys
import threading
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from rmqkit.common.subscription import SubscriptionData
from rmqkit.protocol.admin_bodies import MQKey, encode_mq_table_json

SAMPLE_EVERY_S = 10.0
MINUTE_S = 60.0
HOUR_S = 3600.0


@dataclass(slots=True)
class TopicCounters:
    """Totals since the consumer started, for one topic (the retry topic has its own)."""

    pulls: int = 0
    """Pulls that found messages."""
    pulled: int = 0
    pull_rt_ms: float = 0.0
    calls: int = 0
    """Handler calls."""
    consume_rt_ms: float = 0.0
    ok: int = 0
    failed: int = 0

    def copy(self) -> tuple[int, int, float, int, float, int, int]:
        return (self.pulls, self.pulled, self.pull_rt_ms, self.calls, self.consume_rt_ms,
                self.ok, self.failed)  # fmt: skip


_Sample = tuple[float, dict[str, tuple[int, int, float, int, float, int, int]]]


class ConsumerStats:
    """Per-topic counters of one consumer, and their samples for rates."""

    def __init__(self) -> None:
        self.topics: dict[str, TopicCounters] = {}
        self._minute: deque[_Sample] = deque()
        self._hour: deque[_Sample] = deque()

    def topic(self, topic: str) -> TopicCounters:
        c = self.topics.get(topic)
        if c is None:
            c = self.topics[topic] = TopicCounters()
        return c

    def sample(self, now: float) -> None:
        """Copy the counters (the sampler calls this every SAMPLE_EVERY_S)."""
        snap = (now, {t: c.copy() for t, c in self.topics.items()})
        self._minute.append(snap)
        while len(self._minute) > 1 and now - self._minute[1][0] >= MINUTE_S:
            self._minute.popleft()
        if not self._hour or now - self._hour[-1][0] >= MINUTE_S:
            self._hour.append(snap)
        while len(self._hour) > 1 and now - self._hour[1][0] >= HOUR_S:
            self._hour.popleft()

    def status(self, topic: str, now: float) -> dict[str, float | int]:
        """Java's ConsumeStatus of `topic`: RTs and rates over the last minute, failures over
        the last hour (all zero before the first sample)."""
        cur = self.topic(topic).copy()
        base = _base(self._minute, topic)
        hour = _base(self._hour, topic)
        secs = now - self._minute[0][0] if self._minute else 0.0
        pulls, pulled, pull_rt, calls, consume_rt, ok, failed = (
            a - b for a, b in zip(cur, base, strict=True)
        )
        return {
            "pullRT": pull_rt / pulls if pulls else 0.0,
            "pullTPS": pulled / secs if secs > 0 else 0.0,
            "consumeRT": consume_rt / calls if calls else 0.0,
            "consumeOKTPS": ok / secs if secs > 0 else 0.0,
            "consumeFailedTPS": failed / secs if secs > 0 else 0.0,
            "consumeFailedMsgs": cur[6] - hour[6] if self._hour else 0,
        }


def _base(samples: deque[_Sample], topic: str) -> tuple[int, int, float, int, float, int, int]:
    if not samples:
        return (0, 0, 0.0, 0, 0.0, 0, 0)
    return samples[0][1].get(topic, (0, 0, 0.0, 0, 0.0, 0, 0))


async def sample_forever(stats: ConsumerStats) -> None:
    """The sampler task of one consumer."""
    loop = asyncio.get_running_loop()
    while True:
        stats.sample(loop.time())
        await asyncio.sleep(SAMPLE_EVERY_S)


def client_version() -> str:
    """PROP_CLIENT_VERSION: Java clients give their `MQVersion` name, rmqkit its package's."""
    try:
        return f"rmqkit {importlib.metadata.version('rmqkit')}"
    except importlib.metadata.PackageNotFoundError:
        return "rmqkit"


def subscription_json(s: SubscriptionData) -> dict[str, Any]:
    """A subscription as Java's `SubscriptionData` serializes."""
    return {
        "classFilterMode": False,
        "topic": s.topic,
        "subString": s.sub_string,
        "tagsSet": sorted(s.tags or ()),
        "codeSet": sorted(s.codes or ()),
        "subVersion": s.sub_version,
        "expressionType": s.expression_type,
    }


def running_info_body(
    properties: dict[str, str],
    subscriptions: list[SubscriptionData],
    queues: dict[MQKey, dict[str, Any]],
    status: dict[str, dict[str, float | int]],
    jstack: str | None,
) -> bytes:
    """The JSON body of GET_CONSUMER_RUNNING_INFO's answer (mqTable in fastjson's form)."""
    extra: dict[str, Any] = {
        "properties": properties,
        "subscriptionSet": [subscription_json(s) for s in subscriptions],
        "statusTable": status,
    }
    if jstack is not None:
        extra["jstack"] = jstack
    return encode_mq_table_json("mqTable", queues, **extra)


def process_stacks() -> str:
    """Every thread's stack and every asyncio task's, for an admin asking where a consumer
    is stuck (the `jstack` of a Java client's running info)."""
    names = {t.ident: t.name for t in threading.enumerate()}
    parts: list[str] = []
    for ident, frame in sys._current_frames().items():
        parts.append(f'"{names.get(ident, "?")}" thread {ident}\n')
        parts.extend(traceback.format_stack(frame))
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:  # no running loop in this thread
        tasks = set()
    for task in sorted(tasks, key=lambda t: t.get_name()):
        out = io.StringIO()
        task.print_stack(file=out)
        parts.append(f"\n{out.getvalue()}")
    return "".join(parts)


# RocketMQ's `CMResult` names for the outcome of CONSUME_MESSAGE_DIRECTLY that a push consumer
# without transactions gives (ORDERLY's COMMIT and ROLLBACK, and a null return, have no
# counterpart here: a handler returning None has succeeded).
CR_SUCCESS = "CR_SUCCESS"
CR_LATER = "CR_LATER"
CR_THROW_EXCEPTION = "CR_THROW_EXCEPTION"


def direct_result_body(
    result: str, *, order: bool, spent_ms: int, remark: str | None = None
) -> bytes:
    """The JSON body of CONSUME_MESSAGE_DIRECTLY's answer (`ConsumeMessageDirectlyResult`)."""
    return orjson.dumps({
        "order": order,
        "autoCommit": True,
        "consumeResult": result,
        "remark": remark,
        "spentTimeMills": spent_ms,
    })  # fmt: skip
