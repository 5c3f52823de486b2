"""Which member of its broker a queue is pulled from (`PullNodes`, RocketMQ's
pullFromWhichNodeTable), the pull's sysFlag towards a slave, and whom a rebalance asks for the
group's members, with hand-made routes."""

from __future__ import annotations

from rmqkit.client.instance import FoundBroker
from rmqkit.client.message import MessageQueue
from rmqkit.client.rebalance import PullNodes, pull_command, topic_broker_addrs
from rmqkit.common.subscription import SubscriptionData
from rmqkit.protocol.codes import (
    PULL_COMMIT_OFFSET,
    PULL_SUBSCRIPTION,
    PULL_SUSPEND,
    RequestCode,
    ResponseCode,
)
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.route import TopicRouteData
from rmqkit.testing import check_for

from .test_instance_routes import MASTER_A, SLAVE_A1, SLAVE_A2, RoutesInstance, route

MQ = MessageQueue("T", "a", 0)
FROM_MASTER = FoundBroker(MASTER_A, False, 0)
FROM_SLAVE = FoundBroker(SLAVE_A1, True, 1)
BOTH = route(("a", {0: MASTER_A, 1: SLAVE_A1}))
SLAVE_ONLY = route(("a", {1: SLAVE_A1}))


def answer(code: int, suggest: str | None, next_offset: int = 10) -> RemotingCommand:
    ext = {"nextBeginOffset": str(next_offset), "minOffset": "0", "maxOffset": "20"}
    if suggest is not None:
        ext["suggestWhichBrokerId"] = suggest
    return RemotingCommand(RequestCode.PULL_MESSAGE).response(code, None, ext)


async def nodes_with(r: TopicRouteData) -> tuple[RoutesInstance, PullNodes]:
    inst = RoutesInstance(refresh_interval_ms=0)
    await inst.serve("T", r)
    inst.asked.clear()
    return inst, PullNodes(inst)


async def test_a_queue_is_pulled_from_the_master_until_told_otherwise() -> None:
    _, nodes = await nodes_with(BOTH)
    assert nodes.target(MQ) == FROM_MASTER


async def test_the_suggested_slave_is_pulled_next_and_the_master_when_suggested_back() -> None:
    _, nodes = await nodes_with(BOTH)
    assert not nodes.follow(MQ, answer(ResponseCode.SUCCESS, "1"), 0, FROM_MASTER)
    assert nodes.target(MQ) == FROM_SLAVE
    assert nodes.target(MessageQueue("T", "a", 1)) == FROM_MASTER  # per queue
    assert not nodes.follow(MQ, answer(ResponseCode.PULL_NOT_FOUND, "0"), 10, FROM_SLAVE)
    assert nodes.target(MQ) == FROM_MASTER


async def test_a_suggested_member_missing_from_the_route_falls_back_to_another() -> None:
    inst, nodes = await nodes_with(route(("a", {0: MASTER_A})))
    nodes.follow(MQ, answer(ResponseCode.SUCCESS, "1"), 0, FROM_MASTER)
    assert nodes.target(MQ) == FROM_MASTER
    await inst.serve("T", SLAVE_ONLY)
    nodes.follow(MQ, answer(ResponseCode.SUCCESS, "0"), 0, FROM_SLAVE)
    assert nodes.target(MQ) == FROM_SLAVE
    await inst.serve("T", route(("a", {2: SLAVE_A2})))
    assert nodes.target(MQ) == FoundBroker(SLAVE_A2, True, 2)


async def test_an_answer_without_a_suggestion_means_the_master() -> None:
    _, nodes = await nodes_with(BOTH)
    nodes.follow(MQ, answer(ResponseCode.SUCCESS, "1"), 0, FROM_MASTER)
    nodes.follow(MQ, answer(ResponseCode.SUCCESS, None), 0, FROM_SLAVE)
    assert nodes.target(MQ) == FROM_MASTER
    nodes.follow(MQ, answer(ResponseCode.SUCCESS, "1"), 0, FROM_MASTER)
    nodes.follow(MQ, answer(ResponseCode.SUCCESS, "--1"), 0, FROM_SLAVE)
    assert nodes.target(MQ) == FROM_MASTER


async def test_retry_at_a_master_the_route_lacks_without_progress_is_stuck() -> None:
    inst, nodes = await nodes_with(SLAVE_ONLY)
    retry = answer(ResponseCode.PULL_RETRY_IMMEDIATELY, "0", 10)
    assert nodes.follow(MQ, retry, 10, FROM_SLAVE)
    await check_for(lambda: inst.asked == ["T"])  # the slave knows a master: look for it


async def test_retry_at_a_missing_master_with_progress_is_not_stuck_but_refreshes() -> None:
    inst, nodes = await nodes_with(SLAVE_ONLY)
    retry = answer(ResponseCode.PULL_RETRY_IMMEDIATELY, "0", 12)
    assert not nodes.follow(MQ, retry, 10, FROM_SLAVE)
    await check_for(lambda: inst.asked == ["T"])


async def test_retry_at_a_known_member_is_followed_at_once() -> None:
    inst, nodes = await nodes_with(BOTH)
    nodes.follow(MQ, answer(ResponseCode.SUCCESS, "1"), 0, FROM_MASTER)
    retry = answer(ResponseCode.PULL_RETRY_IMMEDIATELY, "0", 10)
    assert not nodes.follow(MQ, retry, 10, FROM_SLAVE)
    assert nodes.target(MQ) == FROM_MASTER
    # A master's retry that moved the offset (messages filtered out): no wait either.
    moved = answer(ResponseCode.PULL_RETRY_IMMEDIATELY, "0", 14)
    assert not nodes.follow(MQ, moved, 10, FROM_MASTER)
    assert inst.asked == []


async def test_retry_sending_the_pull_back_to_the_same_member_is_stuck() -> None:
    inst, nodes = await nodes_with(BOTH)
    again = answer(ResponseCode.PULL_RETRY_IMMEDIATELY, "1", 10)  # a slave naming itself
    assert nodes.follow(MQ, again, 10, FROM_SLAVE)
    assert inst.asked == []  # it names a member the route has: nothing to refresh


async def test_a_slave_serving_while_its_master_is_down_triggers_no_refresh() -> None:
    inst, nodes = await nodes_with(SLAVE_ONLY)
    assert not nodes.follow(MQ, answer(ResponseCode.PULL_NOT_FOUND, "0", 10), 10, FROM_SLAVE)
    assert not nodes.follow(MQ, answer(ResponseCode.SUCCESS, "0", 14), 10, FROM_SLAVE)
    assert nodes.target(MQ) == FROM_SLAVE
    assert inst.asked == []


def test_a_pull_from_a_slave_carries_no_offset_commit() -> None:
    sub = SubscriptionData.build("T", "*")
    to_master = pull_command("G", MQ, 5, 32, sub, 7, 1000)
    to_slave = pull_command("G", MQ, 5, 32, sub, 7, 1000, from_slave=True)
    flags = PULL_SUSPEND | PULL_SUBSCRIPTION
    assert int(to_master.ext_fields["sysFlag"]) == flags | PULL_COMMIT_OFFSET
    assert int(to_slave.ext_fields["sysFlag"]) == flags
    nothing = pull_command("G", MQ, 5, 32, sub, -1, 1000)
    assert int(nothing.ext_fields["sysFlag"]) == flags


async def test_the_group_is_asked_of_masters_first_then_of_slaves_of_dead_masters() -> None:
    inst = RoutesInstance()
    await inst.serve("T", route(("b", {1: "10.0.1.2:1"}), ("a", {0: MASTER_A, 1: SLAVE_A1})))
    assert topic_broker_addrs(inst, "T") == [MASTER_A, "10.0.1.2:1"]
    assert topic_broker_addrs(inst, "unknown") == []
