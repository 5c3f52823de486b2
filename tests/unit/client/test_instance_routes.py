"""ClientInstance's broker lookup (`find_broker_addr`, RocketMQ `findBrokerAddressInSubscribe`),
its broker table across routes of several topics, and the rate-limited route refresh, with
hand-made routes served by an in-process stand-in for the NameServer."""

from __future__ import annotations

import asyncio
import itertools

from rmqkit.client.instance import ClientConfig, ClientInstance, FoundBroker
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.route import BrokerData, QueueData, TopicRouteData, encode_topic_route
from rmqkit.testing import check_for

_names = itertools.count()
MASTER_A = "10.0.0.1:10911"
SLAVE_A1 = "10.0.0.2:10911"
SLAVE_A2 = "10.0.0.3:10911"


def route(*brokers: tuple[str, dict[int, str]]) -> TopicRouteData:
    return TopicRouteData(
        queue_datas=[QueueData(name, 4, 4) for name, _ in brokers],
        broker_datas=[BrokerData("C", name, dict(addrs)) for name, addrs in brokers],
    )


class RoutesInstance(ClientInstance):
    """A ClientInstance whose NameServer is a dict of routes, recording what it was asked."""

    def __init__(self, refresh_interval_ms: int = 2_000) -> None:
        super().__init__(ClientConfig(
            "127.0.0.1:9876", f"routes{next(_names)}",
            route_refresh_on_error_min_interval_ms=refresh_interval_ms,
        ))  # fmt: skip
        self.served: dict[str, TopicRouteData] = {}
        self.asked: list[str] = []

    async def invoke_namesrv(self, cmd: RemotingCommand) -> RemotingCommand:
        topic = cmd.ext_fields["topic"]
        self.asked.append(topic)
        served = self.served.get(topic)
        if served is None:
            return cmd.response(ResponseCode.TOPIC_NOT_EXIST, f"no route of {topic}")
        return cmd.response(ResponseCode.SUCCESS, None, {}, encode_topic_route(served))

    async def serve(self, topic: str, r: TopicRouteData | None) -> None:
        """Let the NameServer answer `r` for `topic` (None: unknown) and fetch it."""
        if r is None:
            self.served.pop(topic, None)
        else:
            self.served[topic] = r
        await self.route(topic, refresh=True)


async def test_the_master_when_it_is_in_the_route() -> None:
    inst = RoutesInstance()
    await inst.serve("T", route(("a", {0: MASTER_A, 1: SLAVE_A1})))
    assert inst.find_broker_addr("a") == FoundBroker(MASTER_A, False, 0)
    assert inst.find_broker_addr("a", 1) == FoundBroker(SLAVE_A1, True, 1)
    assert inst.find_broker_addr("a", 0, only_this=True) == FoundBroker(MASTER_A, False, 0)


async def test_the_lowest_slave_when_the_master_is_down() -> None:
    inst = RoutesInstance()
    await inst.serve("T", route(("a", {2: SLAVE_A2, 1: SLAVE_A1})))
    found = inst.find_broker_addr("a")
    assert found == FoundBroker(SLAVE_A1, True, 1)
    assert found is not None and found.is_slave
    assert inst.find_broker_addr("a", 0, only_this=True) is None


async def test_a_missing_slave_falls_back_to_the_next_slave_then_to_the_master() -> None:
    inst = RoutesInstance()
    await inst.serve("T", route(("a", {0: MASTER_A, 2: SLAVE_A2})))
    assert inst.find_broker_addr("a", 1) == FoundBroker(SLAVE_A2, True, 2)  # Java: id + 1
    assert inst.find_broker_addr("a", 3) == FoundBroker(MASTER_A, False, 0)
    assert inst.find_broker_addr("a", 3, only_this=True) is None


async def test_an_unknown_broker_name_has_no_address() -> None:
    inst = RoutesInstance()
    await inst.serve("T", route(("a", {0: MASTER_A})))
    assert inst.find_broker_addr("b") is None
    assert inst.find_broker_addr("b", 1) is None


async def test_a_stale_master_in_an_older_route_of_another_topic_does_not_win() -> None:
    inst = RoutesInstance()
    await inst.serve("OLD", route(("a", {0: MASTER_A, 1: SLAVE_A1})))
    await inst.serve("NEW", route(("a", {1: SLAVE_A1})))  # the master died since
    assert inst.find_broker_addr("a") == FoundBroker(SLAVE_A1, True, 1)
    assert inst.broker_addrs() == {"a": {1: SLAVE_A1}}
    # The old topic's refresh brings the master back: the newest route decides again.
    await inst.serve("OLD", route(("a", {0: MASTER_A, 1: SLAVE_A1})))
    assert inst.find_broker_addr("a") == FoundBroker(MASTER_A, False, 0)


async def test_a_refetched_route_is_newer_than_one_fetched_after_it_first() -> None:
    inst = RoutesInstance()
    await inst.serve("X", route(("a", {0: MASTER_A, 1: SLAVE_A1})))
    await inst.serve("Y", route(("a", {0: MASTER_A, 1: SLAVE_A1})))
    await inst.serve("X", route(("a", {1: SLAVE_A1})))  # X was fetched first, refreshed last
    assert inst.find_broker_addr("a", 0, only_this=True) is None


async def test_a_dropped_route_leaves_what_the_others_say() -> None:
    inst = RoutesInstance()
    await inst.serve("T1", route(("a", {1: SLAVE_A1})))
    await inst.serve("T2", route(("a", {0: MASTER_A, 1: SLAVE_A1}), ("b", {0: "10.0.1.1:1"})))
    await inst.serve("T2", None)  # T2 deleted: T1 alone describes broker a, b is unknown
    assert inst.broker_addrs() == {"a": {1: SLAVE_A1}}
    assert inst.find_broker_addr("b") is None


async def test_broker_addrs_is_a_copy() -> None:
    inst = RoutesInstance()
    await inst.serve("T", route(("a", {0: MASTER_A})))
    inst.broker_addrs()["a"].clear()
    assert inst.find_broker_addr("a") == FoundBroker(MASTER_A, False, 0)


async def test_refresh_route_soon_is_rate_limited_per_topic() -> None:
    inst = RoutesInstance(refresh_interval_ms=60_000)
    for _ in range(3):
        inst.refresh_route_soon("T")
    inst.refresh_route_soon("U")
    await check_for(lambda: sorted(inst.asked) == ["T", "U"])
    for _ in range(3):
        await asyncio.sleep(0)
    assert sorted(inst.asked) == ["T", "U"]


async def test_refresh_route_soon_refreshes_again_after_the_interval() -> None:
    inst = RoutesInstance(refresh_interval_ms=0)
    inst.served["T"] = route(("a", {1: SLAVE_A1}))
    inst.refresh_route_soon("T")
    await check_for(lambda: inst.find_broker_addr("a") is not None)
    inst.served["T"] = route(("a", {0: MASTER_A, 1: SLAVE_A1}))
    inst.refresh_route_soon("T")
    await check_for(lambda: inst.find_broker_addr("a") == FoundBroker(MASTER_A, False, 0))
    assert inst.asked == ["T", "T"]


async def test_stop_cancels_a_refresh_in_flight() -> None:
    inst = RoutesInstance()
    outcome: list[str] = []

    async def hanging(cmd: RemotingCommand) -> RemotingCommand:
        outcome.append("asked")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        raise AssertionError("unreachable")

    inst.invoke_namesrv = hanging  # type: ignore[method-assign]
    await inst.start()
    inst.refresh_route_soon("T")
    await check_for(lambda: outcome == ["asked"])
    await inst.stop()
    assert outcome == ["asked", "cancelled"]
