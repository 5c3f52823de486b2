"""Rebalancing, shared by the push and the lite pull consumer (RocketMQ `RebalanceImpl`).

`allocate_topic` works out which of a topic's readable queues are this client's: all of them when
broadcasting, else the share the allocation strategy gives it among the group's live members.
`RebalanceLoop` runs a consumer's rebalance every `interval_s`, at once when the broker announces
that the group changed, and sooner while a topic has no route yet. `start_offset` is where a queue
with no committed offset starts (`computePullFromWhere`). Also what both consumers pull with:
`pull_command`, `found_messages` and `PullNodes`, which member of a broker each queue is pulled
from (`PullAPIWrapper`'s pullFromWhichNodeTable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import orjson

from rmqkit.client.allocate import Allocate
from rmqkit.client.instance import ClientInstance, FoundBroker
from rmqkit.client.message import MessageQueue
from rmqkit.client.offset_store import OffsetStore
from rmqkit.common.names import RETRY_GROUP_TOPIC_PREFIX
from rmqkit.common.subscription import SubscriptionData
from rmqkit.common.topic import perm_readable
from rmqkit.errors import BrokerResponseError, CorruptRecordError, RemotingError
from rmqkit.protocol.codes import (
    PULL_COMMIT_OFFSET,
    PULL_SUBSCRIPTION,
    PULL_SUSPEND,
    RequestCode,
    ResponseCode,
)
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.heartbeat import ConsumerEntry, SubscriptionEntry
from rmqkit.protocol.record import StoredMessage, decode_records
from rmqkit.protocol.route import MASTER_ID, BrokerId

log = logging.getLogger("rmqkit.consumer.rebalance")

MessageModel = Literal["CLUSTERING", "BROADCASTING"]
ConsumeFrom = Literal[
    "CONSUME_FROM_LAST_OFFSET", "CONSUME_FROM_FIRST_OFFSET", "CONSUME_FROM_TIMESTAMP"
]
DEFAULT_CONSUME_TIMESTAMP_AGO_MS = 30 * 60_000
"""CONSUME_FROM_TIMESTAMP without a timestamp starts half an hour back, as RocketMQ does."""



def default_consume_timestamp_ms() -> int:
    return int(time.time() * 1000) - DEFAULT_CONSUME_TIMESTAMP_AGO_MS


async def readable_queues(instance: ClientInstance, topic: str) -> list[MessageQueue] | None:
    """The topic's readable queues from a fresh route; None while no NameServer knows it.

    Raises:
        RemotingError, BrokerResponseError: no NameServer answered properly.
    """
    route = await instance.route(topic, refresh=True)
    if route is None:
        return None
    return [
        MessageQueue(topic, qd.broker_name, i)
        for qd in route.queue_datas if perm_readable(qd.perm)
        for i in range(qd.read_queue_nums)
    ]  # fmt: skip


def topic_broker_addrs(instance: ClientInstance, topic: str) -> list[str]:
    """A member of each broker of `topic`, masters first, then brokers whose master is down
    (their lowest slave): whom to ask about the group (RocketMQ `findBrokerAddrByTopic` picks
    one broker at random, its master or else a slave)."""
    route = instance.routes.get(topic)
    names = [bd.broker_name for bd in route.broker_datas] if route else []
    found = [f for n in names if (f := instance.find_broker_addr(n)) is not None]
    return [f.addr for f in sorted(found, key=lambda f: f.is_slave)]


async def consumer_ids(instance: ClientInstance, group: str, topic: str) -> list[str]:
    """The group's live members as a broker of the topic knows them ([] when unknown): a master
    if one answers, else a slave (consumers heartbeat slaves too)."""
    for addr in topic_broker_addrs(instance, topic):
        cmd = RemotingCommand(
            RequestCode.GET_CONSUMER_LIST_BY_GROUP, ext_fields={"consumerGroup": group}
        )
        try:
            resp = await instance.invoke(addr, cmd)
        except RemotingError as exc:
            log.warning("consumer list of %s from %s failed: %s", group, addr, exc)
            instance.refresh_route_soon(topic)
            continue
        if resp.code == ResponseCode.SUCCESS:
            return [str(c) for c in orjson.loads(resp.body).get("consumerIdList", [])]
    return []


async def allocate_topic(
    instance: ClientInstance, group: str, topic: str, model: MessageModel, allocate: Allocate
) -> set[MessageQueue] | None:
    """This client's queues of `topic`; None when that cannot be known yet (no route, or the
    broker does not list this group's members yet)."""
    try:
        mqs = await readable_queues(instance, topic)
    except (RemotingError, BrokerResponseError) as exc:
        log.debug("no route for %s yet: %s", topic, exc)
        return None
    if mqs is None:
        return None
    if model == "BROADCASTING":
        return set(mqs)
    cids = await consumer_ids(instance, group, topic)
    if not cids:
        return None
    return set(allocate(instance.client_id, mqs, cids))


class RebalanceLoop:
    """Calls `rebalance()` every `interval_s`, at once after `now()`, and, while it returns
    False (a topic not resolved yet), again after 1 s, 2 s, 4 s ... up to the interval, so a
    consumer started before the first message does not wait a whole interval."""

    def __init__(self, name: str, interval_s: float, rebalance: Callable[[], Awaitable[bool]]):
        self.name = name
        self.interval_s = interval_s
        self.rebalance = rebalance
        self._now = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._task is not None

    def now(self) -> None:
        """Rebalance at once (the broker said the group changed)."""
        self._now.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # The flag and the wake-up end the loop even if the cancellation is lost: Python
            # 3.11's wait_for drops a cancel that lands as the awaited call completes.
            self._stopping = True
            self._now.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        retry_s = 1.0
        self._stopping = False
        while not self._stopping:
            complete = False
            try:
                complete = await self.rebalance()
            except Exception:
                log.exception("rebalance of %s failed; retrying", self.name)
            wait_s = self.interval_s if complete else retry_s
            retry_s = 1.0 if complete else min(retry_s * 2, self.interval_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._now.wait()
            self._now.clear()


async def broker_offset(instance: ClientInstance, mq: MessageQueue, code: int, **ext: int) -> int:
    """GET_MAX_OFFSET, GET_MIN_OFFSET or SEARCH_OFFSET_BY_TIMESTAMP on the queue's master, or
    on a slave while the master is down (RocketMQ's MQAdminImpl asks the master only, so a
    queue with no committed offset could not start during a master outage); -1 when its
    broker is unknown or refuses.

    Raises:
        RemotingError: the broker did not answer (a route refresh is asked for).
    """
    found = instance.find_broker_addr(mq.broker_name, MASTER_ID)
    if found is None:
        instance.refresh_route_soon(mq.topic)
        return -1
    fields = {"topic": mq.topic, "queueId": str(mq.queue_id), **{k: str(v) for k, v in ext.items()}}
    try:
        resp = await instance.invoke(found.addr, RemotingCommand(code, ext_fields=fields))
    except RemotingError:
        instance.refresh_route_soon(mq.topic)
        raise
    return int(resp.ext_fields.get("offset", "-1")) if resp.code == ResponseCode.SUCCESS else -1


async def start_offset(
    instance: ClientInstance,
    offsets: OffsetStore,
    mq: MessageQueue,
    consume_from_where: ConsumeFrom,
    consume_timestamp_ms: int,
) -> int:
    """The committed offset, else where `consume_from_where` says; -1 when it cannot be found
    now (the caller tries again at the next rebalance)."""
    try:
        off = await offsets.read(mq)
        if off >= 0:
            return off
        if consume_from_where == "CONSUME_FROM_FIRST_OFFSET":
            return 0
        is_retry = mq.topic.startswith(RETRY_GROUP_TOPIC_PREFIX)
        if consume_from_where == "CONSUME_FROM_TIMESTAMP" and not is_retry:
            return await broker_offset(
                instance, mq, RequestCode.SEARCH_OFFSET_BY_TIMESTAMP, timestamp=consume_timestamp_ms
            )
        return 0 if is_retry else await broker_offset(instance, mq, RequestCode.GET_MAX_OFFSET)
    except (RemotingError, BrokerResponseError) as exc:
        log.warning("no start offset for %s yet: %s", mq, exc)
        return -1


def consumer_entry(
    group: str,
    consume_type: str,
    model: MessageModel,
    consume_from_where: ConsumeFrom,
    subscriptions: list[SubscriptionData],
) -> ConsumerEntry:
    """What a heartbeat says about one consumer group of this client."""
    return ConsumerEntry(
        group, consume_type, model, consume_from_where,
        [
            SubscriptionEntry(s.topic, s.sub_string, s.expression_type, s.sub_version,
                              sorted(s.tags or ()), sorted(s.codes or ()))
            for s in subscriptions
        ],
    )  # fmt: skip


async def unregister(instance: ClientInstance, group: str) -> None:
    """UNREGISTER_CLIENT for a consumer group on every known broker (best effort)."""
    ext = {"clientID": instance.client_id, "consumerGroup": group}
    for addrs in instance.broker_addrs().values():
        for addr in addrs.values():
            cmd = RemotingCommand(RequestCode.UNREGISTER_CLIENT, ext_fields=dict(ext))
            with contextlib.suppress(RemotingError):
                await instance.invoke(addr, cmd, 1_000)


def pull_command(
    group: str,
    mq: MessageQueue,
    offset: int,
    max_msgs: int,
    sub: SubscriptionData,
    commit_offset: int,
    suspend_ms: int,
    *,
    from_slave: bool = False,
) -> RemotingCommand:
    """PULL_MESSAGE that the broker may hold up to `suspend_ms` (long polling); it commits
    `commit_offset` on the way when that is > 0, unless the pull goes to a slave: RocketMQ
    clears the commit bit then, as offsets are committed on the master."""
    sys_flag = PULL_SUSPEND | PULL_SUBSCRIPTION
    if commit_offset > 0:
        sys_flag |= PULL_COMMIT_OFFSET
    if from_slave:
        sys_flag &= ~PULL_COMMIT_OFFSET
    return RemotingCommand(RequestCode.PULL_MESSAGE, ext_fields={
        "consumerGroup": group, "topic": mq.topic, "queueId": str(mq.queue_id),
        "queueOffset": str(offset), "maxMsgNums": str(max_msgs), "sysFlag": str(sys_flag),
        "commitOffset": str(max(commit_offset, 0)), "suspendTimeoutMillis": str(suspend_ms),
        "subscription": sub.sub_string, "subVersion": str(sub.sub_version),
        "expressionType": sub.expression_type,
    })  # fmt: skip


def found_messages(
    body: bytes | memoryview, mq: MessageQueue, sub: SubscriptionData
) -> list[StoredMessage]:
    """The messages of a FOUND pull answer that the subscription takes (the broker filters by
    tag hash code, which can collide: the tag itself is checked here). A corrupt record is
    logged and the answer skipped."""
    try:
        found = decode_records(body)
    except CorruptRecordError as exc:
        log.error("pull of %s returned a corrupt record (%s); skipping it", mq, exc)
        return []
    return found if sub.tags is None else [m for m in found if sub.matches_tag(m.tags)]


class PullBuilder(Protocol):
    """Makes a PULL_MESSAGE once the member it goes to is known."""

    def __call__(self, *, from_slave: bool) -> RemotingCommand: ...


class PullNodes:
    """Which member of its broker each queue is pulled from (RocketMQ `PullAPIWrapper`'s
    pullFromWhichNodeTable): every pull answer carries the broker's `suggestWhichBrokerId`,
    the next pull of that queue goes there, and to another member of the broker when that one
    is not in the route (a master that is down: its slave; a slave that is gone: the master).
    """

    def __init__(self, instance: ClientInstance) -> None:
        self.instance = instance
        self.suggested: dict[MessageQueue, BrokerId] = {}

    def target(self, mq: MessageQueue) -> FoundBroker | None:
        """Where to pull `mq` now; None while no route lists its broker."""
        return self.instance.find_broker_addr(
            mq.broker_name, self.suggested.get(mq, MASTER_ID), only_this=False
        )

    async def pull(
        self, mq: MessageQueue, offset: int, build: PullBuilder, timeout_ms: int,
    ) -> tuple[RemotingCommand, bool] | None:  # fmt: skip
        """One pull of `mq` at `offset` from the member to pull it from now.

        Args:
            mq: the queue.
            offset: the offset the command pulls at.
            build: makes the PULL_MESSAGE, told whether it goes to a slave (`pull_command`
                with all but `from_slave` bound).
            timeout_ms: how long to wait for the answer (the broker may hold it).

        Returns:
            The answer and whether pulling again at once would spin (see `follow`); None when
            no member is known or the call failed: a route refresh is asked for, and the
            caller backs off.
        """
        node = self.target(mq)
        if node is None:
            self.instance.refresh_route_soon(mq.topic)
            return None
        cmd = build(from_slave=node.is_slave)
        try:
            resp = await self.instance.invoke(node.addr, cmd, timeout_ms)
        except RemotingError as exc:
            log.warning("pull of %s from %s failed: %s", mq, node.addr, exc)
            self.instance.refresh_route_soon(mq.topic)
            return None
        return resp, self.follow(mq, resp, offset, node)

    def follow(
        self, mq: MessageQueue, resp: RemotingCommand, offset: int, pulled: FoundBroker
    ) -> bool:
        """Take the answer's suggestion for the next pull of `mq`.

        Args:
            mq: the queue pulled.
            resp: the broker's answer.
            offset: the offset pulled at.
            pulled: the member that answered.

        Returns:
            True when pulling again at once would spin: the answer is PULL_RETRY_IMMEDIATELY,
            the offset did not move, and the next pull would go to the member that just gave
            it (say a slave that knows its master is up, while the route here still lacks the
            master). The caller should wait a moment. A PULL_RETRY_IMMEDIATELY that names a
            member the route lacks also asks for a route refresh.
        """
        try:
            suggested = int(resp.ext_fields.get("suggestWhichBrokerId", MASTER_ID))
        except ValueError:
            suggested = MASTER_ID
        self.suggested[mq] = suggested
        if resp.code != ResponseCode.PULL_RETRY_IMMEDIATELY:
            return False
        if self.instance.find_broker_addr(mq.broker_name, suggested, only_this=True) is None:
            self.instance.refresh_route_soon(mq.topic)  # the broker knows a member we do not
        if int(resp.ext_fields.get("nextBeginOffset", offset)) != offset:
            return False
        nxt = self.target(mq)
        return nxt is not None and nxt.addr == pulled.addr
