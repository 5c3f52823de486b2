"""Running a listener's coroutine eagerly, up to its first suspension: a listener that finishes
without waiting costs no consume-timeout timer, one that waits is resumed in place.

The helper lives in `rmqkit.remoting.eager` (the connection runs request handlers the same way);
this module keeps the name the consumers import.
"""

from __future__ import annotations

from rmqkit.remoting.eager import Suspended, start_eagerly

__all__ = ["Suspended", "start_eagerly"]
