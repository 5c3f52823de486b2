"""ClientInstance: what every producer and consumer of a process shares (RocketMQ
`MQClientInstance`): connections, the route cache, NameServer failover and the heartbeat loop.

One instance per (NameServer list, instance name), however many producers and consumers use it.
`find_broker_addr` picks the member of a broker name (master id 0, slaves 1, 2, ...) a request
goes to, falling back to another member when the one asked for is gone
(`findBrokerAddressInSubscribe`), so consumers keep reading from slaves while a master is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from rmqkit.client.namespace import unwrap, wrap
from rmqkit.client.request import RequestRegistry
from rmqkit.client.uniq_id import local_ip
from rmqkit.common.java_values import parse_bool
from rmqkit.common.properties import Prop
from rmqkit.common.types import BrokerAddr, BrokerName, TopicName
from rmqkit.errors import BrokerResponseError, CorruptRecordError, RemotingError, error_for_code
from rmqkit.protocol.acl import SessionCredentials
from rmqkit.protocol.admin_bodies import decode_mq_table_json
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.heartbeat import ConsumerEntry, HeartbeatData
from rmqkit.protocol.record import StoredMessage, decode_record
from rmqkit.protocol.route import MASTER_ID, BrokerId, TopicRouteData, decode_topic_route
from rmqkit.remoting.client import RemotingClient
from rmqkit.remoting.connection import Connection, HandlerResult
from rmqkit.remoting.tls import ClientTls

log = logging.getLogger("rmqkit.client")

ServerRequestHandler = Callable[[Connection, RemotingCommand], HandlerResult]


class FoundBroker(NamedTuple):
    """The member of a broker name a request goes to (RocketMQ `FindBrokerResult`)."""

    addr: BrokerAddr
    is_slave: bool
    broker_id: BrokerId


InstanceKey = tuple[str, str, SessionCredentials | None, ClientTls | None]
"""NameServers, instance name, credentials, TLS: what makes two clients share an instance."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Settings shared by the producers and consumers of one instance."""

    namesrv_addr: str
    instance_name: str = "DEFAULT"
    request_timeout_ms: int = 3_000
    poll_name_server_interval_ms: int = 30_000
    heartbeat_broker_interval_ms: int = 30_000
    namespace: str = ""
    """Topics and groups are `<namespace>%<name>` on the cluster (see `rmqkit.client.namespace`);
    one process may use several namespaces on one shared instance."""
    credentials: SessionCredentials | None = None
    """ACL access key and secret: every request is signed with them (RocketMQ's
    `AclClientRPCHook`). None: requests go unsigned, as to a broker without `aclEnable`."""
    tls: ClientTls | None = None
    """Connect to NameServers and brokers over TLS (RocketMQ's `useTLS`); None: plain."""
    route_refresh_on_error_min_interval_ms: int = 2_000
    """A failed broker call refreshes the topic's route at once (see `refresh_route_soon`), at
    most this often per topic, instead of waiting up to `poll_name_server_interval_ms`."""

    @property
    def namesrv_addrs(self) -> list[str]:
        return [a.strip() for a in self.namesrv_addr.split(";") if a.strip()]

    @property
    def instance_key(self) -> InstanceKey:
        """Clients with equal keys share one `ClientInstance` (its connections sign with one
        set of credentials and use one TLS setting, so different ones never share one)."""
        return (self.namesrv_addr, self.instance_name, self.credentials, self.tls)

    def with_namespace(self, resource: str) -> str:
        """`resource` as the cluster knows it (`ns%resource`)."""
        return wrap(self.namespace, resource)

    def without_namespace(self, resource: str) -> str:
        """`resource` as the user knows it: this config's namespace taken off."""
        return unwrap(resource, self.namespace)


class ClientInstance:
    """Connections, routes and heartbeats for every producer and consumer of a process."""

    _shared: ClassVar[dict[InstanceKey, ClientInstance]] = {}

    def __init__(self, config: ClientConfig) -> None:
        if not config.namesrv_addrs:
            from rmqkit.errors import ConfigurationError

            raise ConfigurationError("namesrv_addr is empty; give 'host:port[;host:port...]'")
        self.config = config
        self.client_id = f"{local_ip()}@{config.instance_name}@{os.getpid()}"
        creds = config.credentials
        self.remoting = RemotingClient(
            handler=self._on_server_request,
            before_request=creds.sign if creds is not None else None,
            tls=config.tls,
        )
        self.routes: dict[TopicName, TopicRouteData] = {}
        """Topic -> its route, oldest fetch first (a refetched route moves to the end)."""
        self._broker_table: dict[BrokerName, dict[BrokerId, BrokerAddr]] = {}
        """Broker name -> members, as the newest route naming that broker lists them."""
        self._refreshed_at: dict[TopicName, float] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()
        self.server_handlers: dict[int, ServerRequestHandler] = {}
        self.producer_groups: set[str] = set()
        self.consumer_entries: dict[str, Callable[[], ConsumerEntry]] = {}
        self.rebalance_hooks: dict[str, Callable[[], None]] = {}
        self.transaction_checkers: dict[
            str, Callable[[Connection, RemotingCommand, StoredMessage], Awaitable[None]]
        ] = {}
        """Producer group -> its TransactionProducer's answer to CHECK_TRANSACTION_STATE."""
        """Consumer group -> what to call when the broker says the group changed."""
        self.server_handlers[RequestCode.NOTIFY_CONSUMER_IDS_CHANGED] = self._ids_changed
        self.reset_hooks: dict[str, Callable[[dict[tuple[str, str, int], int]], None]] = {}
        """Consumer group -> what to call when an admin resets its offsets."""
        self.server_handlers[RequestCode.RESET_CONSUMER_CLIENT_OFFSET] = self._reset_offsets
        self.running_info_hooks: dict[str, Callable[[bool], bytes]] = {}
        """Consumer group -> its answer to GET_CONSUMER_RUNNING_INFO (with stacks or not)."""
        self.server_handlers[RequestCode.GET_CONSUMER_RUNNING_INFO] = self._running_info
        self.direct_consume_hooks: dict[str, Callable[[RemotingCommand], Awaitable[bytes]]] = {}
        """Consumer group -> its answer to CONSUME_MESSAGE_DIRECTLY (a push consumer's)."""
        self.server_handlers[RequestCode.CONSUME_MESSAGE_DIRECTLY] = self._consume_directly
        self.requests = RequestRegistry()
        """Requests (request-reply) waiting for the reply the broker pushes to this client."""
        self.server_handlers[RequestCode.PUSH_REPLY_MESSAGE_TO_CLIENT] = self.requests.on_push_reply
        self._namesrv_index = 0
        self._greeted: set[str] = set()
        self._conns: dict[str, Connection] = {}
        self._users = 0
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def shared(cls, config: ClientConfig) -> ClientInstance:
        """The process-wide instance for these NameServers, instance name and credentials."""
        key = config.instance_key
        inst = cls._shared.get(key)
        if inst is None:
            inst = cls._shared[key] = cls(config)
        return inst

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Counted: the first user starts the loops, later ones share them."""
        self._users += 1
        if self._users == 1:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._every(self.config.poll_name_server_interval_ms,
                                             self.refresh_routes)),
                loop.create_task(self._every(self.config.heartbeat_broker_interval_ms,
                                             self.heartbeat_all)),
            ]  # fmt: skip

    async def stop(self) -> None:
        self._users -= 1
        if self._users > 0:
            return
        tasks = [*self._tasks, *self._side_tasks]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        self._side_tasks.clear()
        await self.remoting.close()
        self._conns.clear()
        if self._shared.get(self.config.instance_key) is self:
            del self._shared[self.config.instance_key]

    async def _every(self, interval_ms: int, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(interval_ms / 1000)
            try:
                await job()
            except Exception:
                log.exception("client background job failed; continuing")

    # -- calls ------------------------------------------------------------------------------------

    async def invoke(
        self, addr: str, cmd: RemotingCommand, timeout_ms: int | None = None
    ) -> RemotingCommand:
        # The open connection straight from a dict: the send hot path skips two coroutine
        # layers (RemotingClient.invoke and .connection) per request.
        conn = self._conns.get(addr)
        if conn is None or not conn.is_open:
            conn = self._conns[addr] = await self.remoting.connection(addr)
        return await conn.request(cmd, (timeout_ms or self.config.request_timeout_ms) / 1000)

    async def invoke_namesrv(self, cmd: RemotingCommand) -> RemotingCommand:
        """Ask the NameServers in turn, starting with the last that answered (failover)."""
        addrs = self.config.namesrv_addrs
        last: Exception | None = None
        for i in range(len(addrs)):
            idx = (self._namesrv_index + i) % len(addrs)
            try:
                resp = await self.invoke(addrs[idx], RemotingCommand(cmd.code, ext_fields=dict(
                    cmd.ext_fields), body=cmd.body))  # fmt: skip
            except RemotingError as exc:
                log.warning("NameServer %s did not answer: %s", addrs[idx], exc)
                last = exc
                continue
            self._namesrv_index = idx
            return resp
        assert last is not None
        raise last

    async def route(self, topic: str, *, refresh: bool = False) -> TopicRouteData | None:
        """The topic's route from the cache or the NameServers; None if no NameServer knows it."""
        if not refresh and topic in self.routes:
            return self.routes[topic]
        resp = await self.invoke_namesrv(
            RemotingCommand(RequestCode.GET_ROUTEINFO_BY_TOPIC, ext_fields={"topic": topic})
        )
        if resp.code == ResponseCode.TOPIC_NOT_EXIST:
            if self.routes.pop(topic, None) is not None:
                self._rebuild_broker_table()
            return None
        if resp.code != ResponseCode.SUCCESS:
            raise error_for_code(resp.code)(
                resp.remark or "", addr="NameServer", request=f"route of {topic}"
            )
        route = decode_topic_route(resp.body)
        self._learn_route(topic, route)
        new = {a for bd in route.broker_datas for a in bd.broker_addrs.values()} - self._greeted
        if new:
            # A broker learns a client's groups only from heartbeats: greet new ones at once, so
            # that a transaction check or a rebalance notice can reach this client.
            self._greeted |= new
            await self.heartbeat_all()
        return route

    async def refresh_routes(self) -> None:
        for topic in list(self.routes):
            try:
                await self.route(topic, refresh=True)
            except (RemotingError, BrokerResponseError) as exc:
                log.warning("route refresh of %s failed: %s", topic, exc)

    def refresh_route_soon(self, topic: TopicName) -> None:
        """Refresh `topic`'s route in the background, at most once per
        `route_refresh_on_error_min_interval_ms`: called when a broker call fails, so that a
        master the NameServer has dropped is dropped here within seconds (RocketMQ waits for
        the next poll, up to `poll_name_server_interval_ms`)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        last = self._refreshed_at.get(topic)
        min_interval_s = self.config.route_refresh_on_error_min_interval_ms / 1000
        if last is not None and now - last < min_interval_s:
            return
        self._refreshed_at[topic] = now
        task = loop.create_task(self._refresh_one(topic))
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _refresh_one(self, topic: TopicName) -> None:
        try:
            await self.route(topic, refresh=True)
        except (RemotingError, BrokerResponseError) as exc:
            log.warning("route refresh of %s failed: %s", topic, exc)

    def _learn_route(self, topic: TopicName, route: TopicRouteData) -> None:
        # Re-inserted, so `routes` stays in fetch order for _rebuild_broker_table. The newest
        # route naming a broker decides its members (Java puts each fetched BrokerData over the
        # old): a master missing from it is gone, whatever an older route of another topic says.
        self.routes.pop(topic, None)
        self.routes[topic] = route
        for bd in route.broker_datas:
            self._broker_table[bd.broker_name] = dict(bd.broker_addrs)

    def _rebuild_broker_table(self) -> None:
        # A route was dropped: what remains decides, newest last (RocketMQ cleanOfflineBroker).
        table: dict[BrokerName, dict[BrokerId, BrokerAddr]] = {}
        for route in self.routes.values():
            for bd in route.broker_datas:
                table[bd.broker_name] = dict(bd.broker_addrs)
        self._broker_table = table

    def broker_addrs(self) -> dict[BrokerName, dict[BrokerId, BrokerAddr]]:
        """Broker name -> {broker id -> address}: for each broker name, its members as the most
        recently fetched route that names it lists them (a copy)."""
        return {name: dict(addrs) for name, addrs in self._broker_table.items()}

    def find_broker_addr(
        self, broker_name: BrokerName, broker_id: BrokerId = MASTER_ID, only_this: bool = False
    ) -> FoundBroker | None:
        """The member of `broker_name` to call (RocketMQ `findBrokerAddressInSubscribe`).

        Args:
            broker_name: the broker (master and slaves share the name).
            broker_id: the member wanted: 0 the master, 1, 2, ... a slave.
            only_this: do not fall back to another member.

        Returns:
            That member; for a slave id that is absent, the next slave id; else, unless
            `only_this`, the member with the lowest id (the master when there is one). None when
            no cached route lists the broker name (or, with `only_this`, that member).
        """
        addrs = self._broker_table.get(broker_name)
        if not addrs:
            return None
        addr = addrs.get(broker_id)
        if addr is not None:
            return FoundBroker(addr, broker_id != MASTER_ID, broker_id)
        if broker_id != MASTER_ID:
            addr = addrs.get(broker_id + 1)
            if addr is not None:
                return FoundBroker(addr, True, broker_id + 1)
        if only_this:
            return None
        lowest = min(addrs)
        return FoundBroker(addrs[lowest], lowest != MASTER_ID, lowest)

    # -- heartbeats -------------------------------------------------------------------------------

    def heartbeat_data(self) -> HeartbeatData:
        return HeartbeatData(
            self.client_id,
            sorted(self.producer_groups),
            [make() for make in self.consumer_entries.values()],
        )

    async def heartbeat_all(self) -> None:
        """Heartbeat every known broker: with consumers, every member, slaves included (they may
        pull from a slave, which must know their subscriptions); producers alone, masters only
        (as RocketMQ does)."""
        data = self.heartbeat_data()
        if not data.producer_groups and not data.consumers:
            return
        body = data.encode()
        for addrs in self.broker_addrs().values():
            for broker_id, addr in addrs.items():
                if broker_id != 0 and not data.consumers:
                    continue
                try:
                    r = await self.invoke(addr, RemotingCommand(RequestCode.HEART_BEAT, body=body))
                    if r.code != ResponseCode.SUCCESS:
                        log.warning("heartbeat to %s refused: %s %s", addr, r.code, r.remark)
                except RemotingError as exc:
                    log.warning("heartbeat to %s failed: %s", addr, exc)

    def dispatch_check(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        """CHECK_TRANSACTION_STATE: hand the half message to its group's producer."""
        try:
            msg = decode_record(cmd.body)
        except CorruptRecordError as exc:
            log.warning("transaction check with an unreadable message: %s", exc)
            return None
        checker = self.transaction_checkers.get(msg.properties.get(Prop.PRODUCER_GROUP, ""))
        if checker is None:
            log.warning("transaction check for group %s, which has no producer here",
                        msg.properties.get(Prop.PRODUCER_GROUP))  # fmt: skip
            return None
        return self._no_reply(checker(conn, cmd, msg))

    @staticmethod
    async def _no_reply(work: Awaitable[None]) -> None:
        await work

    def _reset_offsets(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        hook = self.reset_hooks.get(cmd.ext_fields.get("group", ""))
        if hook is not None:
            try:
                table, _ = decode_mq_table_json(cmd.body, "offsetTable")
            except ValueError as exc:
                log.warning("unreadable offset reset: %s", exc)
                return None
            hook({k: int(v.get("offset", -1)) for k, v in table.items()})
        return None

    def _running_info(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        group = cmd.ext_fields.get("consumerGroup", "")
        hook = self.running_info_hooks.get(group)
        if hook is None:
            return _no_group(cmd, group)
        return cmd.response(
            ResponseCode.SUCCESS, body=hook(parse_bool(cmd.ext_fields.get("jstackEnable")))
        )

    def _consume_directly(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        group = cmd.ext_fields.get("consumerGroup", "")
        hook = self.direct_consume_hooks.get(group)
        if hook is None:
            return _no_group(cmd, group)

        async def answer() -> RemotingCommand:
            return cmd.response(ResponseCode.SUCCESS, body=await hook(cmd))

        return answer()

    def _ids_changed(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        hook = self.rebalance_hooks.get(cmd.ext_fields.get("consumerGroup", ""))
        if hook is not None:
            hook()
        return None

    def _on_server_request(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        handler = self.server_handlers.get(cmd.code)
        if handler is None:
            return cmd.response(
                ResponseCode.REQUEST_CODE_NOT_SUPPORTED, f"request type {cmd.code} not supported"
            )
        return handler(conn, cmd)


def _no_group(cmd: RemotingCommand, group: str) -> RemotingCommand:
    """Java's answer when an admin names a group this client does not consume for (or, for
    CONSUME_MESSAGE_DIRECTLY, not with a push consumer)."""
    return cmd.response(
        ResponseCode.SYSTEM_ERROR, f"The Consumer Group {group} not exist in this consumer"
    )
