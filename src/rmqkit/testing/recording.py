"""Call recording for listener tests: wrap a `@rocket_listener` function so each call's payload,
`MessageMeta`, result and exception are kept (faststream's `HandlerCallWrapper.mock`), and assert
on what a service published.

```python
rec = record_calls(on_paid)                   # the decorated function, or its ListenerSpec
async with rocket_test_app(listeners=[rec.spec]) as t:
    await t.template.send("orders:paid", Order(id="o-1"))
    await t.drain()
rec.assert_called_once_with(Order(id="o-1"))
assert rec.calls[0].meta.tags == "paid"
```
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from rmqkit.errors import ConfigurationError
from rmqkit.protocol.record import StoredMessage
from rmqkit.starter.listener import LISTENER_ATTR, ListenerSpec
from rmqkit.starter.meta import MessageMeta
from rmqkit.starter.payload import encode_payload
from rmqkit.starter.signature import HandlerSignature
from rmqkit.testing.memory.app import RocketTestApp
from rmqkit.testing.memory.broker import MemoryBroker
from rmqkit.testing.polling import check_for

_UNSET: Any = object()


@dataclass(slots=True)
class Call:
    """One call of a recorded listener.

    Attributes:
        payload: the converted payload (a list for a batch listener), None if it takes none.
        meta: the `MessageMeta` (a list for a batch listener), when the listener asks for it.
        raw: the `StoredMessage` (a list), when the listener asks for it.
        args / kwargs: exactly what the listener was called with.
        result: what it returned.
        error: what it raised (the exception was re-raised to the app).
    """

    payload: Any
    meta: MessageMeta | list[MessageMeta] | None
    raw: StoredMessage | list[StoredMessage] | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: BaseException | None = None


class CallRecorder:
    """The calls of one or more recorded listeners, in call order.

    Attributes:
        specs: the listener specs with the recording function; give them to the app.
        calls: every call so far.
    """

    def __init__(self) -> None:
        self.specs: list[ListenerSpec] = []
        self.calls: list[Call] = []

    @property
    def spec(self) -> ListenerSpec:
        """The recorded spec, when there is exactly one."""
        if len(self.specs) != 1:
            raise ConfigurationError(f"{len(self.specs)} listeners are recorded; use .specs")
        return self.specs[0]

    @property
    def call_count(self) -> int:
        return len(self.calls)

    @property
    def payloads(self) -> list[Any]:
        return [c.payload for c in self.calls]

    @property
    def metas(self) -> list[Any]:
        return [c.meta for c in self.calls]

    def reset(self) -> None:
        self.calls.clear()

    def assert_called(self, times: int | None = None) -> None:
        """At least one call, or exactly `times`."""
        if times is None and not self.calls:
            raise AssertionError("the listener was not called")
        if times is not None and len(self.calls) != times:
            raise AssertionError(
                f"the listener was called {len(self.calls)} times, not {times}: {self.payloads!r}"
            )

    def assert_not_called(self) -> None:
        if self.calls:
            raise AssertionError(
                f"the listener was called {len(self.calls)} times: {self.payloads!r}"
            )

    def assert_called_with(self, payload: Any) -> None:
        """The last call received `payload`."""
        if not self.calls:
            raise AssertionError("the listener was not called")
        if self.calls[-1].payload != payload:
            raise AssertionError(f"called with {self.calls[-1].payload!r}, not {payload!r}")

    def assert_called_once_with(self, payload: Any) -> None:
        self.assert_called(1)
        self.assert_called_with(payload)

    async def wait_for_calls(self, count: int = 1, *, timeout: float = 2.0) -> list[Call]:  # noqa: ASYNC109
        """Poll until at least `count` calls happened (for code that runs in the background
        rather than behind `drain()`); returns the calls."""
        await check_for(lambda: len(self.calls) >= count, timeout=timeout,
                        message=f"waiting for {count} listener call(s)")  # fmt: skip
        return list(self.calls)

    def wrap(self, spec: ListenerSpec) -> ListenerSpec:
        """A copy of `spec` whose function records its calls here."""
        sig = HandlerSignature.of(spec)
        skip = 1 if spec.is_method else 0
        func = spec.func

        def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
            payload = args[skip] if sig.payload_param is not None and len(args) > skip else None
            meta = kwargs.get(sig.meta_param) if sig.meta_param else None
            raw = kwargs.get(sig.raw_param) if sig.raw_param else None
            call = Call(payload, meta, raw, args, dict(kwargs))
            self.calls.append(call)
            return call

        if inspect.iscoroutinefunction(inspect.unwrap(func)) or inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def recorded(*args: Any, **kwargs: Any) -> Any:
                call = begin(args, kwargs)
                try:
                    call.result = await func(*args, **kwargs)
                except BaseException as exc:
                    call.error = exc
                    raise
                return call.result

            wrapper: Callable[..., Any] = recorded
        else:

            @functools.wraps(func)
            def recorded_sync(*args: Any, **kwargs: Any) -> Any:
                call = begin(args, kwargs)
                try:
                    call.result = func(*args, **kwargs)
                except BaseException as exc:
                    call.error = exc
                    raise
                return call.result

            wrapper = recorded_sync
        new = replace(spec, func=wrapper)
        self.specs.append(new)
        return new


def record_calls(*targets: ListenerSpec | Callable[..., Any]) -> CallRecorder:
    """Record the calls of listeners: each target is a `ListenerSpec` or a function decorated
    with `@rocket_listener` (all of its specs are recorded). Pass `recorder.specs` (or
    `recorder.spec`) to the app instead of the originals.

    Raises:
        ConfigurationError: a target is neither a spec nor a decorated listener.
    """
    rec = CallRecorder()
    for target in targets:
        if isinstance(target, ListenerSpec):
            rec.wrap(target)
            continue
        specs = getattr(target, LISTENER_ATTR, None)
        if not specs:
            raise ConfigurationError(
                f"record_calls takes ListenerSpecs or @rocket_listener functions, not {target!r}"
            )
        for spec in specs:
            rec.wrap(spec)
    return rec


def assert_published(
    source: MemoryBroker | RocketTestApp,
    topic: str,
    tag: str | None = None,
    *,
    count: int | None = None,
    payload: Any = _UNSET,
) -> list[StoredMessage]:
    """Assert that messages were stored in `topic` (of `tag`); returns them.

    Args:
        source: the broker, or a test app on it.
        count: exactly this many (default: at least one).
        payload: one of them has this payload (encoded as the template encodes it).
    """
    broker = source.broker if isinstance(source, RocketTestApp) else source
    found = broker.messages(topic, tag)
    where = f"{topic}:{tag}" if tag else topic
    if count is None and not found:
        raise AssertionError(f"nothing was published to {where}")
    if count is not None and len(found) != count:
        raise AssertionError(f"{len(found)} message(s) published to {where}, not {count}")
    if payload is not _UNSET:
        body = encode_payload(payload)
        if not any(m.body == body for m in found):
            raise AssertionError(
                f"no message of {where} has the payload {payload!r}; bodies: "
                f"{[m.body for m in found]!r}"
            )
    return found
