"""PULL_MESSAGE and LITE_PULL_MESSAGE, with long polling (RocketMQ `PullMessageProcessor`).

A pull reads up to `maxMsgNums` records of one queue from `queueOffset`, filtered by the
subscription's tag codes, and answers with the records as they are stored. A pull that finds
nothing is held (when the client allows suspension) until a matching message arrives or
`suspendTimeoutMillis` passes; it never blocks other requests on its connection. Every answer
carries nextBeginOffset, minOffset, maxOffset and suggestWhichBrokerId (ali-ons needs all four).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from rmqkit.common.sql92 import SqlParseError
from rmqkit.common.subscription import EXPRESSION_SQL92, EXPRESSION_TAG, SubscriptionData
from rmqkit.common.topic import perm_readable
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.remoting.connection import Connection, HandlerResult
from rmqkit.server.broker.headers import Header, HeaderProblem
from rmqkit.server.store import GetResult, GetStatus, MessageFilter, TagFilter
from rmqkit.server.store.sql_filter import SqlFilter, sql_filter_for

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker

FLAG_COMMIT_OFFSET = 0x1
FLAG_SUSPEND = 0x2
FLAG_SUBSCRIPTION = 0x4

_PULL_CODES = {
    GetStatus.FOUND: ResponseCode.SUCCESS,
    GetStatus.NO_MATCHED_MESSAGE: ResponseCode.PULL_RETRY_IMMEDIATELY,
    GetStatus.MESSAGE_WAS_REMOVING: ResponseCode.PULL_RETRY_IMMEDIATELY,
    GetStatus.OFFSET_FOUND_NULL: ResponseCode.PULL_NOT_FOUND,
    GetStatus.OFFSET_OVERFLOW_ONE: ResponseCode.PULL_NOT_FOUND,
    GetStatus.OFFSET_OVERFLOW_BADLY: ResponseCode.PULL_OFFSET_MOVED,
    GetStatus.OFFSET_TOO_SMALL: ResponseCode.PULL_OFFSET_MOVED,
}


class PullRequest:
    __slots__ = (
        "group",
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
        self.queue_id = h.integer("queueId")
        self.offset = h.integer("queueOffset")
        self.max_nums = h.integer("maxMsgNums")
        self.sys_flag = h.integer("sysFlag")
        self.suspend_ms = h.opt_int("suspendTimeoutMillis", 0)
        self.subscription: SubscriptionData | None = None
        self.sql: SqlFilter | None = None
        if self.sys_flag & FLAG_SUBSCRIPTION:
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
        commit = int(cmd.ext_fields.get("commitOffset", "-1") or -1)
        if req.sys_flag & FLAG_COMMIT_OFFSET and self.broker.settings.is_master:
            self.broker.offsets.commit(req.group, req.topic, req.queue_id, commit)
        result = self._read(req)
        response = self._respond(cmd, req, result)
        s = self.broker.settings
        if (
            response.code == ResponseCode.PULL_NOT_FOUND
            and req.sys_flag & FLAG_SUSPEND
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
        ext = {
            "nextBeginOffset": str(r.next_begin_offset),
            "minOffset": str(r.min_offset),
            "maxOffset": str(r.max_offset),
            "suggestWhichBrokerId": "0",
        }
        if code == ResponseCode.SUCCESS:
            self.broker.stats.get(r.message_count)
            return cmd.response(code, None, ext, r.body())
        return cmd.response(code, r.status.name, ext)
