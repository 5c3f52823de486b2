"""Unresolved half messages survive a broker restart (clean and SIGKILL) and are resolved by
check-back; decisions made before the stop are neither lost nor repeated.

Round 1 (`rmqkit serve`, transactionTimeOut=600 ms): a TransactionProducer sends, interleaved,
messages it commits (`pc`), rolls back (`pr`) and leaves UNKNOWN for later commit (`uc`) or later
rollback (`ur`); its checker answers UNKNOWN, so the `u` ones stay unresolved through a few
checks. Once the commits are visible and every decision is in the op topic, the broker stops.
With SIGKILL a second round starts it again with a checker that now decides (COMMIT for `uc`,
ROLLBACK for `ur`) and kills it once some `uc` have been committed. A broker in this process
then finishes with the same checker.

Afterwards `pc` and `uc` are in their topic exactly once each, `pr` and `ur` never, and no
checker was ever asked about a message decided before the stop.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from rmqkit.client.message import Message
from rmqkit.client.transaction import TransactionProducer, TransactionState
from rmqkit.common.names import TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC
from rmqkit.protocol.record import StoredMessage
from rmqkit.remoting.client import RemotingClient
from rmqkit.server.broker.broker import Broker
from rmqkit.server.namesrv.namesrv import NameServer, NameServerSettings
from rmqkit.server.properties import load_broker_settings
from rmqkit.testing import check_for
from tests.crash.serve import (
    Stop,
    max_offset,
    read_topic,
    start_broker,
    stop_broker,
    tail,
    topic_size,
    write_conf,
)

pytestmark = pytest.mark.crash

TOPIC = "RestartTx"
GROUP = "RestartTxPG"
EACH = 8
LOCAL = {
    "pc": TransactionState.COMMIT,
    "pr": TransactionState.ROLLBACK,
    "uc": TransactionState.UNKNOWN,
    "ur": TransactionState.UNKNOWN,
}


class Checker:
    """Answers the broker's checks; records what it was asked about."""

    def __init__(self, decide: bool) -> None:
        self.decide = decide
        self.asked: list[bytes] = []

    def __call__(self, m: StoredMessage) -> TransactionState:
        self.asked.append(m.body)
        if not self.decide or not m.body.startswith(b"u"):
            return TransactionState.UNKNOWN
        return TransactionState.COMMIT if m.body.startswith(b"uc") else TransactionState.ROLLBACK


def producer(nsaddr: str, checker: Checker, name: str) -> TransactionProducer:
    return TransactionProducer(GROUP, nsaddr, checker=checker, instance_name=name)


async def online(p: TransactionProducer) -> None:
    """Make the broker know the producer before it sends anything (as a send would)."""
    await p.publish_info(TOPIC)
    await p.instance.heartbeat_all()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_half_messages_survive_a_restart_and_decisions_are_kept(
    tmp_path: Path, how: Stop
) -> None:
    log = tmp_path / "broker.err"
    checkers: list[Checker] = []
    async with NameServer(NameServerSettings(host="127.0.0.1", listen_port=0)) as ns:
        conf = write_conf(
            tmp_path, ns.port,
            "transactionTimeOut=600\ntransactionCheckInterval=200\ntransactionCheckMax=200\n",
        )  # fmt: skip
        nsaddr = f"127.0.0.1:{ns.port}"

        # Round 1: send; decide half of them; the rest stay unresolved through a few checks.
        proc, addr = await start_broker(conf, log)
        try:
            await check_for(lambda: ns.routes.cluster_info().broker_addr_table, timeout=10)
            undecided = Checker(decide=False)
            checkers.append(undecided)
            async with producer(nsaddr, undecided, "r1") as p, RemotingClient() as client:
                for i in range(EACH):
                    for kind in ("uc", "pc", "ur", "pr"):
                        state = LOCAL[kind]
                        await p.send_in_transaction(
                            Message(TOPIC, f"{kind}-{i}".encode()), lambda m, s, st=state: st
                        )
                await check_for(
                    lambda: undecided.asked, timeout=10,
                    message=f"the broker never checked the undecided ones: {tail(log)}",
                )  # fmt: skip
                assert await max_offset(client, addr, TRANS_OP_HALF_TOPIC, 0) == 2 * EACH
                assert await topic_size(client, addr, TOPIC) == EACH
                halves = await max_offset(client, addr, TRANS_HALF_TOPIC, 0)
        finally:
            await stop_broker(proc, how, log)
        assert halves > 4 * EACH  # checked copies were re-queued

        # Round 2 (SIGKILL): a deciding checker; killed in the middle of resolving.
        if how == "SIGKILL":
            proc, addr = await start_broker(conf, log)
            try:
                deciding = Checker(decide=True)
                checkers.append(deciding)
                async with producer(nsaddr, deciding, "r2") as p, RemotingClient() as client:
                    await online(p)
                    for _ in range(500):
                        if await topic_size(client, addr, TOPIC) > EACH:
                            break
                        await asyncio.sleep(0.02)
            finally:
                await stop_broker(proc, "SIGKILL", log)

        # Final: a broker in this process and a deciding checker finish the work.
        deciding = Checker(decide=True)
        checkers.append(deciding)
        async with Broker(load_broker_settings(conf, listen_port=0)) as broker:
            tx = broker.transactions
            async with producer(nsaddr, deciding, "r3") as p:
                await online(p)
                await check_for(
                    lambda: sum(m.body.startswith(b"uc") for m in read_topic(broker, TOPIC))
                    >= EACH, timeout=20,
                    message=f"unresolved commits never arrived; broker log: {tail(log)}",
                )  # fmt: skip
                # Every half message, and every checked copy, resolved and passed.
                await check_for(
                    lambda: tx.half_offset == broker.store.get_max_offset(TRANS_HALF_TOPIC, 0),
                    timeout=20, message="the check never reached the end of the half queue",
                )  # fmt: skip
            got = Counter(m.body for m in read_topic(broker, TOPIC))
    want = {f"{k}-{i}".encode() for k in ("pc", "uc") for i in range(EACH)}
    assert set(got) == want, f"missing {want - set(got)}, unexpected {set(got) - want}"
    assert all(n == 1 for n in got.values()), f"committed more than once: {got}"
    for c in checkers:
        wrongly = {b for b in c.asked if b.startswith(b"p")}
        assert not wrongly, f"a decided message was checked after the restart: {wrongly}"
