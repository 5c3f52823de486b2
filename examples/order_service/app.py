"""The services as RocketApps: one app per service, as each would run in its own process in
production, with its own producer group, consumer group(s) and client instance name.

Only the two cache nodes share a consumer group (`cache-invalidation`, BROADCASTING): they are
two instances of one service. Each gets its own client instance name and its own directory for
the offsets a broadcasting consumer keeps locally.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rmqkit.starter import FlowRegistry, ListenerRegistry, RocketApp, RocketSettings
from rmqkit.starter.idempotency import SqliteIdempotencyStore
from rmqkit.starter.observability import StarterMetrics
from rmqkit.starter.transport import RemotingTransport

from order_service.flows import ORDER_FLOWS, ORDER_SERVICE, CreateOrder, OrderService
from order_service.listeners import (
    ANALYTICS,
    CACHE,
    INTAKE,
    INVENTORY,
    LOGISTICS,
    LOYALTY,
    NOTIFICATION,
    PAYMENT,
    TRACKER,
    AnalyticsService,
    CacheNode,
    InventoryService,
    LogisticsService,
    LoyaltyService,
    NotificationService,
    OrderIntake,
    PaymentService,
    Service,
    ServiceContext,
    StatusTracker,
)
from order_service.models import (
    ORDER_TOPIC,
    REQUEST_TOPIC,
    STATUS_TOPIC,
    STOCK_TOPIC,
    TIMEOUT_TOPIC,
    WARMUP_TAG,
)
from order_service.observe import IntakeMeter
from order_service.scenario import CACHE_NODES

TOPICS = (ORDER_TOPIC, STOCK_TOPIC, STATUS_TOPIC, TIMEOUT_TOPIC, REQUEST_TOPIC)


def service_settings(name_server: str, service: str) -> RocketSettings:
    """The `rocketmq.*` settings of one service: its producer group and instance name."""
    return RocketSettings(
        name_server=name_server,
        producer={"group": service, "instance_name": service},
        consumer={"instance_name": service, "await_termination_ms": 3_000},
        _env_file=None,
    )


class Shop:
    """Every service of the demo, each started in its own RocketApp.

    Args:
        ctx: the database, observations, chaos and configuration the services share.
        name_server: the cluster's NameServer.
        work_dir: where the payment idempotency store and the cache nodes' offsets go.
    """

    def __init__(self, ctx: ServiceContext, name_server: str, work_dir: Path) -> None:
        self.ctx = ctx
        self.name_server = name_server
        self.work_dir = work_dir
        self.create_order = CreateOrder(ctx)
        self.order_service = OrderService(ctx)
        self.inventory = InventoryService(ctx)
        self.payment = PaymentService(ctx)
        self.logistics = LogisticsService(ctx)
        self.notification = NotificationService(ctx)
        self.analytics = AnalyticsService(ctx)
        self.loyalty = LoyaltyService(ctx)
        self.caches = [CacheNode(ctx, node) for node in CACHE_NODES]
        self.tracker = StatusTracker(ctx)
        self.meter = IntakeMeter()
        self.intake = OrderIntake(ctx, self.meter)
        self.idempotency = SqliteIdempotencyStore(work_dir / "payment-idempotency.db")
        self.apps: dict[str, RocketApp] = {}
        self.metrics: dict[str, StarterMetrics] = {}
        """Per service, kept across restarts (a restarted app counts on)."""

    def _plan(self) -> dict[str, tuple[ListenerRegistry, list[Service], dict[str, Any]]]:
        """service -> (its listeners, the objects they are methods of, extra RocketApp args)."""
        plan: dict[str, tuple[ListenerRegistry, list[Service], dict[str, Any]]] = {
            "order-service": (ORDER_SERVICE, [self.order_service, self.create_order],
                              {"flows": ORDER_FLOWS}),
            "inventory-service": (INVENTORY, [self.inventory], {}),
            "payment-service": (PAYMENT, [self.payment],
                                {"idempotency_store": self.idempotency}),
            "logistics-service": (LOGISTICS, [self.logistics], {}),
            "notification-service": (NOTIFICATION, [self.notification], {}),
            "analytics-service": (ANALYTICS, [self.analytics], {}),
            "loyalty-service": (LOYALTY, [self.loyalty], {}),
            "status-tracker": (TRACKER, [self.tracker], {}),
            "order-intake": (INTAKE, [self.intake], {}),
        }  # fmt: skip
        for node in self.caches:
            transport = RemotingTransport(
                self.name_server,
                instance_name=node.node,
                offset_store_dir=self.work_dir / "offsets" / node.node,
            )
            plan[node.node] = (CACHE, [node], {"transport": transport})
        return plan

    def build(self, service: str) -> RocketApp:
        """A new (not started) RocketApp for one service."""
        listeners, instances, extra = self._plan()[service]
        extra.setdefault("flows", FlowRegistry())  # no transactional flows unless given
        metrics = self.metrics.get(service)
        if metrics is None:
            metrics = self.metrics[service] = StarterMetrics()
        app = RocketApp(service_settings(self.name_server, service), listeners=listeners,
                        instances=instances, metrics=metrics, **extra)  # fmt: skip
        for svc in instances:
            svc.bind(app)
        return app

    async def start(self) -> None:
        """Create the topics, then start every service (consumers first, the order service
        last, so no event is published before its consumers are there)."""
        await self.create_topics()
        names = [n for n in self._plan() if n != "order-service"] + ["order-service"]
        for name in names:
            await self.start_service(name)

    async def create_topics(self) -> None:
        """Send one message with a tag nobody subscribes to, to every topic: the broker creates
        the topics (autoCreateTopicEnable) before consumers look for their routes. In
        production an operator creates them with `mqadmin updateTopic`."""
        settings = service_settings(self.name_server, "topic-setup")
        async with RocketApp(settings, listeners=[], flows=[]) as app:
            for topic in TOPICS:
                await app.template.send(f"{topic}:{WARMUP_TAG}", b"{}")

    async def start_service(self, name: str) -> RocketApp:
        app = self.build(name)
        await app.start()
        self.apps[name] = app
        return app

    async def stop_service(self, name: str) -> None:
        """Stop one service: its consumers finish what they hold and commit their offsets."""
        app = self.apps.pop(name)
        await app.stop()

    async def stop(self) -> None:
        """Stop every service at once, as a deployment shuts its processes down; each consumer
        finishes what it holds and commits its offsets first."""
        apps, self.apps = list(self.apps.values()), {}
        results = await asyncio.gather(*(app.stop() for app in apps), return_exceptions=True)
        await self.idempotency.close()
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def __aenter__(self) -> Shop:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def running(self) -> Iterable[str]:
        return list(self.apps)
