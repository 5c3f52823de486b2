"""PULL_MESSAGE and LITE_PULL_MESSAGE, with long polling (RocketMQ `PullMessageProcessor`).

A pull reads up to `maxMsgNums` records of one queue from `queueOffset`, filtered by the
subscription's tag codes, and answers with the records as they are stored. A pull that finds
nothing is held (when the client allows suspension) until a matching message arrives or
`suspendTimeoutMillis` passes; it never blocks other requests on its connection. Every answer
carries nextBeginOffset, minOffset, maxOffset and suggestWhichBrokerId (ali-ons needs all four).

suggestWhichBrokerId is computed as RocketMQ 5.x does. A pull is "far behind" when more of the
CommitLog lies past it than `accessMessageInMemoryMaxRatio` % of the machine's RAM: reading on
would come from disk rather than the page cache. With `slaveReadEnable`, such a pull is sent to
the group's `whichBrokerWhenConsumeSlowly` (1), any other to the group's `brokerId` (0); without
it, always to the master. A slave whose master is alive sends every pull that is not far behind
back to the master, answering PULL_RETRY_IMMEDIATELY when it found nothing; with its master gone
it serves pulls itself. A slave never moves a consumer's offset (RocketMQ's `offsetCheckInSlave`
off): where a master would correct it, it answers the offset asked for and PULL_RETRY_IMMEDIATELY
instead of PULL_OFFSET_MOVED, and it ignores the offset a pull carries to commit.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rmqkit.common.group import SubscriptionGroupConfig
from rmqkit.common.sql92 import SqlParseError
from rmqkit.common.subscription import EXPRESSION_SQL92, EXPRESSION_TAG, SubscriptionData
from rmqkit.common.topic import perm_readable
from rmqkit.protocol.codes import PULL_COMMIT_OFFSET, PULL_SUBSCRIPTION, PULL_SUSPEND, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.remoting.connection import Connection, HandlerResult
from rmqkit.server.broker.headers import Header, HeaderProblem
from rmqkit.server.store import GetResult, GetStatus, MessageFilter, TagFilter
from rmqkit.server.store.sql_filter import SqlFilter, sql_filter_for

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker

_PULL_CODES = {
    GetStatus.FOUND: ResponseCode.SUCCESS,
    GetStatus.NO_MATCHED_MESSAGE: ResponseCode.PULL_RETRY_IMMEDIATELY,
    GetStatus.MESSAGE_WAS_REMOVING: ResponseCode.PULL_RETRY_IMMEDIATELY,
    GetStatus.OFFSET_FOUND_NULL: ResponseCode.PULL_NOT_FOUND,
    GetStatus.OFFSET_OVERFLOW_ONE: ResponseCode.PULL_NOT_FOUND,
    GetStatus.OFFSET_OVERFLOW_BADLY: ResponseCode.PULL_OFFSET_MOVED,
    GetStatus.OFFSET_TOO_SMALL: ResponseCode.PULL_OFFSET_MOVED,
}
_CORRECTED = frozenset({
    GetStatus.NO_MATCHED_LOGIC_QUEUE, GetStatus.NO_MESSAGE_IN_QUEUE, GetStatus.OFFSET_TOO_SMALL,
    GetStatus.OFFSET_OVERFLOW_ONE, GetStatus.OFFSET_OVERFLOW_BADLY,
})  # fmt: skip
"""Statuses whose nextBeginOffset is the store's correction of the offset asked for."""
_SCANNED = frozenset({
    GetStatus.FOUND, GetStatus.NO_MATCHED_MESSAGE, GetStatus.MESSAGE_WAS_REMOVING,
    GetStatus.OFFSET_FOUND_NULL,
})  # fmt: skip
"""Statuses after which the store has walked ConsumeQueue entries up to nextBeginOffset."""

MASTER_ID = 0
_DEFAULT_GROUP = SubscriptionGroupConfig("")
"""The settings of a group that has none stored (brokerId 0, whichBrokerWhenConsumeSlowly 1)."""
DEFAULT_MEMORY_BYTES = 24 * 1024**3
"""What RocketMQ's `StoreUtil` assumes when the OS does not tell the machine's RAM."""


def physical_memory_bytes() -> int:
    """The machine's RAM (RocketMQ `StoreUtil.TOTAL_PHYSICAL_MEMORY_SIZE`)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return DEFAULT_MEMORY_BYTES


PHYSICAL_MEMORY_BYTES = physical_memory_bytes()
"""Read once at import, as RocketMQ reads it once."""


def is_far_behind(
    max_physical_offset: int, pulled_end: int | None, ratio_percent: int, memory_bytes: int
) -> bool:
    """RocketMQ's `suggestPullingFromSlave`: more than `ratio_percent` % of `memory_bytes` of
    CommitLog lies past `pulled_end` (the end of the last entry the pull read; None: it read
    none, and is not far behind)."""
    if pulled_end is None:
        return False
    return max_physical_offset - pulled_end > memory_bytes * ratio_percent // 100


@dataclass(frozen=True, slots=True)
class Suggestion:
    """suggestWhichBrokerId, and whether a slave sends the pull back to its master."""

    broker_id: int
    to_master: bool = False
    """RocketMQ's "slave redirect pullRequest to master": a pull that found nothing is answered
    PULL_RETRY_IMMEDIATELY, so the consumer asks the master at once."""


def suggest_broker(
    group: SubscriptionGroupConfig,
    *,
    is_master: bool,
    slave_read_enable: bool,
    master_alive: bool,
    far_behind: bool,
) -> Suggestion:
    """Which broker of the broker name the consumer should pull this queue from next."""
    if not slave_read_enable:
        broker_id = MASTER_ID
    elif far_behind:
        broker_id = group.which_broker_when_consume_slowly
    else:
        broker_id = group.broker_id
    if not is_master and master_alive and not far_behind:
        return Suggestion(MASTER_ID, to_master=True)
    return Suggestion(broker_id)


class PullRequest:
    __slots__ = (
        "commit_offset",
        "group",
        "group_config",
        "max_nums",
        "offset",
        "queue_id",
        "sql",
        "subscription",
        "suspend_ms",
        "sys_flag",
        "topic",
    )

    def __init__(self, h: Header) -> None:
        self.group = h.text("consumerGroup")
        self.topic = h.text("topic")
        self.queue_id = h.integer("queueId", 32)
        self.offset = h.integer("queueOffset")
        self.max_nums = h.integer("maxMsgNums", 32)
        self.sys_flag = h.integer("sysFlag", 32)
        self.suspend_ms = h.opt_int("suspendTimeoutMillis", 0)
        self.commit_offset = h.opt_int("commitOffset", -1)
        self.group_config: SubscriptionGroupConfig | None = None
        """The group's stored settings, once the checks have found them."""
        self.subscription: SubscriptionData | None = None
        self.sql: SqlFilter | None = None
        if self.sys_flag & PULL_SUBSCRIPTION:
            self.subscription = SubscriptionData.build(
                self.topic,
                h.opt_text("subscription"),
                h.opt_text("expressionType") or EXPRESSION_TAG,
            )


class PullProcessor:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def __call__(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        try:
            req = PullRequest(Header(cmd.ext_fields))
        except HeaderProblem as exc:
            return cmd.response(ResponseCode.SYSTEM_ERROR, str(exc))
        refusal = self._check(cmd, req)
        if refusal is not None:
            return refusal
        # Not on a slave (RocketMQ 4.x's check; clients clear the flag for slaves anyway): the
        # offset a consumer commits there goes by UPDATE_CONSUMER_OFFSET.
        if req.sys_flag & PULL_COMMIT_OFFSET and self.broker.settings.is_master:
            self.broker.offsets.commit(req.group, req.topic, req.queue_id, req.commit_offset)
        result = self._read(req)
        response = self._respond(cmd, req, result)
        s = self.broker.settings
        if (
            response.code == ResponseCode.PULL_NOT_FOUND
            and req.sys_flag & PULL_SUSPEND
            and s.long_polling_enable
            and req.suspend_ms > 0
        ):
            timeout_s = min(req.suspend_ms, s.max_suspend_ms) / 1000
            # The hold is registered now, in the same loop turn as the read that found nothing:
            # a message dispatched before the returned coroutine first runs must still wake it.
            return self._held(cmd, req, time.monotonic() + timeout_s, self._hold(req, timeout_s))
        return response

    def _hold(self, req: PullRequest, timeout_s: float) -> asyncio.Future[bool]:
        codes = req.subscription.codes if req.subscription else None
        return self.broker.pull_holds.hold(req.topic, req.queue_id, req.offset, codes, timeout_s)

    async def _held(
        self, cmd: RemotingCommand, req: PullRequest, deadline: float, hold: asyncio.Future[bool]
    ) -> RemotingCommand:
        while True:
            woke = await hold
            response = self._respond(cmd, req, self._read(req))
            left = deadline - time.monotonic()
            done = response.code != ResponseCode.PULL_NOT_FOUND or not woke
            if done or not self.broker.running or left <= 0:
                return response
            hold = self._hold(req, left)  # again right after the read, with no await between

    def _check(self, cmd: RemotingCommand, req: PullRequest) -> RemotingCommand | None:
        b = self.broker
        if not perm_readable(b.settings.broker_permission):
            return cmd.response(
                ResponseCode.NO_PERMISSION,
                f"the broker[{b.settings.broker_addr}] pulling message is forbidden",
            )
        group = b.groups.find(req.group)
        if group is None:
            return cmd.response(
                ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST,
                f"subscription group [{req.group}] does not exist",
            )
        if not group.consume_enable:
            return cmd.response(ResponseCode.NO_PERMISSION, f"subscription group [{req.group}] "
                                "is not allowed to consume")  # fmt: skip
        req.group_config = group
        cfg = b.topics.get(req.topic)
        if cfg is None:
            return cmd.response(
                ResponseCode.TOPIC_NOT_EXIST, f"topic[{req.topic}] not exist, apply first please!"
            )
        if not perm_readable(cfg.perm):
            return cmd.response(ResponseCode.NO_PERMISSION, f"the topic[{req.topic}] pulling "
                                "message is forbidden")  # fmt: skip
        if req.queue_id < 0 or req.queue_id >= cfg.read_queue_nums:
            return cmd.response(
                ResponseCode.SYSTEM_ERROR,
                f"queueId[{req.queue_id}] is illegal, topic:[{req.topic}] topicConfig."
                f"readQueueNums:[{cfg.read_queue_nums}]",
            )
        if req.subscription is None:
            info = b.clients.consumers.get(req.group)
            sub = info.subscriptions.get(req.topic) if info else None
            if sub is None:
                return cmd.response(
                    ResponseCode.SUBSCRIPTION_NOT_EXIST,
                    f"the consumer's subscription of {req.topic} does not exist; heartbeat first",
                )
            req.subscription = sub
        etype = req.subscription.expression_type
        if etype == EXPRESSION_SQL92:
            if not b.settings.enable_property_filter:
                return cmd.response(
                    ResponseCode.SYSTEM_ERROR,
                    "the broker does not support consumer to filter message by SQL92 "
                    "(enablePropertyFilter is false)",
                )
            try:
                req.sql = sql_filter_for(req.subscription.sub_string)
            except SqlParseError as exc:
                return cmd.response(
                    ResponseCode.SUBSCRIPTION_PARSE_FAILED,
                    f"the SQL92 expression {req.subscription.sub_string!r} does not parse: {exc}",
                )
        elif etype != EXPRESSION_TAG:
            return cmd.response(
                ResponseCode.SUBSCRIPTION_PARSE_FAILED, f"unknown expression type {etype!r}"
            )
        return None

    def _read(self, req: PullRequest) -> GetResult:
        codes = req.subscription.codes if req.subscription else None
        flt: MessageFilter | None = req.sql or (TagFilter(codes) if codes is not None else None)
        return self.broker.store.get_message(req.topic, req.queue_id, req.offset, req.max_nums, flt)

    def _respond(self, cmd: RemotingCommand, req: PullRequest, r: GetResult) -> RemotingCommand:
        if r.status in (GetStatus.NO_MATCHED_LOGIC_QUEUE, GetStatus.NO_MESSAGE_IN_QUEUE):
            code = (
                ResponseCode.PULL_OFFSET_MOVED if req.offset != 0 else ResponseCode.PULL_NOT_FOUND
            )
        else:
            code = _PULL_CODES[r.status]
        next_begin, broker_id = r.next_begin_offset, MASTER_ID
        s = self.broker.settings
        if s.slave_read_enable or not s.is_master:  # else the master: no ConsumeQueue lookup
            code, next_begin, broker_id = self._suggest(req, r, code)
        ext = {
            "nextBeginOffset": str(next_begin),
            "minOffset": str(r.min_offset),
            "maxOffset": str(r.max_offset),
            "suggestWhichBrokerId": str(broker_id),
        }
        if code == ResponseCode.SUCCESS:
            self.broker.stats.get(r.message_count)
            return cmd.response(code, None, ext, r.body())
        return cmd.response(code, r.status.name, ext)

    def _suggest(
        self, req: PullRequest, r: GetResult, code: ResponseCode
    ) -> tuple[ResponseCode, int, int]:
        """(response code, nextBeginOffset, suggestWhichBrokerId) with slave reads in play."""
        b = self.broker
        s = b.settings
        far = is_far_behind(
            b.store.max_physical_offset, self._pulled_end(req, r),
            s.store.access_message_in_memory_max_ratio, PHYSICAL_MEMORY_BYTES,
        )  # fmt: skip
        group = req.group_config or _DEFAULT_GROUP
        suggestion = suggest_broker(
            group, is_master=s.is_master, slave_read_enable=s.slave_read_enable,
            master_alive=b.master_alive, far_behind=far,
        )  # fmt: skip
        if s.is_master:
            return code, r.next_begin_offset, suggestion.broker_id
        # A slave's view may lag its master's: it leaves offsets as they are (RocketMQ's
        # nextOffsetCorrection with offsetCheckInSlave off) and never answers PULL_OFFSET_MOVED.
        next_begin = req.offset if r.status in _CORRECTED else r.next_begin_offset
        if suggestion.to_master and r.status is not GetStatus.FOUND:
            return ResponseCode.PULL_RETRY_IMMEDIATELY, next_begin, MASTER_ID
        if code == ResponseCode.PULL_OFFSET_MOVED:
            return ResponseCode.PULL_RETRY_IMMEDIATELY, next_begin, group.broker_id
        return code, next_begin, suggestion.broker_id

    def _pulled_end(self, req: PullRequest, r: GetResult) -> int | None:
        """The CommitLog offset just past the last ConsumeQueue entry this read walked."""
        if r.status not in _SCANNED or r.next_begin_offset <= req.offset:
            return None
        cq = self.broker.store.find_consume_queue(req.topic, req.queue_id)
        entry = cq.entry(r.next_begin_offset - 1) if cq is not None else None
        return None if entry is None else entry[0] + entry[1]
