"""`rmqkit admin`, mqadmin's commands, against a NameServer and a broker on loopback.

The commands run in a worker thread (each runs its own event loop, as from a shell) while the
cluster serves on the test's loop; one test runs the installed entry point as a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest
from click.testing import CliRunner, Result

from rmqkit.cli.main import cli
from rmqkit.client.admin import AdminClient
from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.protocol.record import StoredMessage
from rmqkit.testing import check_for

from .conftest import Cluster

pytestmark = pytest.mark.integration


async def admin(c: Cluster, *args: str) -> Result:
    """`rmqkit admin ARGS -n <the cluster>`; the output is stdout and stderr together."""
    return await asyncio.to_thread(CliRunner().invoke, cli, ["admin", *args, "-n", c.ns])


async def admin_ok(c: Cluster, *args: str) -> str:
    result = await admin(c, *args)
    assert result.exit_code == 0, result.output
    return result.output


async def admin_json(c: Cluster, *args: str) -> Any:
    return json.loads(await admin_ok(c, *args, "--json"))


async def test_a_topic_from_creation_to_deletion(cluster: Cluster) -> None:
    out = await admin_ok(cluster, "updateTopic", "-t", "Orders", "-r", "4", "-w", "4")
    assert f"create topic to {cluster.br} success: Orders read 4 write 4 perm RW-" in out
    cfg = cluster.broker.topics.get("Orders")
    assert cfg is not None and (cfg.read_queue_nums, cfg.write_queue_nums) == (4, 4)

    async def listed() -> bool:
        return "Orders" in await admin_json(cluster, "topicList")

    await check_for(listed, timeout=5)
    assert (await admin_ok(cluster, "topicClusterList", "-t", "Orders")).split() == [
        "DefaultCluster"
    ]
    sent = await admin_json(cluster, "sendMessage", "-t", "Orders", "-p", "hello", "-k", "k1 k2",
                            "-c", "pay", "-b", "broker-a", "-i", "2")  # fmt: skip
    assert [(s["brokerName"], s["queueId"], s["status"]) for s in sent] == [
        ("broker-a", 2, "SEND_OK")
    ]
    status = await admin_json(cluster, "topicStatus", "-t", "Orders")
    assert [(s["queueId"], s["minOffset"], s["maxOffset"]) for s in status] == [
        (0, 0, 0), (1, 0, 0), (2, 0, 1), (3, 0, 0),
    ]  # fmt: skip
    assert status[2]["lastUpdated"] > 0 and status[0]["lastUpdated"] == 0
    table = await admin_ok(cluster, "topicStatus", "-t", "Orders")
    assert table.splitlines()[0].split("  ")[0] == "#Broker Name"

    shown = await admin_ok(cluster, "queryMsgById", "-i", sent[0]["offsetMsgId"])
    assert "Message Body:        hello" in shown and "Keys:                k1 k2" in shown
    by_key = await admin_json(cluster, "queryMsgByKey", "-t", "Orders", "-k", "k2")
    assert [(m["msgId"], m["queueId"]) for m in by_key] == [(sent[0]["msgId"], 2)]
    by_id = await admin_json(cluster, "queryMsgByUniqueKey", "-t", "Orders", "-i",
                             sent[0]["msgId"])  # fmt: skip
    assert (by_id["OffsetID"], by_id["Tags"], by_id["body"]) == (
        sent[0]["offsetMsgId"], "pay", "hello",
    )  # fmt: skip
    at = await admin_json(cluster, "queryMsgByOffset", "-t", "Orders", "-b", "broker-a",
                          "-i", "2", "-o", "0")  # fmt: skip
    assert (at["MsgId"], at["Queue Offset"], at["body"]) == (sent[0]["msgId"], 0, "hello")
    nothing = await admin(cluster, "queryMsgByOffset", "-t", "Orders", "-b", "broker-a",
                          "-i", "2", "-o", "1")  # fmt: skip
    assert nothing.exit_code == 1 and "has no message at offset 1" in nothing.output
    elsewhere = await admin(cluster, "queryMsgByOffset", "-t", "Orders", "-b", "broker-z",
                            "-i", "0", "-o", "0")  # fmt: skip
    assert elsewhere.exit_code == 1 and "no broker named 'broker-z'" in elsewhere.output
    printed = await admin_json(cluster, "printMsg", "-t", "Orders")
    assert [(m["msgId"], m["queueId"], m["body"]) for m in printed] == [
        (sent[0]["msgId"], 2, "hello")
    ]
    assert await admin_json(cluster, "printMsg", "-t", "Orders", "-e", "1000") == []
    table = await admin_ok(cluster, "printMsg", "-t", "Orders", "-d", "false")
    assert "#Message ID" in table and "#Body" not in table and sent[0]["msgId"] in table
    route = json.loads(await admin_ok(cluster, "topicRoute", "-t", "Orders"))
    assert route["brokerDatas"][0]["brokerAddrs"] == {"0": cluster.br}

    out = await admin_ok(cluster, "deleteTopic", "-t", "Orders")
    assert "delete topic Orders" in out
    assert cluster.broker.topics.get("Orders") is None
    assert "Orders" not in await admin_json(cluster, "topicList")


async def test_group_settings_progress_and_offset_reset(cluster: Cluster) -> None:
    await admin_ok(cluster, "updateSubGroup", "-g", "billing", "-r", "3", "-a", "false")
    g = cluster.broker.groups.groups["billing"]
    assert (g.retry_max_times, g.notify_consumer_ids_changed_enable, g.consume_enable) == (
        3, False, True,
    )  # fmt: skip
    await admin_ok(cluster, "updateSubGroup", "-g", "billing", "-s", "false")
    g = cluster.broker.groups.groups["billing"]  # only what was given changed
    assert (g.retry_max_times, g.notify_consumer_ids_changed_enable, g.consume_enable) == (
        3, False, False,
    )  # fmt: skip

    await cluster.create_topic("Pay", 2)
    async with Producer("PG", cluster.ns, instance_name="cli-p") as p:
        for i in range(5):
            await p.send(Message("Pay", str(i).encode()))
    total = sum(cluster.broker.store.get_max_offset("Pay", q) for q in range(2))
    assert total == 5
    cluster.broker.offsets.commit("billing", "Pay", 0, 1)
    cluster.broker.offsets.commit("billing", "Pay", 1, 0)
    progress = await admin_json(cluster, "consumerProgress", "-g", "billing")
    assert sum(p["diff"] for p in progress) == 4
    assert {(p["topic"], p["queueId"]) for p in progress} == {("Pay", 0), ("Pay", 1)}
    table = await admin_ok(cluster, "consumerProgress", "-g", "billing")
    assert table.rstrip().endswith("Diff Total: 4")
    groups = await admin_json(cluster, "consumerProgress")
    assert {"group": "billing", "count": 0, "type": None, "model": None,
            "diffTotal": 4} in groups  # fmt: skip

    moved = await admin_json(cluster, "resetOffsetByTime", "-g", "billing", "-t", "Pay",
                             "-s", "now")  # fmt: skip
    ends = {q: cluster.broker.store.get_max_offset("Pay", q) for q in range(2)}
    assert {m["queueId"]: m["offset"] for m in moved} == ends
    after = await admin_json(cluster, "consumerProgress", "-g", "billing")
    assert sum(p["diff"] for p in after) == 0

    await admin_ok(cluster, "deleteSubGroup", "-g", "billing")
    assert "billing" not in cluster.broker.groups.groups


async def test_connections_of_live_consumers_and_producers(cluster: Cluster) -> None:
    await cluster.create_topic("Live", 1)

    async def handler(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        return ConsumeResult.SUCCESS

    pc = PushConsumer("watchers", cluster.ns, instance_name="cli-c")
    pc.subscribe("Live", "a || b")
    pc.register(handler)
    async with pc, Producer("senders", cluster.ns, instance_name="cli-p2") as p:
        await p.send(Message("Live", b"x"))

        async def online() -> Result | None:
            r = await admin(cluster, "consumerConnection", "-g", "watchers", "--json")
            return r if r.exit_code == 0 else None

        got = json.loads((await check_for(online, timeout=5)).output)
        assert [c["clientId"] for c in got["connectionSet"]] == [pc.instance.client_id]
        assert got["subscriptionTable"]["Live"]["subString"] == "a || b"
        assert got["messageModel"] == "CLUSTERING"
        table = await admin_ok(cluster, "consumerConnection", "-g", "watchers")
        assert "MessageModel: CLUSTERING" in table and "a || b" in table
        producers = await admin_json(cluster, "producerConnection", "-g", "senders")
        assert [(r["brokerAddr"], r["clientId"]) for r in producers] == [
            (cluster.br, p.instance.client_id)
        ]


async def test_consumer_status_and_a_message_pushed_to_one_client(cluster: Cluster) -> None:
    await cluster.create_topic("Stat", 2)
    seen: list[bytes] = []

    async def handler(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        seen.extend(m.body for m in msgs)
        return ConsumeResult.SUCCESS

    pcs = []
    for i, expr in enumerate(("*", "*", "a")):
        pc = PushConsumer(f"stat{i // 2}", cluster.ns, instance_name=f"cli-s{i}",
                          consume_from_where="CONSUME_FROM_FIRST_OFFSET")  # fmt: skip
        pc.subscribe("Stat", expr)
        pc.register(handler)
        pcs.append(pc)
    async with pcs[0], pcs[1], pcs[2], Producer("senders", cluster.ns, instance_name="cli-p3") as p:
        sent = await p.send(Message("Stat", b"hello"))
        await check_for(lambda: len(seen) >= 1, timeout=5)

        async def both_online() -> bool:
            r = await admin(cluster, "consumerConnection", "-g", "stat0", "--json")
            return r.exit_code == 0 and len(json.loads(r.output)["connectionSet"]) == 2

        await check_for(both_online, timeout=5)
        table = await admin_ok(cluster, "consumerStatus", "-g", "stat0")
        assert pcs[0].instance.client_id in table and pcs[1].instance.client_id in table
        assert "Same subscription in the same group of consumer" in table
        one = await admin_ok(cluster, "consumerStatus", "-g", "stat0", "-i",
                             pcs[0].instance.client_id)  # fmt: skip
        for section in ("#Consumer Properties#", "#Consumer Subscription#", "#Consumer Offset#",
                        "#Consumer MQ Detail#", "#Consumer RT&TPS#"):  # fmt: skip
            assert section in one
        assert "PROP_CONSUME_TYPE" in one and "CONSUME_PASSIVELY" in one
        everything = await admin_json(cluster, "consumerStatus", "-g", "stat0")
        held = [q for info in everything.values() for q in info["mqTable"] if q["topic"] == "Stat"]
        assert sorted(q["queueId"] for q in held) == [0, 1]  # the two clients share the queues
        # The third client's subscription differs from the group's other (a group of one here);
        # mixing them in one group is what the warning is for.
        pushed = await admin_json(cluster, "queryMsgById", "-i", sent.offset_msg_id, "-g", "stat1",
                                  "-d", pcs[2].instance.client_id)  # fmt: skip
        assert pushed["ConsumeMessageDirectlyResult"]["consumeResult"] == "CR_SUCCESS"
        text = await admin_ok(cluster, "queryMsgByUniqueKey", "-i", sent.msg_id, "-t", "Stat",
                              "-g", "stat1", "-d", pcs[2].instance.client_id)  # fmt: skip
        assert "Consume Result:      CR_SUCCESS" in text
        assert seen.count(b"hello") >= 3  # consumed by its group, and pushed twice
        half = await admin(cluster, "queryMsgById", "-i", sent.offset_msg_id, "-g", "stat1")
        assert half.exit_code == 2 and "-g and -d go together" in half.output


async def test_cluster_broker_status_config_and_kv(cluster: Cluster) -> None:
    rows = await admin_json(cluster, "clusterList")
    assert [(r["cluster"], r["brokerName"], r["brokerId"], r["addr"], r["version"])
            for r in rows] == [("DefaultCluster", "broker-a", 0, cluster.br, "rmqkit")]  # fmt: skip
    assert (rows[0]["inTps"], rows[0]["inTotalToday"], rows[0]["hour"]) == (0.0, 0, 0.0)
    await cluster.create_topic("Counted", 1)
    async with Producer("PG", cluster.ns, instance_name="cli-count") as p:
        for i in range(3):
            await p.send(Message("Counted", str(i).encode()))
    rows = await admin_json(cluster, "clusterList", "-m")
    assert (rows[0]["inTotalToday"], rows[0]["outTotalToday"], rows[0]["inTotalYest"]) == (3, 0, 0)
    assert rows[0]["inTps"] > 0 and rows[0]["hour"] >= 0 and 0 <= rows[0]["space"] < 1
    table = (await admin_ok(cluster, "clusterList", "-m")).splitlines()
    assert table[0].split() == ["#Cluster", "Name", "#Broker", "Name", "#BID", "#InTotalYest",
                                "#OutTotalYest", "#InTotalToday", "#OutTotalToday"]  # fmt: skip
    status = await admin_json(cluster, "brokerStatus", "-b", cluster.br)
    assert status[cluster.br]["brokerName"] == "broker-a"
    config = (await admin_json(cluster, "getBrokerConfig", "-c", "DefaultCluster"))[cluster.br]
    assert config["listenPort"] == str(cluster.broker.port)
    assert config["brokerName"] == "broker-a" and config["flushDiskType"] == "ASYNC_FLUSH"
    assert config["storePathCommitLog"] == str(cluster.broker.settings.store.commit_log_dir)
    assert config["haListenPort"] == str(cluster.broker.ha_port)

    await admin_ok(cluster, "updateKvConfig", "-s", "ORDER_TOPIC_CONFIG", "-k", "Seq",
                   "-v", "broker-a:4")  # fmt: skip
    async with AdminClient(cluster.ns) as a:
        assert await a.get_kv("ORDER_TOPIC_CONFIG", "Seq") == {"Seq": "broker-a:4"}
        await admin_ok(cluster, "deleteKvConfig", "-s", "ORDER_TOPIC_CONFIG", "-k", "Seq")
        assert await a.get_kv("ORDER_TOPIC_CONFIG", "Seq") == {}


async def test_failures_are_one_line_with_exit_status_one(cluster: Cluster) -> None:
    missing = await admin(cluster, "topicStatus", "-t", "Nope")
    assert missing.exit_code == 1 and "TOPIC_NOT_EXIST" in missing.output
    assert "Traceback" not in missing.output
    offline = await admin(cluster, "consumerConnection", "-g", "nobody")
    assert offline.exit_code == 1 and "CONSUMER_NOT_ONLINE (206)" in offline.output
    uniq = await admin(cluster, "queryMsgById", "-i", "7F0000012C115BAF96BE6FE6DE37EFA4")
    assert uniq.exit_code == 2 and "queryMsgByUniqueKey" in uniq.output
    no_cluster = await admin(cluster, "updateTopic", "-t", "T", "-c", "NoSuchCluster")
    assert no_cluster.exit_code == 1 and "no master broker in cluster 'NoSuchCluster'" in (
        no_cluster.output
    )
    half = await admin(cluster, "topicList", "--access-key", "k")
    assert half.exit_code == 2 and "go together" in half.output
    down = await asyncio.to_thread(
        CliRunner().invoke, cli, ["admin", "clusterList", "-n", "127.0.0.1:1"]
    )
    assert down.exit_code == 1 and "cannot connect to 127.0.0.1:1" in down.output
    assert "Traceback" not in down.output


async def test_names_match_in_any_case_and_the_entry_point_runs(cluster: Cluster) -> None:
    assert "broker-a" in await admin_ok(cluster, "clusterlist")
    assert "broker-a" in await admin_ok(cluster, "CLUSTERLIST")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from rmqkit.cli.main import main; main()",
        "admin", "clusterList", "--json", env={"NAMESRV_ADDR": cluster.ns, "PATH": ""},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert [r["addr"] for r in json.loads(out)] == [cluster.br]
