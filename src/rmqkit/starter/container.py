"""dependency-injector integration: app-wide resources and per-message scopes.

Every `providers.Resource` of the container is set up before the first consumer starts and torn
down after the last one stops. A per-message resource (a database session, a unit of work) is a
parameter defaulting to `Scoped(Container.session)`: for each call the starter asks the provider
for a fresh object and, when it is an async (or plain) context manager or an async generator,
enters it before the call and leaves it after, seeing the handler's exception (so a session can
commit on success and roll back on failure). Unlike dependency-injector's `Closing` marker on a
shared `Resource`, this is safe with many messages in flight at once.

```python
class Container(containers.DeclarativeContainer):
    pool = providers.Resource(make_pool)                 # one per app
    session = providers.Factory(open_session, pool)      # an async generator: one per message

@rocket_listener(topic="order", group="billing")
async def bill(order: Order, s: Session = Scoped(Container.session)) -> None: ...
```
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator
from typing import Any

from dependency_injector import providers


class Scoped:
    """A parameter default: a fresh value from `provider` for each listener call.

    Args:
        provider: a dependency-injector provider (resolved against the app's container, so
            overrides apply) or any callable.
    """

    __slots__ = ("provider",)

    def __init__(self, provider: Any) -> None:
        if not callable(provider):
            raise TypeError(f"Scoped needs a provider or a callable, not {provider!r}")
        self.provider = provider

    def __repr__(self) -> str:
        return f"Scoped({self.provider!r})"


def resolve(provider: Any, container: Any) -> Any:
    """The container instance's copy of a provider declared on its class (identity otherwise)."""
    if container is None:
        return provider
    cls_providers = getattr(type(container), "cls_providers", {})
    for name, p in cls_providers.items():
        if p is provider:
            return container.providers[name]
    return provider


@contextlib.asynccontextmanager
async def enter_scoped(factory: Any) -> AsyncIterator[Any]:
    """Make one scoped value and clean it up afterwards, whatever shape the factory returns."""
    obj = factory()
    if inspect.isawaitable(obj) and not hasattr(obj, "__aenter__"):
        obj = await obj
    if inspect.isasyncgen(obj):
        async with contextlib.asynccontextmanager(lambda: obj)() as value:
            yield value
    elif inspect.isgenerator(obj):
        with contextlib.contextmanager(lambda: obj)() as value:
            yield value
    elif hasattr(obj, "__aenter__"):
        async with obj as value:
            yield value
    elif hasattr(obj, "__enter__"):
        with obj as value:
            yield value
    else:
        yield obj


def app_resources(container: Any) -> list[Any]:
    """The container's `Resource` providers, in declaration order."""
    return list(container.traverse(types=[providers.Resource]))


async def init_resources(resources: list[Any]) -> None:
    """Set up resources in order (awaiting async ones)."""
    for p in resources:
        result = p.init()
        if inspect.isawaitable(result):
            await result


async def shutdown_resources(resources: list[Any]) -> None:
    """Tear resources down in reverse order (awaiting async ones)."""
    for p in reversed(resources):
        result = p.shutdown()
        if inspect.isawaitable(result):
            await result
