"""`RocketApp`: the runtime of a service. It starts, in order: the embedded cluster (when no name
server is configured), the container's resources, the start-up hooks, the producer behind the
template, then one consumer per listener group, so no message reaches a handler before the app is
ready. `stop()` unwinds in reverse: consumers drain their in-flight messages and commit offsets,
then the producer, the hooks, the container and the cluster stop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from typing import Any

from rmqkit.common.lifecycle import AsyncLifecycle
from rmqkit.errors import ConfigurationError
from rmqkit.starter.consistency import describe, differences
from rmqkit.starter.container import app_resources, init_resources, shutdown_resources
from rmqkit.starter.embedded import EmbeddedCluster
from rmqkit.starter.group import ListenerGroup
from rmqkit.starter.idempotency import IdempotencyStore, store_from_url
from rmqkit.starter.invoker import IdempotencyOptions, ListenerInvoker
from rmqkit.starter.listener import ListenerRegistry, ListenerSpec, default_registry
from rmqkit.starter.observability import (
    NAME_SERVER_CHECK,
    Health,
    StarterMetrics,
    name_server_check,
)
from rmqkit.starter.plumbing import (
    Instances,
    dead_letterer,
    group_endpoint,
    producer_options,
    replier,
    trace_options,
)
from rmqkit.starter.settings import RocketSettings
from rmqkit.starter.template import RocketTemplate
from rmqkit.starter.transactional import (
    Flow,
    FlowRegistry,
    FlowSpec,
    TransactionFlows,
    default_flows,
)
from rmqkit.starter.transport import (
    ConsumerPort,
    Endpoint,
    ProducerPort,
    RemotingTransport,
    Transport,
)

log = logging.getLogger("rmqkit.app")
Hook = Callable[[], Awaitable[None] | None]
DEFAULT_PRODUCER_GROUP = "rmqkit-template"
LAG_REFRESH_S = 10.0


class RocketApp(AsyncLifecycle):
    """A service's listeners, template and transactional flows, started and stopped together.

    Args:
        settings: the `rocketmq.*` settings (default: read from the environment).
        container: a dependency-injector container; it is wired to the listeners' modules, its
            resources are initialised before consumers start and shut down after they stop.
        listeners: the listeners to run (default: every `@rocket_listener` declared so far).
        flows: the transactional flows (default: every `@transactional_producer`).
        instances: objects whose decorated methods are listeners or flows (otherwise the
            container's provider for the class is used, else the class is made with no args).
        transport: how to reach RocketMQ (default: rmqkit's client to the configured name
            server, or to an embedded cluster when none is configured).
        idempotency_store: the store for listeners with `idempotency_key` (default: from
            `settings.idempotency.store_url`).
    """

    def __init__(
        self,
        settings: RocketSettings | None = None,
        *,
        container: Any = None,
        listeners: ListenerRegistry | Iterable[ListenerSpec] | None = None,
        flows: FlowRegistry | Iterable[FlowSpec] | None = None,
        instances: Iterable[object] = (),
        transport: Transport | None = None,
        idempotency_store: IdempotencyStore | None = None,
        metrics: StarterMetrics | None = None,
    ) -> None:
        self.settings = settings or RocketSettings()
        self.container = container
        self.specs = list(default_registry if listeners is None else listeners)
        self.flow_specs = list(default_flows if flows is None else flows)
        self.instances = Instances(instances, container)
        self.transport = transport
        self._idem_store = idempotency_store
        self.metrics = metrics or StarterMetrics()
        self.health = Health()
        self.embedded: EmbeddedCluster | None = None
        self.producer: ProducerPort | None = None
        self.groups: dict[str, ListenerGroup] = {}
        self.consumers: dict[str, ConsumerPort] = {}
        self._endpoints: dict[str, Endpoint] = {}
        """Listener group -> where its consumer connects and as whom (`group_endpoint`)."""
        self._template: RocketTemplate | None = None
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._stack: AsyncExitStack | None = None
        self._lag: dict[tuple[str, str], int] = {}

    # -- hooks ------------------------------------------------------------------------------------

    def on_startup(self, fn: Hook) -> Hook:
        """Run `fn` after the container is ready and before any consumer starts."""
        self._startup.append(fn)
        return fn

    def on_shutdown(self, fn: Hook) -> Hook:
        """Run `fn` after the consumers and the producer stopped."""
        self._shutdown.append(fn)
        return fn

    @property
    def template(self) -> RocketTemplate:
        """The template (available once the app started)."""
        if self._template is None:
            raise ConfigurationError("the RocketApp is not started: no template yet")
        return self._template

    @property
    def name_server(self) -> str | None:
        """The name server in use (the embedded one's when the app started one)."""
        if self.embedded is not None and self.embedded.namesrv is not None:
            return self.embedded.name_server
        return self.settings.name_server

    async def consumer_lag(self, group: str | None = None) -> dict[tuple[str, str], int]:
        """Messages not consumed yet, per (group, topic) of this app's listeners (from the
        brokers' consume stats; committed offsets reach the broker every few seconds)."""
        if self.transport is None:
            raise ConfigurationError("the RocketApp is not started")
        out: dict[tuple[str, str], int] = {}
        for g, lg in self.groups.items():
            if group is None or g == group:
                lag = await self.transport.consumer_lag(g, lg.routes, self._endpoints.get(g))
                for topic, n in lag.items():
                    out[(g, topic)] = n
        return out

    async def _watch_lag(self) -> None:
        """Refresh the lag the `rmqkit.consumer.lag` gauge reports (its callback cannot await)."""
        while True:
            try:
                self._lag = await self.consumer_lag()
            except Exception as exc:  # a broker away for a moment: keep the last figures
                log.debug("consumer lag not refreshed: %r", exc)
            await asyncio.sleep(LAG_REFRESH_S)

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            await self._start(stack)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Start, serve until SIGTERM or SIGINT (or until `stop` is set), then stop gracefully:
        consumers stop pulling, finish what they hold (up to `await_termination_ms`), commit
        their offsets; then the producer, hooks, container and embedded cluster stop."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        try:
            async with self:
                log.info("rmqkit app running; SIGTERM or SIGINT stops it")
                await stop.wait()
                log.info("stopping: draining in-flight messages")
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    async def _start(self, stack: AsyncExitStack) -> None:
        specs = self._effective_specs()
        if self.transport is None:
            self.transport = await self._default_transport(stack)
        transport = self.transport
        stack.push_async_callback(transport.close)
        await self._start_container(stack, specs)
        for hook in self._startup:
            await _call(hook)
        stack.push_async_callback(self._run_shutdown_hooks)
        flows = self._flows()
        self.producer = self._make_producer(transport, flows)
        await self.producer.start()
        stack.push_async_callback(self.producer.stop)
        self.health.mark_producer(self.producer.group, started=True)
        self._template = RocketTemplate(
            self.producer, metrics=self.metrics, tracing=self.settings.tracing_enabled,
            flows=flows,
        )  # fmt: skip
        idem = await self._idempotency(stack, specs)
        self.groups = self._groups(specs, idem)
        self._endpoints = {
            g: group_endpoint(self.settings, g, lg.routes) for g, lg in self.groups.items()
        }
        for group, lg in self.groups.items():
            await self._check_running_members(transport, lg)
            consumer = self._make_consumer(transport, lg)
            await consumer.start()
            stack.push_async_callback(self._stop_consumer, group, consumer)
            self.consumers[group] = consumer
            self.health.mark_consumer(group, started=True, rebalanced=True,
                                      detail=", ".join(sorted(lg.routes)))  # fmt: skip
        if self.groups:
            self.metrics.set_lag_source(lambda: [(g, t, n) for (g, t), n in self._lag.items()])
            watcher = asyncio.get_running_loop().create_task(self._watch_lag())
            stack.callback(watcher.cancel)
        if self.name_server and NAME_SERVER_CHECK not in self.health.names():
            self.health.register(NAME_SERVER_CHECK, name_server_check(self.name_server))
        log.info("rmqkit app started: %d listener group(s), name server %s",
                 len(self.groups), self.name_server)  # fmt: skip

    async def _default_transport(self, stack: AsyncExitStack) -> Transport:
        s = self.settings
        if s.name_server:
            return RemotingTransport(s.name_server, **self._consumer_defaults())
        e = s.embedded
        self.embedded = EmbeddedCluster(
            e.data_dir, namesrv_port=e.namesrv_port, broker_port=e.broker_port,
            flush_disk_type=e.flush_disk_type, broker_name=e.broker_name,
            cluster_name=e.cluster_name,
        )  # fmt: skip
        await self.embedded.start()
        stack.push_async_callback(self.embedded.stop)
        log.info("no name server configured: started an embedded cluster at %s",
                 self.embedded.name_server)  # fmt: skip
        return RemotingTransport(self.embedded.name_server, **self._consumer_defaults())

    def _consumer_defaults(self) -> dict[str, Any]:
        c = self.settings.consumer
        tls = self.settings.tls.client_tls() if c.tls_enable else None
        return {"instance_name": c.instance_name, "namespace": c.namespace,
                "credentials": c.credentials(), "tls": tls}  # fmt: skip

    async def _start_container(self, stack: AsyncExitStack, specs: list[ListenerSpec]) -> None:
        c = self.container
        if c is None:
            return
        modules = {s.func.__module__ for s in specs} | {f.cls.__module__ for f in self.flow_specs}
        c.wire(modules=sorted(modules))
        stack.callback(c.unwire)
        resources = app_resources(c)
        await init_resources(resources)
        stack.push_async_callback(shutdown_resources, resources)

    async def _run_shutdown_hooks(self) -> None:
        for hook in reversed(self._shutdown):
            try:
                await _call(hook)
            except Exception:
                log.exception("shutdown hook %r failed", hook)

    def _effective_specs(self) -> list[ListenerSpec]:
        out = []
        for spec in self.specs:
            o = self.settings.listener_override(spec.group, spec.topic)
            if not o.enabled:
                continue
            spec = spec.with_overrides(**o.model_dump(exclude={"enabled"}))
            if spec.enabled:
                out.append(spec)
        return out

    def _flows(self) -> TransactionFlows | None:
        if not self.flow_specs:
            return None
        flows = {f.name: Flow(f, self.instances.get(f.cls)) for f in self.flow_specs}
        return TransactionFlows(flows, self.settings.producer.group or DEFAULT_PRODUCER_GROUP)

    def _make_producer(self, transport: Transport, flows: TransactionFlows | None) -> ProducerPort:
        group = self.settings.producer.group or DEFAULT_PRODUCER_GROUP
        s = self.settings
        opts = producer_options(s.producer, s.tls, s.access_channel)
        if flows is None:
            return transport.producer(group, **opts)
        producer = transport.transaction_producer(group, flows.check, **opts)
        flows.producer = producer
        return producer

    async def _idempotency(
        self, stack: AsyncExitStack, specs: list[ListenerSpec]
    ) -> IdempotencyOptions | None:
        if not any(s.idempotency_key for s in specs):
            return None
        store = self._idem_store
        if store is None:
            store = store_from_url(self.settings.idempotency.store_url)
            stack.push_async_callback(store.close)
        s = self.settings.idempotency
        return IdempotencyOptions(store, s.lease_s, s.retention_s)

    def _groups(
        self, specs: list[ListenerSpec], idem: IdempotencyOptions | None
    ) -> dict[str, ListenerGroup]:
        assert self.producer is not None
        reply, dlq = replier(self.producer), dead_letterer(self.producer)
        by_group: dict[str, list[ListenerInvoker]] = {}
        for spec in specs:
            func = spec.func
            if spec.is_method:
                func = func.__get__(self.instances.get_owner(spec))
            inv = ListenerInvoker(
                spec, func, idempotency=idem if spec.idempotency_key else None,
                metrics=self.metrics, reply=reply, dead_letter=dlq(spec.group),
                container=self.container,
            )  # fmt: skip
            by_group.setdefault(spec.group, []).append(inv)
        return {g: ListenerGroup(g, invs) for g, invs in by_group.items()}

    async def _check_running_members(self, transport: Transport, lg: ListenerGroup) -> None:
        """Compare the group's subscription with its running members' (see `consistency`)."""
        mode = self.settings.consumer.subscription_check
        if mode == "off":
            return
        running = await transport.group_view(lg.group, self._endpoints.get(lg.group))
        if running is None:
            return
        diffs = differences(lg.subscriptions(), lg.options["message_model"], running)
        if not diffs:
            return
        problem = describe(lg.group, diffs, running)
        if mode == "fail":
            raise ConfigurationError(problem)
        log.warning("%s", problem)

    def _make_consumer(self, transport: Transport, lg: ListenerGroup) -> ConsumerPort:
        o = lg.options
        first = lg.invokers[0].spec
        s, c = self.settings, self.settings.consumer
        consumer = transport.consumer(
            lg.group,
            endpoint=self._endpoints.get(lg.group),
            message_model=o["message_model"],
            consume_mode=o["consume_mode"],
            consume_concurrency=o["consume_concurrency"],
            consume_message_batch_max_size=lg.batch_size,
            max_reconsume_times=first.effective_max_reconsume_times,
            suspend_current_queue_time_ms=o["suspend_current_queue_time_ms"],
            consume_timeout_s=o["consume_timeout_s"],
            consume_from_where=o["consume_from_where"],
            await_termination_ms=self.settings.consumer.await_termination_ms,
            **trace_options(c.enable_msg_trace, c.customized_trace_topic, s.access_channel),
        )
        for topic, (expr, etype) in lg.subscriptions().items():
            consumer.subscribe(topic, expr, etype)
        consumer.register(lg.handle)
        return consumer

    async def _stop_consumer(self, group: str, consumer: ConsumerPort) -> None:
        self.health.mark_consumer(group, started=False, rebalanced=False, detail="stopped")
        await consumer.stop()
        self.consumers.pop(group, None)


async def _call(hook: Hook) -> None:
    result = hook()
    if inspect.isawaitable(result):
        await result
