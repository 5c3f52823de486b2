"""The Broker: wires the store, the tables, the processors, long polling and registration.

RocketMQ's `BrokerController`, without the thread pools: one event loop serves every request.
Start order: bind the port, open the store with the bound address (it is in every message id),
start replication (a master's HAService, a slave's HAClient), load the tables, then accept
connections and register with the NameServers. Stop reverses it: refuse new connections, release
held pulls, let requests in flight finish, stop replication (SYNC_MASTER sends still waiting for a
slave get FLUSH_SLAVE_TIMEOUT), unregister, persist, and stop the store (flush and checkpoint).
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from rmqkit.common.lifecycle import AsyncLifecycle
from rmqkit.common.names import SCHEDULE_TOPIC
from rmqkit.common.topic import TopicConfig
from rmqkit.protocol.codes import RequestCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.remoting.server import RemotingServer
from rmqkit.remoting.tls_config import TlsSettings
from rmqkit.server.acl import AccessValidator, AclFiles, acl_folder
from rmqkit.server.broker.clients import ClientRegistry, ConsumerGroupInfo
from rmqkit.server.broker.groups import SubscriptionGroupTable
from rmqkit.server.broker.long_polling import PullHoldService
from rmqkit.server.broker.offsets import ConsumerOffsetTable
from rmqkit.server.broker.processors.admin import AdminProcessor
from rmqkit.server.broker.processors.admin_stats import AdminStatsProcessor
from rmqkit.server.broker.processors.client_calls import CODES as CLIENT_CALL_CODES
from rmqkit.server.broker.processors.client_calls import ClientCallProcessor
from rmqkit.server.broker.processors.consumer import ConsumerProcessor
from rmqkit.server.broker.processors.end_transaction import EndTransactionProcessor
from rmqkit.server.broker.processors.locks import LockProcessor, LockTable
from rmqkit.server.broker.processors.pull import PullProcessor
from rmqkit.server.broker.processors.reply import ReplyProcessor
from rmqkit.server.broker.processors.send import SendProcessor
from rmqkit.server.broker.processors.send_back import SendBackProcessor
from rmqkit.server.broker.registration import Registration
from rmqkit.server.broker.schedule import ScheduleService
from rmqkit.server.broker.stats import BrokerStats, StatsSampler
from rmqkit.server.broker.timer import TimerService
from rmqkit.server.broker.topic_table import TopicTable
from rmqkit.server.broker.transaction import TransactionService
from rmqkit.server.ha import HAClient, HAService
from rmqkit.server.ha.sync import SlaveSync
from rmqkit.server.service import Service
from rmqkit.server.settings import BrokerSettings
from rmqkit.server.store import FileMessageStore
from rmqkit.server.store.timer import TIMER_TOPIC

log = logging.getLogger("rmqkit.broker")


class Housekeeping(Service):
    """Persists consumer offsets and expires silent clients."""

    name = "broker-housekeeping"

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker.settings.flush_consumer_offset_interval_ms / 1000)
        self.broker = broker

    async def _run_once(self) -> None:
        b = self.broker
        if b.offsets.dirty:
            b.offsets.persist()
        b.clients.expire(b.settings.channel_expired_timeout_ms / 1000)
        if b.acl is not None:
            b.acl.files.reload_if_changed()


class Broker(AsyncLifecycle):
    """One broker, master or slave, on top of a `FileMessageStore`.

    For status pages and other processors: `ha` is the master's `HAService` (connected slaves,
    their offsets, bytes behind) or the slave's `HAClient`; `master_addr` is a slave's master
    (its client address, from the NameServer) and None on a master; `master_alive` says whether a
    slave hears from its master (always True on a master).
    """

    def __init__(self, settings: BrokerSettings, *, tls: TlsSettings | None = None) -> None:
        self.settings = settings
        self.tls = tls if tls is not None else TlsSettings()
        """What the client port accepts, and whether the broker's own connections to
        NameServers and to its master use TLS (`tls.client`)."""
        self.server = RemotingServer(
            settings.listen_host, settings.listen_port, tls=self.tls.server
        )
        config_dir = settings.store.store_path_root_dir / "config"
        self.topics = TopicTable(
            config_dir / "topics.json",
            default_queue_nums=settings.default_topic_queue_nums,
            auto_create=settings.auto_create_topic_enable,
        )
        self.groups = SubscriptionGroupTable(
            config_dir / "subscriptionGroup.json",
            auto_create=settings.auto_create_subscription_group,
        )
        self.offsets = ConsumerOffsetTable(config_dir / "consumerOffset.json")
        self.clients = ClientRegistry(self._notify_ids_changed)
        self.pull_holds = PullHoldService()
        self.stats = BrokerStats()
        self.stats_sampler = StatsSampler(self.stats)
        self.running = False
        self._store: FileMessageStore | None = None
        self.registration = Registration(self)
        self.slave_sync = SlaveSync(self)
        self.housekeeping = Housekeeping(self)
        self.schedule = ScheduleService(
            self,
            config_dir / "delayOffset.json",
            save_every_s=settings.flush_delay_offset_interval_ms / 1000,
        )
        self.timer = TimerService(
            self, config_dir / "timerCheckpoint.json", settings.store.timer_precision_ms,
            data_dir=settings.store.store_path_root_dir,
            max_delay_ms=settings.store.timer_max_delay_sec * 1000,
        )  # fmt: skip
        self.transactions = TransactionService(self)
        self.locks = LockTable()
        self.ha: HAService | HAClient | None = None
        self.master_addr: str | None = None
        """A slave's master, `ip:port` for clients, from the last NameServer answer; else None."""
        self.ha_port = 0
        """A master's bound HA port; a slave registers the port it would use as a master."""
        self.acl: AccessValidator | None = None
        """With aclEnable: the guard every request passes (its `files` re-read on change)."""

    @property
    def store(self) -> FileMessageStore:
        if self._store is None:
            raise RuntimeError("the broker is not started")
        return self._store

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def addr(self) -> str:
        return self.settings.broker_addr

    @property
    def ha_server_addr(self) -> str:
        """What the broker registers as haServerAddr: `<brokerIP2 or brokerIP1>:<HA port>`."""
        s = self.settings
        return f"{s.broker_ip2 or s.broker_ip1}:{self.ha_port}"

    @property
    def master_alive(self) -> bool:
        """Slave: its replication link is up and the master spoke within haHousekeepingInterval."""
        if isinstance(self.ha, HAClient):
            return self.ha.master_alive
        return True

    def apply_settings(self, settings: BrokerSettings) -> None:
        """Run with `settings` from now on: only the keys `config_update.LIVE` names may differ
        from the running ones (the rest were read at start-up)."""
        self.settings = settings
        self.topics.auto_create = settings.auto_create_topic_enable
        self.topics.default_queue_nums = settings.default_topic_queue_nums
        self.groups.auto_create = settings.auto_create_subscription_group

    def learn_master(self, master_addr: str | None, ha_server_addr: str | None) -> None:
        """A NameServer's answer to a slave's registration: where its master is now."""
        if self.settings.is_master:
            return
        changed = master_addr != self.master_addr
        self.master_addr = master_addr
        if changed and master_addr:
            self.slave_sync.sync_soon()
        if isinstance(self.ha, HAClient):
            self.ha.update_master_address(ha_server_addr)

    def _load_acl(self) -> None:
        s = self.settings
        env_home = os.environ.get("ROCKETMQ_HOME")
        home = s.rocketmq_home or (Path(env_home) if env_home else None)
        self.acl = AccessValidator(AclFiles(acl_folder(home, s.config_dir)))
        self.server.guard = self.acl.guard

    async def start(self) -> None:
        configured_port = self.settings.listen_port
        if self.settings.acl_enable:
            self._load_acl()  # first: a bad ACL file stops start-up before anything is bound
        await self.server.start(serving=False)
        if self.settings.listen_port != self.server.port:
            self.settings = self.settings.with_port(self.server.port)
            self.registration.broker = self
        s = self.settings
        self._store = FileMessageStore(s.store, (s.broker_ip1, s.listen_port), role=s.broker_role)
        await self._store.start()
        await self._start_ha(configured_port)
        self._store.add_dispatch_listener(self.pull_holds.notify)
        self._store.add_dispatch_listener(self.schedule.on_dispatch)
        self._store.add_dispatch_listener(self.timer.on_dispatch)
        self.topics.load()
        levels = len(s.store.delay_levels_ms)
        self.topics.topics.setdefault(SCHEDULE_TOPIC, TopicConfig(SCHEDULE_TOPIC, levels, levels))
        self.topics.topics.setdefault(TIMER_TOPIC, TopicConfig(TIMER_TOPIC, 1, 1))
        if s.trace_topic_enable:  # as RocketMQ's TopicConfigManager: one queue, read-write
            trace = s.msg_trace_topic_name
            self.topics.topics.setdefault(trace, TopicConfig(trace, 1, 1))
        self.schedule.load()
        self.groups.load()
        self.offsets.load()
        self._register_processors()
        self.server.on_disconnect.append(self.clients.connection_closed)
        self.running = True
        await self.server.serve()
        await self.registration.start()
        if not s.is_master:
            await self.slave_sync.start()
        await self.housekeeping.start()
        await self.stats_sampler.start()
        if s.is_master:
            await self.schedule.start()
            await self.transactions.start()
            if s.store.timer_wheel_enable:
                self.timer.load()
                await self.timer.start()
        log.warning(
            "broker %s (%s, cluster %s) serving on %s, HA %s, store %s, %s",
            s.broker_name, s.broker_role, s.broker_cluster_name, s.broker_addr,
            self.ha_server_addr if s.is_master else "from " + (
                s.store.ha_master_address or "the NameServer's haServerAddr"),
            s.store.store_path_root_dir, s.store.flush_disk_type,
        )  # fmt: skip

    async def _start_ha(self, configured_port: int) -> None:
        s = self.settings
        st = s.store
        default_port = configured_port + 1 if 0 < configured_port < 65535 else 0
        port = default_port if st.ha_listen_port is None else st.ha_listen_port
        if not s.is_master:
            self.ha_port = port
            self.ha = HAClient(
                self.store,
                master_address=st.ha_master_address,
                heartbeat_ms=st.ha_send_heartbeat_interval_ms,
                housekeeping_ms=st.ha_housekeeping_interval_ms,
            )
            await self.ha.start()
            return

        def service(port: int) -> HAService:
            return HAService(
                self.store, s.listen_host, port,
                batch_bytes=st.ha_transfer_batch_size_bytes,
                heartbeat_ms=st.ha_send_heartbeat_interval_ms,
                housekeeping_ms=st.ha_housekeeping_interval_ms,
            )  # fmt: skip

        ha = service(port)
        try:
            await ha.start()
        except OSError as exc:
            if st.ha_listen_port is not None or exc.errno != errno.EADDRINUSE or not port:
                raise
            # Nobody chose this port: a slave finds the bound one through the NameServer.
            ha = service(0)
            await ha.start()
            log.warning("HA port %d (listenPort + 1) is in use; slaves connect to %d instead "
                        "(set haListenPort to choose)", port, ha.port)  # fmt: skip
        self.ha = ha
        self.ha_port = ha.port

    def _register_processors(self) -> None:
        send = SendProcessor(self)
        pull = PullProcessor(self)
        consumer = ConsumerProcessor(self)
        admin = AdminProcessor(self)
        for code in (RequestCode.SEND_MESSAGE, RequestCode.SEND_MESSAGE_V2):
            self.server.register(code, send, run=send.run)  # a pipelining producer's sends
        self.server.register(RequestCode.SEND_BATCH_MESSAGE, send)
        for code in (RequestCode.PULL_MESSAGE, RequestCode.LITE_PULL_MESSAGE):
            self.server.register(code, pull)
        for code in (RequestCode.HEART_BEAT, RequestCode.UNREGISTER_CLIENT,
                     RequestCode.GET_CONSUMER_LIST_BY_GROUP, RequestCode.QUERY_CONSUMER_OFFSET,
                     RequestCode.UPDATE_CONSUMER_OFFSET):  # fmt: skip
            self.server.register(code, consumer)
        for code in admin.handlers:
            self.server.register(code, admin)
        stats = AdminStatsProcessor(self)
        for code in stats.handlers:
            self.server.register(code, stats)
        self.server.register(RequestCode.CONSUMER_SEND_MSG_BACK, SendBackProcessor(self))
        self.client_calls = ClientCallProcessor(self)
        for code in CLIENT_CALL_CODES:
            self.server.register(code, self.client_calls)
        self.server.register(RequestCode.END_TRANSACTION, EndTransactionProcessor(self))
        lock = LockProcessor(self)
        self.server.register(RequestCode.LOCK_BATCH_MQ, lock)
        self.server.register(RequestCode.UNLOCK_BATCH_MQ, lock)
        reply = ReplyProcessor(self)  # also declares <cluster>_REPLY_TOPIC: after topics.load()
        self.server.register(RequestCode.SEND_REPLY_MESSAGE, reply)
        self.server.register(RequestCode.SEND_REPLY_MESSAGE_V2, reply)

    def _notify_ids_changed(self, info: ConsumerGroupInfo) -> None:
        if not self.settings.notify_consumer_ids_changed_enable:
            return
        cfg = self.groups.groups.get(info.group)
        if cfg is not None and not cfg.notify_consumer_ids_changed_enable:
            return
        for ch in list(info.clients.values()):
            if ch.conn.is_open:
                ch.conn.oneway(
                    RemotingCommand(
                        RequestCode.NOTIFY_CONSUMER_IDS_CHANGED,
                        ext_fields={"consumerGroup": info.group},
                    )
                )

    async def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        self.pull_holds.wake_all()
        await self.server.stop()
        await self.slave_sync.stop()
        if self.ha is not None:
            await self.ha.stop()
        await self.registration.stop()
        await self.housekeeping.stop()
        await self.stats_sampler.stop()
        await self.schedule.stop()
        await self.timer.stop()
        await self.transactions.stop()
        self.offsets.persist()
        self.topics.persist()
        self.groups.persist()
        if self._store is not None:
            await self._store.stop()
        log.warning("broker %s stopped", self.settings.broker_name)
