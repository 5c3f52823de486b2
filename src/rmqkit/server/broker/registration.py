"""Registering with every NameServer: at start, every `registerNameServerPeriod`, and soon after
a topic changes (RocketMQ `BrokerOuterAPI.registerBrokerAll`). NameServers are independent, so
each gets the same registration; one that is down is retried on the next round. A slave learns
from the answers where its master is (masterAddr, haServerAddr) and passes it to the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import TYPE_CHECKING

from rmqkit.common.topic import PERM_RW
from rmqkit.errors import RemotingError
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.route import encode_register_broker_body
from rmqkit.remoting.client import RemotingClient
from rmqkit.server.service import Service

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker

log = logging.getLogger("rmqkit.broker.registration")
FIRST_REGISTRATION_TIMEOUT_S = 3.0


class Registration(Service):
    name = "register-broker"

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker.settings.register_name_server_period_ms / 1000)
        self.broker = broker
        self.client = RemotingClient(tls=broker.tls.client)
        self.failing: set[str] = set()
        self.registered: dict[str, int] = {}
        """NameServer address -> successful registrations (tests and status pages read it)."""

    def register_soon(self) -> None:
        self.wakeup()

    async def register_now(self, timeout_s: float = FIRST_REGISTRATION_TIMEOUT_S) -> None:
        """Register with every NameServer before returning (waiting at most `timeout_s`), so
        that a topic an admin request created is routable once the request is answered, as
        with Java's broker. A NameServer that does not answer is left to the periodic rounds."""
        # wait_for, not asyncio.timeout: a request handler starts outside a task (eagerly).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._run_once(), timeout_s)

    async def start(self) -> None:
        # Register once before the loop, as Java's BrokerController.start() does: a client told
        # that the broker is up finds its routes at once instead of after the first period.
        await self.register_now()
        await super().start()

    def _header(self) -> dict[str, str]:
        s = self.broker.settings
        return {
            "brokerName": s.broker_name,
            "brokerAddr": s.broker_addr,
            "clusterName": s.broker_cluster_name,
            "haServerAddr": self.broker.ha_server_addr,
            "brokerId": str(s.broker_id),
            "heartbeatTimeoutMillis": "120000",
            "compressed": "false",
        }

    async def _run_once(self) -> None:
        addrs = self.broker.settings.namesrv_addrs
        if not addrs:
            return
        answers = [a for a in await asyncio.gather(*(self._register(a) for a in addrs)) if a]
        if answers and not self.broker.settings.is_master:
            # Any NameServer that knows the master will do; an address stays until replaced.
            master = next((a["masterAddr"] for a in answers if a.get("masterAddr")), None)
            ha = next((a["haServerAddr"] for a in answers if a.get("haServerAddr")), None)
            self.broker.learn_master(master, ha)

    async def _register(self, addr: str) -> dict[str, str] | None:
        """Register with one NameServer; its answer's ext fields, or None if it failed."""
        t = self.broker.topics
        topics = dict(t.topics)
        perm = self.broker.settings.broker_permission
        if perm & PERM_RW != PERM_RW:
            # As Java's broker: a broker that takes no writes (or serves no reads) says so of
            # every topic, so that clients route around it (brokerPermission=4 to drain one).
            topics = {n: dataclasses.replace(c, perm=c.perm & perm) for n, c in topics.items()}
        body = encode_register_broker_body(topics, t.data_version)
        cmd = RemotingCommand(RequestCode.REGISTER_BROKER, ext_fields=self._header(), body=body)
        try:
            r = await self.client.invoke(addr, cmd, 6.0)
        except RemotingError as exc:
            if addr not in self.failing:
                log.warning("cannot register with NameServer %s: %s (retrying)", addr, exc)
            self.failing.add(addr)
            return None
        if r.code != ResponseCode.SUCCESS:
            log.warning("NameServer %s refused registration: %s %s", addr, r.code, r.remark)
            return None
        if addr in self.failing:
            log.warning("registered with NameServer %s again", addr)
            self.failing.discard(addr)
        self.registered[addr] = self.registered.get(addr, 0) + 1
        return dict(r.ext_fields)

    async def _on_stop(self) -> None:
        s = self.broker.settings
        ext = {
            "brokerName": s.broker_name,
            "brokerAddr": s.broker_addr,
            "clusterName": s.broker_cluster_name,
            "brokerId": str(s.broker_id),
        }
        for addr in s.namesrv_addrs:
            try:
                await self.client.invoke(
                    addr, RemotingCommand(RequestCode.UNREGISTER_BROKER, ext_fields=dict(ext)), 3.0
                )
            except RemotingError as exc:
                log.info("unregister from %s failed: %s", addr, exc)
        await self.client.close()
