"""Running a coroutine eagerly, up to its first suspension, as Python 3.12's eager tasks do.

A request handler (RocketMQ's `NettyRequestProcessor`) or a consumer's listener that finishes
without waiting is answered at once and costs no task and no timer; one that waits is resumed in
place, in a task, by `Suspended`. `Connection` uses it for requests from the peer, the push
consumer for listener calls.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Suspended(Generic[T]):
    """The rest of a coroutine that was run up to its first suspension.

    Awaited in a task, it hands what the coroutine yielded (the future it waits on) to the task
    and resumes the coroutine as the task resumes it: `yield from`, minus the first step.
    Cancellation (a timeout) is thrown into the coroutine as it would be by a plain `await`.

    Args:
        coro: the coroutine, already started (`coro.send(None)` returned `first`).
        first: what its first step yielded.
    """

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, T], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, None, T]:
        coro, value = self._coro, self._first
        while True:
            try:
                yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    value = coro.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
            else:
                try:
                    value = coro.send(None)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]


def start_eagerly(coro: Coroutine[Any, Any, T]) -> tuple[bool, T | Suspended[T]]:
    """Run `coro` up to its first suspension.

    Returns:
        `(True, its result)` when it finished without waiting, else `(False, Suspended)` to
        await in a task for the rest. An exception it raises before waiting propagates.
    """
    try:
        first = coro.send(None)
    except StopIteration as done:
        return True, done.value
    return False, Suspended(coro, first)
