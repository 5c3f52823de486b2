"""What a listener function asks for, read once from its signature: the payload type (or a
batch of them), the `MessageMeta`, the raw `StoredMessage`; everything else is left to defaults
(dependency-injector's `Provide[...]` among them)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rmqkit.errors import ConfigurationError
from rmqkit.protocol.record import StoredMessage
from rmqkit.starter.container import Scoped
from rmqkit.starter.meta import MessageMeta
from rmqkit.starter.payload import PayloadType

if TYPE_CHECKING:
    from rmqkit.starter.listener import ListenerSpec


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    target = inspect.unwrap(func)
    try:
        return typing.get_type_hints(target, include_extras=False)
    except Exception as exc:  # NameError for a forward reference, TypeError for odd objects
        raise ConfigurationError(
            f"cannot read the annotations of {getattr(func, '__qualname__', func)}: {exc}"
        ) from exc


def _params(func: Callable[..., Any]) -> list[inspect.Parameter]:
    params = list(inspect.signature(func).parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return params


def _list_item(annotation: Any) -> Any | None:
    """T for `list[T]` / `List[T]` / `Sequence[T]`, else None."""
    origin = typing.get_origin(annotation)
    if origin in (list, typing.List, tuple) or (  # noqa: UP006
        origin is not None and getattr(origin, "__name__", "") in ("Sequence", "Iterable")
    ):
        args = typing.get_args(annotation)
        return args[0] if args else Any
    return None


def takes_batch(func: Callable[..., Any]) -> bool:
    """Whether the function's first parameter is annotated `list[T]` (a batch handler)."""
    params = _params(func)
    if not params:
        return False
    ann = _hints(func).get(params[0].name, inspect.Parameter.empty)
    return _list_item(ann) is not None and ann is not bytes


@dataclass(frozen=True, slots=True)
class HandlerSignature:
    """How to call one listener function.

    Attributes:
        payload: converts a body into the first parameter (None: the first parameter is meta).
        batch: the first parameter is a list of payloads.
        meta_param / raw_param: names of the parameters that want `MessageMeta` / the
            `StoredMessage` (lists of them for a batch handler), or None.
        is_async: a coroutine function (else it runs in a worker thread).
    """

    payload: PayloadType | None
    payload_param: str | None
    batch: bool
    meta_param: str | None
    raw_param: str | None
    is_async: bool
    scoped: tuple[tuple[str, Scoped], ...] = ()

    @classmethod
    def of(cls, spec: ListenerSpec) -> HandlerSignature:
        """Read the signature of a listener's function.

        Raises:
            ConfigurationError: a parameter without a default that the listener cannot fill.
        """
        func = spec.func
        hints = _hints(func)
        params = _params(func)
        where = f"@rocket_listener {spec.name}"
        if not params:
            raise ConfigurationError(f"{where}: the handler must take at least the payload")
        payload: PayloadType | None = None
        payload_param: str | None = None
        meta_param = raw_param = None
        batch = False
        scoped = tuple((p.name, p.default) for p in params if isinstance(p.default, Scoped))
        for i, p in enumerate(params):
            ann = hints.get(p.name, inspect.Parameter.empty)
            item = _list_item(ann)
            kind = item if item is not None else ann
            if kind is MessageMeta:
                meta_param = p.name
            elif kind is StoredMessage:
                raw_param = p.name
            elif i == 0:
                batch = item is not None
                try:
                    payload = PayloadType(item if batch else ann)
                except TypeError as exc:
                    raise ConfigurationError(f"{where}: {exc}") from exc
                payload_param = p.name
            elif p.default is inspect.Parameter.empty and p.kind not in (
                p.VAR_POSITIONAL, p.VAR_KEYWORD
            ):  # fmt: skip
                raise ConfigurationError(
                    f"{where}: parameter {p.name!r} has no default and is not the payload, "
                    "MessageMeta or StoredMessage; give it a default or Provide[...] it"
                )
        if batch and spec.consume_mode == "ORDERLY":
            raise ConfigurationError(f"{where}: ORDERLY listeners take one message at a time")
        if not batch and spec.batch_size > 1:
            raise ConfigurationError(
                f"{where}: batch_size={spec.batch_size} needs a handler taking list[T]"
            )
        is_async = inspect.iscoroutinefunction(inspect.unwrap(func)) or (
            inspect.iscoroutinefunction(func)
        )
        return cls(payload, payload_param, batch, meta_param, raw_param, is_async, scoped)
