"""Bad input never reaches the CommitLog: each refusal has a clear status and remark."""

from __future__ import annotations

import pytest

from rmqkit.errors import ConfigurationError
from rmqkit.server.store import FileMessageStore, MessageToStore, PutStatus
from rmqkit.server.store.memory_store import MemoryMessageStore

from .conftest import msg, small_settings


@pytest.fixture(params=["file", "memory"])
async def any_store(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    s = (
        FileMessageStore(small_settings(tmp_path))
        if request.param == "file"
        else MemoryMessageStore(max_message_size_bytes=16 * 1024)
    )
    await s.start()
    yield s
    await s.stop()


async def test_oversized_body_is_refused(any_store) -> None:  # type: ignore[no-untyped-def]
    r = await any_store.put_message(msg(body=b"x" * (16 * 1024 + 1)))
    assert r.status is PutStatus.MESSAGE_ILLEGAL and "maxMessageSize" in r.remark
    assert any_store.max_physical_offset == 0


@pytest.mark.parametrize("topic", ["", "has space", "t" * 128, "ünï", "a/b"])
async def test_illegal_topics_are_refused(any_store, topic: str) -> None:  # type: ignore[no-untyped-def]
    r = await any_store.put_message(MessageToStore(topic, 0, b"x"))
    assert r.status is PutStatus.MESSAGE_ILLEGAL and r.remark


async def test_properties_over_32767_bytes_are_refused(any_store) -> None:  # type: ignore[no-untyped-def]
    r = await any_store.put_message(MessageToStore("T", 0, b"x", "k\x01" + "v" * 40_000 + "\x02"))
    assert r.status is PutStatus.PROPERTIES_SIZE_EXCEEDED


async def test_negative_queue_and_empty_batch_are_refused(any_store) -> None:  # type: ignore[no-untyped-def]
    assert (await any_store.put_message(msg(queue_id=-1))).status is PutStatus.MESSAGE_ILLEGAL
    assert (await any_store.put_messages([])).status is PutStatus.MESSAGE_ILLEGAL


async def test_batch_over_the_size_limit_is_refused(any_store) -> None:  # type: ignore[no-untyped-def]
    r = await any_store.put_messages([msg(body=b"x" * 9000), msg(body=b"y" * 9000)])
    assert r.status is PutStatus.MESSAGE_ILLEGAL


async def test_a_stopped_store_refuses_writes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = FileMessageStore(small_settings(tmp_path))
    r = await s.put_message(msg())
    assert r.status is PutStatus.SERVICE_NOT_AVAILABLE


def test_segment_too_small_for_max_message_is_a_configuration_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError, match="mappedFileSizeCommitLog"):
        FileMessageStore(small_settings(tmp_path, max_message_size_bytes=60 * 1024))


def test_bad_delete_when_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="deleteWhen"):
        small_settings(tmp_path, delete_when="25")
