"""A slave copies its master's tables (RocketMQ `SlaveSynchronize`).

The CommitLog is replicated byte by byte (`master.py`/`slave.py`); the tables beside it are not.
So every `interval_s` a slave asks its master for them and takes them as they are:

    code                                    file                    on the slave
    GET_ALL_TOPIC_CONFIG (21)               topics.json             replaced if its data version
                                                                    differs; then re-register
    GET_ALL_CONSUMER_OFFSET (43)            consumerOffset.json     merged by `topic@group`
    GET_ALL_DELAY_OFFSET (45)               delayOffset.json        replaced
    GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201)  subscriptionGroup.json  replaced if its data version
                                                                    differs

Each table is persisted at once, so a slave that takes over (or restarts) starts from its master's
last known state. A master that cannot be reached is logged once per outage, not every round.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rmqkit.common.group import SubscriptionGroupConfig
from rmqkit.errors import RemotingError
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.route import BodyError
from rmqkit.protocol.sync_bodies import (
    decode_consumer_offsets,
    decode_delay_offsets,
    decode_subscription_groups,
    decode_topic_configs,
)
from rmqkit.remoting.client import RemotingClient
from rmqkit.server.service import Service

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker

log = logging.getLogger("rmqkit.ha.sync")

DEFAULT_INTERVAL_S = 10.0
"""RocketMQ 4.x's period for `syncAll` on a slave."""
REQUEST_TIMEOUT_S = 3.0
"""Per request, as `BrokerOuterAPI.getAllTopicConfig` and its siblings wait."""


class SlaveSync(Service):
    """On a slave: copies topics, consumer offsets, delay offsets and groups from the master.

    Args:
        broker: the slave; its `master_addr` says where to ask (nothing happens while it is
            None, or on a master).
        interval_s: seconds between rounds; `sync_soon()` runs one at once.
        client: the remoting client to ask with; by default one of its own, closed at stop.
    """

    name = "slave-sync"

    def __init__(
        self,
        broker: Broker,
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        client: RemotingClient | None = None,
    ) -> None:
        super().__init__(interval_s)
        self.broker = broker
        self._own_client = client is None
        self.client = client if client is not None else RemotingClient(tls=broker.tls.client)
        self.rounds = 0
        """Rounds in which all four tables were fetched and applied (tests poll it)."""
        self._reported: set[str] = set()
        """Problems logged in the current outage; cleared by a clean round."""

    def sync_soon(self) -> None:
        """Run a round now (the replication link just came up, the master changed...)."""
        self.wakeup()

    @property
    def master_addr(self) -> str | None:
        """Where this slave's master serves clients, as the NameServer last said."""
        return self.broker.master_addr or None

    async def _run_once(self) -> None:
        b = self.broker
        addr = self.master_addr
        if b.settings.is_master or addr is None or addr == b.addr:
            return
        try:
            clean = await self.sync_all(addr)
        except RemotingError as exc:
            self._report("unreachable", "cannot reach master %s to copy its tables: %s "
                         "(retrying every %.0fs)", addr, exc, self.interval_s)  # fmt: skip
            return
        if clean:
            self.rounds += 1
            if self._reported:
                log.warning("tables copied from master %s again", addr)
                self._reported.clear()

    async def sync_all(self, addr: str) -> bool:
        """One round against `addr`; True if every table was fetched and applied.

        Raises:
            RemotingError: the master could not be reached (the round stops there).
        """
        steps = (
            (RequestCode.GET_ALL_TOPIC_CONFIG, self._apply_topics),
            (RequestCode.GET_ALL_CONSUMER_OFFSET, self._apply_consumer_offsets),
            (RequestCode.GET_ALL_DELAY_OFFSET, self._apply_delay_offsets),
            (RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG, self._apply_groups),
        )
        clean = True
        for code, apply in steps:
            r = await self.client.invoke(addr, RemotingCommand(code), REQUEST_TIMEOUT_S)
            if r.code != ResponseCode.SUCCESS:
                self._report(code.name, "master %s refused %s: %s %s", addr, code.name, r.code,
                             r.remark)  # fmt: skip
                clean = False
                continue
            try:
                apply(bytes(r.body))
            except (BodyError, KeyError, TypeError, ValueError) as exc:
                self._report(code.name, "master %s answered %s with a body rmqkit cannot use: "
                             "%s", addr, code.name, exc)  # fmt: skip
                clean = False
        return clean

    def _apply_topics(self, body: bytes) -> None:
        topics, version = decode_topic_configs(body)
        table = self.broker.topics
        if table.data_version == version:
            return
        table.replace_all(topics, version)
        self.broker.registration.register_soon()  # the NameServer must see the new topics

    def _apply_consumer_offsets(self, body: bytes) -> None:
        self.broker.offsets.merge(decode_consumer_offsets(body))

    def _apply_delay_offsets(self, body: bytes) -> None:
        offsets = decode_delay_offsets(body)
        schedule = self.broker.schedule
        if schedule.offsets != offsets:
            schedule.replace_offsets(offsets)

    def _apply_groups(self, body: bytes) -> None:
        groups, version = decode_subscription_groups(body)
        table = self.broker.groups
        if table.data_version == version:
            return
        configs = {name: SubscriptionGroupConfig.from_json(g) for name, g in groups.items()}
        table.replace_all(configs, version)

    def _report(self, key: str, msg: str, *args: object) -> None:
        """Log a problem once until a clean round; later rounds with it log at debug."""
        if key in self._reported:
            log.debug(msg, *args)
            return
        self._reported.add(key)
        log.warning(msg, *args)

    async def _on_stop(self) -> None:
        if self._own_client:
            await self.client.close()
