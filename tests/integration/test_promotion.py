"""Promoting a slave by hand, as docs/operations.md describes: the master's machine is lost, the
slave's store is started as the master (brokerId 0), and an empty store becomes the new slave."""

from __future__ import annotations

import pytest

from rmqkit.protocol.codes import ResponseCode
from rmqkit.server.broker.broker import Broker
from rmqkit.server.ha import HAService
from rmqkit.testing import check_for
from tests.integration.test_replication import Pair, pair, queues, segments, settings

pytestmark = pytest.mark.integration
__all__ = ["pair"]  # the fixture, imported for this module's tests


async def test_a_promoted_slave_serves_what_it_copied_and_continues_the_queues(pair: Pair) -> None:
    master = await pair.start_master("SYNC_MASTER")
    await pair.start_slave()
    await check_for(lambda: isinstance(master.ha, HAService) and master.ha.slave_count == 1)
    await pair.send_many(0, 80)
    await pair.caught_up()
    assert pair.master is not None and pair.slave is not None
    before = queues(pair.master.store)

    await pair.master.stop()  # the master's machine is gone
    pair.master = None
    await pair.stop_slave()

    promoted = Broker(settings(pair.root / "slave", pair.ns, "ASYNC_MASTER"))
    await promoted.start()
    pair.master = promoted
    assert promoted.settings.broker_id == 0 and promoted.settings.is_master
    assert queues(promoted.store) == before

    # New sends continue every queue where the old master left it: no offset is handed out twice.
    for i in range(80, 120):
        r = await pair.send(i)
        assert r.code == ResponseCode.SUCCESS, (r.code, r.remark)
        q = int(r.ext_fields["queueId"])
        assert int(r.ext_fields["queueOffset"]) >= len(before[q])
    after = queues(promoted.store)
    assert [len(rows) for rows in after.values()] == [30] * 4
    assert all(after[q][: len(before[q])] == before[q] for q in range(4))

    # The old machine comes back with an empty store, as the new slave.
    slave = await pair.start_slave_at("old-master-machine")
    await pair.caught_up()
    assert segments(slave.store) == segments(promoted.store)
    assert queues(slave.store) == after
