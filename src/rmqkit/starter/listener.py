"""`@rocket_listener`: declares that a function (or method) consumes a topic, as rocketmq-spring's
`@RocketMQMessageListener` does for a class. Decorating only registers a `ListenerSpec`; nothing
connects or starts until a `RocketApp` starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, TypeVar, overload

from rmqkit.common.names import retry_topic
from rmqkit.errors import ConfigurationError
from rmqkit.starter.outcomes import ErrorPolicy

MessageModel = Literal["CLUSTERING", "BROADCASTING"]
ConsumeMode = Literal["CONCURRENTLY", "ORDERLY"]
ConsumeFrom = Literal[
    "CONSUME_FROM_LAST_OFFSET", "CONSUME_FROM_FIRST_OFFSET", "CONSUME_FROM_TIMESTAMP"
]
KeySource = str | Callable[[Any, Any], str]
"""`"msg_id"`, `"keys"`, `"auto"` (the sender's idempotency key, else the message id),
`"property:<name>"`, `"payload.<field>[.<field>...]"`, or a callable `(payload, meta) -> str`."""
F = TypeVar("F", bound=Callable[..., Any])
LISTENER_ATTR = "__rocket_listener__"

# Options that belong to the group's one consumer: every listener of a group must agree on them.
GROUP_OPTIONS = (
    "message_model", "consume_mode", "max_reconsume_times", "suspend_current_queue_time_ms",
    "consume_timeout_s", "consume_from_where", "consume_concurrency",
)  # fmt: skip


@dataclass(frozen=True)
class ListenerSpec:
    """One listener as declared (see `rocket_listener` for the meaning of each field)."""

    func: Callable[..., Any]
    topic: str
    group: str
    tag: str = "*"
    selector_sql: str | None = None
    message_model: MessageModel = "CLUSTERING"
    consume_mode: ConsumeMode = "CONCURRENTLY"
    consume_concurrency: int = 20
    max_reconsume_times: int = 16
    delay_level_when_next_consume: int = 0
    suspend_current_queue_time_ms: int = 1_000
    consume_timeout_s: float = 15 * 60
    consume_from_where: ConsumeFrom = "CONSUME_FROM_LAST_OFFSET"
    batch_size: int = 1
    idempotency_key: KeySource | None = None
    retry_on: tuple[type[BaseException], ...] = ()
    dlq_on: tuple[type[BaseException], ...] = ()
    drop_on: tuple[type[BaseException], ...] = ()
    enabled: bool = True
    name: str = ""
    policy: ErrorPolicy = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", getattr(self.func, "__qualname__", repr(self.func)))
        where = f"@rocket_listener on {self.name}"
        if not self.topic or not self.group:
            raise ConfigurationError(f"{where}: topic and group are required")
        if self.topic == retry_topic(self.group) or self.topic.startswith(("%RETRY%", "%DLQ%")):
            raise ConfigurationError(f"{where}: subscribe to the real topic, not {self.topic!r}")
        if self.selector_sql is not None and self.tag not in ("*", ""):
            raise ConfigurationError(f"{where}: give either tag= or selector_sql=, not both")
        if self.consume_concurrency < 1 or not 1 <= self.batch_size <= 1024:
            raise ConfigurationError(f"{where}: consume_concurrency >= 1, batch_size 1..1024")
        if not 10 <= self.suspend_current_queue_time_ms <= 30_000:
            raise ConfigurationError(f"{where}: suspend_current_queue_time_ms must be 10..30000")
        if self.max_reconsume_times < -1:
            raise ConfigurationError(f"{where}: max_reconsume_times must be -1 or more")
        policy = ErrorPolicy(
            self.retry_on, self.dlq_on, self.drop_on, self.delay_level_when_next_consume
        )
        object.__setattr__(self, "policy", policy)

    @property
    def tags(self) -> frozenset[str] | None:
        """The tags this listener takes, None for all (`*`)."""
        if self.selector_sql is not None or self.tag.strip() in ("*", ""):
            return None
        return frozenset(t.strip() for t in self.tag.split("||") if t.strip())

    @property
    def is_method(self) -> bool:
        """Whether it was declared on a method (the app binds it to an instance)."""
        import inspect

        params = list(inspect.signature(self.func).parameters)
        return bool(params) and params[0] == "self"

    @property
    def effective_max_reconsume_times(self) -> int:
        """-1 means RocketMQ's default: 16 concurrently, unbounded (a large number) orderly."""
        if self.max_reconsume_times >= 0:
            return self.max_reconsume_times
        return 2**31 - 1 if self.consume_mode == "ORDERLY" else 16

    def with_overrides(self, **changes: Any) -> ListenerSpec:
        """A copy with some fields changed (None values are ignored)."""
        names = {f.name for f in fields(self) if f.init}
        kept = {k: v for k, v in changes.items() if v is not None and k in names}
        return replace(self, **kept) if kept else self


class ListenerRegistry:
    """The listeners declared so far. `rocket_listener` adds to `default_registry` unless told
    otherwise; an app takes a registry (or a list of specs) when it starts."""

    def __init__(self) -> None:
        self._specs: list[ListenerSpec] = []

    def add(self, spec: ListenerSpec) -> None:
        self._specs.append(spec)

    def __iter__(self) -> Iterator[ListenerSpec]:
        return iter(list(self._specs))

    def __len__(self) -> int:
        return len(self._specs)

    def clear(self) -> None:
        self._specs.clear()


default_registry = ListenerRegistry()


@overload
def rocket_listener(func: F, /) -> F: ...
@overload
def rocket_listener(
    *,
    topic: str,
    group: str,
    tag: str = "*",
    selector_sql: str | None = None,
    message_model: MessageModel = "CLUSTERING",
    consume_mode: ConsumeMode = "CONCURRENTLY",
    consume_concurrency: int = 20,
    max_reconsume_times: int = 16,
    delay_level_when_next_consume: int = 0,
    suspend_current_queue_time_ms: int = 1_000,
    consume_timeout_s: float = 15 * 60,
    consume_from_where: ConsumeFrom = "CONSUME_FROM_LAST_OFFSET",
    batch_size: int | None = None,
    idempotency_key: KeySource | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
    dlq_on: tuple[type[BaseException], ...] = (),
    drop_on: tuple[type[BaseException], ...] = (),
    enabled: bool = True,
    name: str = "",
    registry: ListenerRegistry | None = None,
) -> Callable[[F], F]: ...
def rocket_listener(func: Any = None, /, **options: Any) -> Any:
    """Declare a listener: the decorated coroutine (or plain function) is called with each message.

    The first parameter receives the payload, converted according to its annotation (a pydantic
    model, dataclass, dict, str or bytes; `list[T]` receives batches). A parameter annotated
    `MessageMeta` receives the message's metadata; parameters with defaults (such as
    dependency-injector's `Provide[...]`) are left to their defaults or to the container.

    Args:
        topic: the topic to consume.
        group: the consumer group. Listeners sharing a group share one consumer; those sharing
            (group, topic) are merged into one subscription (`tagA || tagB`) and routed by tag.
        tag: a tag expression (`*`, `pay`, `pay || refund`).
        selector_sql: a SQL92 filter on message properties instead of a tag (the broker must
            have `enablePropertyFilter=true`).
        message_model: CLUSTERING (the group shares the messages) or BROADCASTING (every
            instance receives every message; failures are not retried).
        consume_mode: CONCURRENTLY, or ORDERLY (one queue's messages one at a time, in order).
        consume_concurrency: handler calls at once (rocketmq-spring's consumeThreadMax).
        max_reconsume_times: retries before the dead-letter queue (-1: 16, unbounded if ORDERLY).
        delay_level_when_next_consume: the retry delay level after an ordinary exception
            (0: the broker's back-off, growing each time; -1: DLQ at once; 1..18: fixed level).
        suspend_current_queue_time_ms: ORDERLY: the pause before a failed message is retried.
        consume_timeout_s: a handler running longer fails (and is retried).
        consume_from_where: where a new group starts.
        batch_size: messages per call of a batch handler (default 32 for `list[T]` handlers).
        idempotency_key: skip messages already processed, by this key (see `KeySource`); the
            app's idempotency store remembers keys.
        retry_on / dlq_on / drop_on: exception types that retry, dead-letter at once, or drop.
        enabled: False declares it but never starts it (settings can also disable it).
        name: a name for logs and settings (default: the function's qualified name).
        registry: where to register it (default: `default_registry`).
    """
    if func is not None:
        raise ConfigurationError("use @rocket_listener(topic=..., group=...) with arguments")
    given = options.pop("registry", None)
    registry = default_registry if given is None else given

    def decorate(f: F) -> F:
        if not callable(f):
            raise ConfigurationError(f"@rocket_listener decorates functions, not {f!r}")
        target = _auto_inject(f)
        opts = dict(options)
        if opts.get("batch_size") is None:
            from rmqkit.starter.signature import takes_batch

            opts["batch_size"] = 32 if takes_batch(target) else 1
        spec = ListenerSpec(target, **opts)
        from rmqkit.starter.signature import HandlerSignature

        HandlerSignature.of(spec)  # fail at import when the signature is unusable
        specs = [*getattr(f, LISTENER_ATTR, ()), spec]
        setattr(target, LISTENER_ATTR, specs)
        registry.add(spec)
        return target

    return decorate


def _auto_inject(f: F) -> F:
    """Apply dependency-injector's `@inject` when a parameter defaults to a `Provide[...]` marker
    and the function is not already injected (a common omission)."""
    import inspect

    from dependency_injector import wiring

    if getattr(f, "__injections__", None) is not None:
        return f
    markers: tuple[type, ...] = (wiring.Provide, wiring.Provider, wiring.Closing)  # type: ignore[assignment]
    try:
        params = inspect.signature(f).parameters.values()
    except (TypeError, ValueError):
        return f
    if any(isinstance(p.default, markers) for p in params):
        injected: F = wiring.inject(f)
        return injected
    return f
