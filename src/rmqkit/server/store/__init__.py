"""The message store: CommitLog, ConsumeQueue, IndexFile, dispatch, flush, recovery, retention.

The names below load their modules when first used, so a process that needs one module of the
store (the index builder, `index_builder.py`) does not load all of it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rmqkit.server.store.filter import MessageFilter as MessageFilter
    from rmqkit.server.store.filter import TagFilter as TagFilter
    from rmqkit.server.store.message import MessageToStore as MessageToStore
    from rmqkit.server.store.message_store import FileMessageStore as FileMessageStore
    from rmqkit.server.store.results import GetResult as GetResult
    from rmqkit.server.store.results import GetStatus as GetStatus
    from rmqkit.server.store.results import PutResult as PutResult
    from rmqkit.server.store.results import PutStatus as PutStatus
    from rmqkit.server.store.results import QueryResult as QueryResult
    from rmqkit.server.store.settings import StoreSettings as StoreSettings
    from rmqkit.server.store.store_api import MessageStore as MessageStore

_HOMES = {
    "MessageFilter": "filter",
    "TagFilter": "filter",
    "MessageToStore": "message",
    "FileMessageStore": "message_store",
    "GetResult": "results",
    "GetStatus": "results",
    "PutResult": "results",
    "PutStatus": "results",
    "QueryResult": "results",
    "StoreSettings": "settings",
    "MessageStore": "store_api",
}

__all__ = [
    "FileMessageStore",
    "GetResult",
    "GetStatus",
    "MessageFilter",
    "MessageStore",
    "MessageToStore",
    "PutResult",
    "PutStatus",
    "QueryResult",
    "StoreSettings",
    "TagFilter",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
