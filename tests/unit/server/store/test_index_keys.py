"""`KeyReader`: a record's index keys read from its bytes hash as the reput's requests do."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmqkit.common.properties import encode_properties
from rmqkit.protocol.codes import SysFlag
from rmqkit.protocol.record import pack_host
from rmqkit.server.store import FileMessageStore, MessageToStore
from rmqkit.server.store.dispatch import DispatchRequest, ScanKind, scan_record
from rmqkit.server.store.index_file import Entry
from rmqkit.server.store.index_keys import OTHER, READ, KeyReader
from rmqkit.server.store.index_service import IndexService

from .conftest import small_settings

V6 = pack_host("::1", 4000)
V4 = pack_host("10.0.0.7", 4000)
PROPS = [
    {"KEYS": "a b  c", "UNIQ_KEY": "U1"},
    {"XKEYS": "not-a-key", "KEYS": "k2"},  # a name that ends in KEYS
    {"UNIQ_KEY": "U3"},
    {"TAGS": "t"},  # nothing to index
    {"KEYS": "ключ", "UNIQ_KEY": "U5"},  # UTF-8
    {"KEYS": "rolled-back"},
]


@pytest.mark.parametrize("store_host", [("127.0.0.1", 10911), ("::1", 10911)])
async def test_keys_read_from_bytes_hash_as_dispatch_does(
    tmp_path: Path, store_host: tuple[str, int]
) -> None:
    s = FileMessageStore(small_settings(tmp_path, message_index_enable=False), store_host)
    await s.start()
    for i, props in enumerate(PROPS * 3):
        flag = int(SysFlag.TRANSACTION_ROLLBACK) if "rolled-back" in props.values() else 0
        m = MessageToStore(
            f"T{i % 2}", 0, b"body" * i, encode_properties(props), sys_flag=flag,
            born_host=V6 if i % 3 else V4,
        )  # fmt: skip
        assert (await s.put_message(m)).stored
    end = s.commit_log.max_offset
    mf = s.commit_log.queue.files[0]
    with memoryview(mf.mm) as view:
        requests: list[DispatchRequest] = []
        pos = 0
        while pos < end:
            scan = scan_record(view, pos, check_crc=False)
            assert scan.kind is ScanKind.RECORD and scan.request is not None
            requests.append(scan.request)
            pos += scan.size
        want: list[Entry] = []
        svc = IndexService(tmp_path / "unused", 7, 21)
        svc._put = want.extend  # type: ignore[method-assign]  # what dispatch would put
        svc.dispatch(requests)

        got: list[Entry] = []
        reader = KeyReader()
        assert reader.read(mf.mm, 0, end, 10**6, 0, got, 0) == (end, len(requests), READ)
        assert got == want and len(got) == 3 * (4 + 1 + 1 + 2)
        skipped: list[Entry] = []
        second = requests[1].commit_log_offset
        assert reader.read(mf.mm, 0, end, 3, 0, skipped, second)[:2] == (
            requests[3].commit_log_offset,
            3,
        )
        assert skipped == [e for e in want if second <= e[1] < requests[3].commit_log_offset]
        pos, n, why = reader.read(mf.mm, end, len(view), 10, 0, [], 0)
        assert (pos, n, why) == (end, 0, OTHER)  # zeros: scan_record tells what they are
    await s.stop()
