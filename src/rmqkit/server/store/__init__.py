"""The message store: CommitLog, ConsumeQueue, IndexFile, dispatch, flush, recovery, retention."""

from rmqkit.server.store.filter import MessageFilter, TagFilter
from rmqkit.server.store.message import MessageToStore
from rmqkit.server.store.message_store import FileMessageStore
from rmqkit.server.store.results import GetResult, GetStatus, PutResult, PutStatus, QueryResult
from rmqkit.server.store.settings import StoreSettings
from rmqkit.server.store.store_api import MessageStore

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
