"""Running a handler coroutine eagerly, up to its first suspension (what Python 3.12's eager
tasks do): a handler that never waits costs no timeout timer, one that does is resumed in place.

The consumers use it so that a handler that finishes at once (a no-op, a counter, an in-memory
update) does not pay for the consume-timeout timer that only a waiting handler can run into.
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
