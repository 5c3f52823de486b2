"""suggestWhichBrokerId and the slave's redirect to its master, as RocketMQ 5.x computes them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from rmqkit.common.group import SubscriptionGroupConfig
from rmqkit.common.subscription import SubscriptionData
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.server.broker.broker import Broker
from rmqkit.server.broker.headers import Header
from rmqkit.server.broker.processors import pull
from rmqkit.server.broker.processors.pull import (
    PullProcessor,
    PullRequest,
    Suggestion,
    is_far_behind,
    suggest_broker,
)
from rmqkit.server.broker.stats import BrokerStats
from rmqkit.server.store import FileMessageStore, MessageToStore, PutStatus
from rmqkit.server.store.settings import StoreSettings
from rmqkit.testing import check_for

GROUP = SubscriptionGroupConfig("G", broker_id=3, which_broker_when_consume_slowly=2)
"""Ids no default has, so a test sees which of the two the answer took."""


# -- the rule alone ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("is_master", "slave_read", "alive", "far", "expected"),
    [
        # A master: the group's ids only with slaveReadEnable; else always itself.
        (True, False, True, False, Suggestion(0)),
        (True, False, True, True, Suggestion(0)),
        (True, True, True, False, Suggestion(3)),
        (True, True, True, True, Suggestion(2)),
        # A slave whose master is alive sends a pull that keeps up back to it...
        (False, False, True, False, Suggestion(0, to_master=True)),
        (False, True, True, False, Suggestion(0, to_master=True)),
        # ...but keeps one that is far behind, and serves everything with its master gone.
        (False, True, True, True, Suggestion(2)),
        (False, False, True, True, Suggestion(0)),
        (False, True, False, False, Suggestion(3)),
        (False, True, False, True, Suggestion(2)),
        (False, False, False, False, Suggestion(0)),
    ],
)
def test_suggest_broker(
    is_master: bool, slave_read: bool, alive: bool, far: bool, expected: Suggestion
) -> None:
    got = suggest_broker(
        GROUP, is_master=is_master, slave_read_enable=slave_read, master_alive=alive,
        far_behind=far,
    )  # fmt: skip
    assert got == expected


def test_far_behind_is_more_than_the_ratio_of_memory() -> None:
    # 40 % of 1000 bytes: 400 bytes of CommitLog past the pull are still "in memory".
    assert not is_far_behind(1400, 1000, 40, 1000)
    assert is_far_behind(1401, 1000, 40, 1000)
    assert not is_far_behind(10**9, None, 40, 1000)  # read nothing: not behind
    assert is_far_behind(1, 0, 0, 1000)  # ratio 0: any byte left is too far


def test_group_ids_round_trip_through_json() -> None:
    d = GROUP.to_json()
    assert (d["brokerId"], d["whichBrokerWhenConsumeSlowly"]) == (3, 2)
    assert SubscriptionGroupConfig.from_json(d) == GROUP
    plain = SubscriptionGroupConfig.from_json({"groupName": "P"})
    assert (plain.broker_id, plain.which_broker_when_consume_slowly) == (0, 1)


# -- the processor on a real store --------------------------------------------------------------


@dataclass
class FakeBroker:
    """What `PullProcessor._respond` reads of a Broker: settings, store, stats, master_alive."""

    store: FileMessageStore
    settings: SimpleNamespace
    master_alive: bool = True
    stats: BrokerStats = field(default_factory=BrokerStats)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FileMessageStore]:
    s = FileMessageStore(
        StoreSettings(
            store_path_root_dir=tmp_path / "store",
            mapped_file_size_commit_log_bytes=64 * 1024,
            mapped_file_size_consume_queue_bytes=20 * 50,
            max_message_size_bytes=16 * 1024,
            max_hash_slot_num=64,
            max_index_num=200,
        )
    )
    await s.start()
    for i in range(4):
        r = await s.put_message(MessageToStore("T", 0, f"m{i}".encode()))
        assert r.status is PutStatus.OK
    await check_for(lambda: s.get_max_offset("T", 0) == 4)
    yield s
    await s.stop()


def processor(
    store: FileMessageStore, *, master: bool, slave_read: bool, ratio: int, alive: bool = True
) -> PullProcessor:
    settings = SimpleNamespace(
        is_master=master, slave_read_enable=slave_read,
        store=SimpleNamespace(access_message_in_memory_max_ratio=ratio),
    )  # fmt: skip
    return PullProcessor(cast(Broker, FakeBroker(store, settings, alive)))


def pull_answer(proc: PullProcessor, offset: int, max_nums: int = 1) -> RemotingCommand:
    ext = {"consumerGroup": "G", "topic": "T", "queueId": "0", "queueOffset": str(offset),
           "maxMsgNums": str(max_nums), "sysFlag": "0"}  # fmt: skip
    cmd = RemotingCommand(RequestCode.PULL_MESSAGE, ext_fields=ext)
    req = PullRequest(Header(ext))
    req.group_config = GROUP
    req.subscription = SubscriptionData.build("T", "*")
    return proc._respond(cmd, req, proc._read(req))


def answer(r: RemotingCommand) -> tuple[int, int, int]:
    """(code, nextBeginOffset, suggestWhichBrokerId)"""
    e = r.ext_fields
    return r.code, int(e["nextBeginOffset"]), int(e["suggestWhichBrokerId"])


@pytest.fixture
def all_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with 1000 bytes of RAM: with ratio 0 every pull but the last is far behind."""
    monkeypatch.setattr(pull, "PHYSICAL_MEMORY_BYTES", 1000)


async def test_master_without_slave_reads_always_suggests_itself(
    store: FileMessageStore, all_memory: None
) -> None:
    proc = processor(store, master=True, slave_read=False, ratio=0)
    assert answer(pull_answer(proc, 0)) == (ResponseCode.SUCCESS, 1, 0)


async def test_master_with_slave_reads_suggests_the_groups_ids(
    store: FileMessageStore, all_memory: None
) -> None:
    behind = processor(store, master=True, slave_read=True, ratio=0)
    assert answer(pull_answer(behind, 0)) == (ResponseCode.SUCCESS, 1, 2)
    # The pull that reads the last record has nothing left behind it.
    assert answer(pull_answer(behind, 3)) == (ResponseCode.SUCCESS, 4, 3)
    keeping_up = processor(store, master=True, slave_read=True, ratio=100)
    assert answer(pull_answer(keeping_up, 0)) == (ResponseCode.SUCCESS, 1, 3)
    # Nothing read: not far behind, whatever the ratio; a master waits at the end.
    assert answer(pull_answer(behind, 4)) == (ResponseCode.PULL_NOT_FOUND, 4, 3)


async def test_master_corrects_an_offset_past_the_end(store: FileMessageStore) -> None:
    proc = processor(store, master=True, slave_read=True, ratio=40)
    assert answer(pull_answer(proc, 9)) == (ResponseCode.PULL_OFFSET_MOVED, 0, 3)


async def test_slave_with_master_alive_serves_found_and_redirects_misses(
    store: FileMessageStore, all_memory: None
) -> None:
    proc = processor(store, master=False, slave_read=False, ratio=100)
    assert answer(pull_answer(proc, 1)) == (ResponseCode.SUCCESS, 2, 0)
    # Caught up: back to the master at once instead of a held pull here.
    assert answer(pull_answer(proc, 4)) == (ResponseCode.PULL_RETRY_IMMEDIATELY, 4, 0)
    # Past its end (its copy may lag the master's): the offset is left as it is.
    assert answer(pull_answer(proc, 9)) == (ResponseCode.PULL_RETRY_IMMEDIATELY, 9, 0)


async def test_slave_keeps_a_pull_that_is_far_behind(
    store: FileMessageStore, all_memory: None
) -> None:
    proc = processor(store, master=False, slave_read=True, ratio=0)
    assert answer(pull_answer(proc, 0)) == (ResponseCode.SUCCESS, 1, 2)
    no_slave_reads = processor(store, master=False, slave_read=False, ratio=0)
    assert answer(pull_answer(no_slave_reads, 0)) == (ResponseCode.SUCCESS, 1, 0)


async def test_slave_with_master_gone_serves_pulls_itself(
    store: FileMessageStore, all_memory: None
) -> None:
    proc = processor(store, master=False, slave_read=True, ratio=100, alive=False)
    assert answer(pull_answer(proc, 0, 8)) == (ResponseCode.SUCCESS, 4, 3)
    assert answer(pull_answer(proc, 4)) == (ResponseCode.PULL_NOT_FOUND, 4, 3)  # may be held
    # Never PULL_OFFSET_MOVED from a slave: retry, same offset, the group's broker.
    assert answer(pull_answer(proc, 9)) == (ResponseCode.PULL_RETRY_IMMEDIATELY, 9, 3)
