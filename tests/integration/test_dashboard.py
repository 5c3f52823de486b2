"""The web dashboard against a NameServer and a broker on loopback, through real HTTP.

Each test starts a `Dashboard` on 127.0.0.1, port 0, and drives it with an HTTP client as a
browser would: pages, form POSTs with the page's token, and the JSON API.
"""

from __future__ import annotations

import asyncio
import base64
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from rmqkit.client.admin import AdminClient
from rmqkit.client.instance import ClientConfig, ClientInstance
from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.client.rebalance import consumer_entry
from rmqkit.common.subscription import SubscriptionData
from rmqkit.dashboard import Dashboard
from rmqkit.protocol.codes import RequestCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.heartbeat import HeartbeatData
from rmqkit.protocol.record import StoredMessage
from rmqkit.testing import check_for

from .conftest import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture
async def dash(cluster: Cluster) -> AsyncIterator[Dashboard]:
    d = Dashboard(cluster.ns, sample_interval_s=0.05)
    await d.start("127.0.0.1", 0)
    try:
        yield d
    finally:
        await d.stop()


@pytest.fixture
async def http(dash: Dashboard) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=dash.url) as s:
        yield s


async def page(http: aiohttp.ClientSession, path: str, status: int = 200) -> str:
    async with http.get(path) as r:
        text = await r.text()
        assert r.status == status, text
        return text


async def post(
    http: aiohttp.ClientSession, path: str, form: dict[str, str], token: str, status: int = 200
) -> str:
    async with http.post(path, data={"_token": token, **form}) as r:
        text = await r.text()
        assert r.status == status, text
        return text


async def api(http: aiohttp.ClientSession, path: str, **params: str) -> Any:
    async with http.get(path, params=params) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def basic(user: str, password: str) -> dict[str, str]:
    """An HTTP basic authentication header (RFC 7617)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def token_of(html: str) -> str:
    found = re.search(r'name="_token" value="([^"]+)"', html)
    assert found, "the page has no form token"
    return found.group(1)


async def test_the_overview_lists_the_broker_with_its_rates_and_a_chart(
    cluster: Cluster, dash: Dashboard, http: aiohttp.ClientSession
) -> None:
    await cluster.create_topic("Seen", 1)
    async with Producer("PG", cluster.ns, instance_name="dash-p") as p:
        for i in range(5):
            await p.send(Message("Seen", str(i).encode()))
    await check_for(lambda: len(dash.history.series.get(cluster.br, ())) >= 2, timeout=10)
    html = await page(http, "/")
    assert cluster.br in html and "broker-a" in html and "DefaultCluster" in html
    assert "<polyline" in html  # the chart of the sampled rates
    brokers = await (await http.get("/api/cluster")).json()
    assert [(b["brokerName"], b["addr"], b["inTotalToday"]) for b in brokers] == [
        ("broker-a", cluster.br, 5)
    ]
    assert brokers[0]["runtime"]["msgPutTotalTodayNow"] == "5"
    broker = await page(http, f"/brokers/{cluster.br}")
    assert "putTps" in broker and "brokerClusterName" in broker


async def test_a_topic_is_created_shown_sent_to_and_deleted(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    listing = await page(http, "/topics")
    token = token_of(listing)
    shown = await post(http, "/topics", {"topic": "Orders", "read_queues": "2",
                                         "write_queues": "2", "perm": "RW"}, token)  # fmt: skip
    assert "Topic Orders" in shown  # redirected to the topic's page
    cfg = cluster.broker.topics.get("Orders")
    assert cfg is not None and (cfg.read_queue_nums, cfg.write_queue_nums) == (2, 2)
    assert "Orders" in await page(http, "/topics")
    sent = await post(http, "/topics/Orders/send",
                      {"body": "hello <b>", "tags": "paid", "keys": "order-1"}, token)  # fmt: skip
    assert "SEND_OK" in sent
    offset_id = re.search(r'href="/messages/([0-9A-F]+)"', sent)
    assert offset_id
    message = await page(http, f"/messages/{offset_id.group(1)}")
    assert "hello &lt;b&gt;" in message and "order-1" in message  # escaped, never raw HTML
    details = await (await http.get("/api/topics/Orders")).json()
    assert details["messages"] == 1 and len(details["status"]) == 2
    assert details["brokers"][0]["readQueues"] == 2

    refused = await post(http, "/topics/Orders/delete", {"confirm": "Order"}, token, status=400)
    assert "to confirm its deletion" in refused and cluster.broker.topics.get("Orders")
    await post(http, "/topics/Orders/delete", {"confirm": "Orders"}, token)
    assert cluster.broker.topics.get("Orders") is None


async def test_messages_are_found_by_key_by_id_and_by_offset_id(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    await cluster.create_topic("Pay", 2)
    async with Producer("PG", cluster.ns, instance_name="dash-p2") as p:
        r = await p.send(Message("Pay", b"x", keys=["k-1"], tags="t"))
        await p.send(Message("Pay", b"y", keys=["k-2"]))
    by_key = await api(http, "/api/messages", topic="Pay", key="k-1")
    assert [(m["msgId"], m["body"], m["tags"]) for m in by_key["messages"]] == [
        (r.msg_id, "x", "t")
    ]
    by_id = await api(http, "/api/messages", topic="Pay", id=r.msg_id)
    assert [m["offsetMsgId"] for m in by_id["messages"]] == [r.offset_msg_id]
    html = await page(http, f"/messages?id={r.offset_msg_id}")
    assert r.msg_id in html
    none = await page(http, "/messages?topic=Pay&key=nothing")
    assert "No message found" in none
    bad = await page(http, "/messages?id=not-an-id", status=400)
    assert "is not an offset message id" in bad
    missing = await page(http, "/messages?topic=Nope&key=k", status=404)
    assert "No such topic" in missing


async def test_a_group_is_configured_inspected_reset_and_deleted(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    token = token_of(await page(http, "/groups"))
    await post(http, "/groups", {"group": "billing", "retry_max_times": "3",
                                 "consume_enable": "on"}, token)  # fmt: skip
    g = cluster.broker.groups.groups["billing"]
    assert (g.retry_max_times, g.consume_enable, g.consume_broadcast_enable) == (3, True, False)
    await cluster.create_topic("Bill", 2)
    async with Producer("PG", cluster.ns, instance_name="dash-p3") as p:
        for i in range(4):
            await p.send(Message("Bill", str(i).encode()))
    cluster.broker.offsets.commit("billing", "Bill", 0, 0)
    cluster.broker.offsets.commit("billing", "Bill", 1, 0)
    html = await page(http, "/groups/billing")
    assert "Lag: <strong>4</strong>" in html and "No client of this group is online" in html
    groups = await (await http.get("/api/groups")).json()
    assert {"group": "billing", "count": 0, "consume_type": None, "message_model": None,
            "diff_total": 4} in groups  # fmt: skip

    reset = await post(http, "/groups/billing/reset", {"topic": "Bill", "timestamp": "now"},
                       token)  # fmt: skip
    assert "Offsets of" in reset
    details = await (await http.get("/api/groups/billing")).json()
    assert details["lag"] == 0
    bad = await post(http, "/groups/billing/reset", {"topic": "Bill", "timestamp": "soon"},
                     token, status=400)  # fmt: skip
    assert "timestamp must be" in bad

    await post(http, "/groups/billing/delete", {"confirm": "billing"}, token)
    assert "billing" not in cluster.broker.groups.groups
    assert "no broker knows" in await page(http, "/groups/billing", status=404)


async def test_changes_need_the_page_token(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    async with http.post("/topics", data={"topic": "Forged"}) as r:
        assert r.status == 403 and "token" in await r.text()
    async with http.post("/topics", data={"topic": "Forged", "_token": "guess"}) as r:
        assert r.status == 403
    assert cluster.broker.topics.get("Forged") is None
    bad = await post(http, "/topics", {"topic": "no spaces"}, token_of(await page(http, "/topics")),
                     status=400)  # fmt: skip
    assert "illegal characters" in bad


async def test_read_only_and_password(cluster: Cluster) -> None:
    d = Dashboard(cluster.ns, read_only=True, password="s3cret")
    await d.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(base_url=d.url) as anon:
            async with anon.get("/") as r:
                assert r.status == 401 and "Basic" in r.headers["WWW-Authenticate"]
        async with aiohttp.ClientSession(base_url=d.url, headers=basic("admin", "s3cret")) as s:
            topics = await page(s, "/topics")
            assert "_token" not in topics and "read-only" in topics  # no forms
            async with s.post("/topics", data={"topic": "X", "_token": d.token}) as r:
                assert r.status == 403 and "read-only" in await r.text()
        for user, password in (("admin", "wrong"), ("root", "s3cret")):
            async with (
                aiohttp.ClientSession(base_url=d.url, headers=basic(user, password)) as s,
                s.get("/") as r,
            ):
                assert r.status == 401
    finally:
        await d.stop()
    assert cluster.broker.topics.get("X") is None


async def test_a_cluster_that_is_down_is_an_error_page_not_a_crash(tmp_path: object) -> None:
    d = Dashboard("127.0.0.1:1")
    await d.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(base_url=d.url) as s:
            html = await page(s, "/", status=502)
            assert "The cluster did not answer" in html
            async with s.get("/api/cluster") as r:
                assert r.status == 502 and (await r.json())["error"]
    finally:
        await d.stop()


async def test_the_command_serves_until_sigterm(cluster: Cluster) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from rmqkit.cli.main import main; main()",
        "dashboard", "-n", cluster.ns, "--port", "0", "--read-only",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        url = re.search(r"on (http://127\.0\.0\.1:\d+/)", line)
        assert url, line
        async with aiohttp.ClientSession(base_url=url.group(1)) as s, s.get("/") as r:
            assert r.status == 200 and cluster.br in await r.text()
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_live_clients_show_on_their_group_pages(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    await cluster.create_topic("Live", 1)

    async def handler(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        return ConsumeResult.SUCCESS

    pc = PushConsumer("watchers", cluster.ns, instance_name="dash-c")
    pc.subscribe("Live", "a || b")
    pc.register(handler)
    async with pc, Producer("senders", cluster.ns, instance_name="dash-p4") as p:
        await p.send(Message("Live", b"x", tags="a"))

        async def online() -> str | None:
            html = await page(http, "/groups/watchers")
            return html if pc.instance.client_id in html else None

        html = await check_for(online, timeout=10)
        assert "a || b" in html and "CLUSTERING" in html
        # The client's own figures, asked through the broker: its queue and its topics' rates.
        assert "Queue held" in html and "Live · broker-a · 0" in html and "%RETRY%watchers" in html
        details = await (await http.get("/api/groups/watchers")).json()
        (running,) = details["running"]
        assert running["clientId"] == pc.instance.client_id
        assert [q["topic"] for q in running["mqTable"]].count("Live") == 1
        assert set(running["statusTable"]) == {"Live", "%RETRY%watchers"}
        listed = await page(http, "/groups")
        assert "watchers" in listed and "push" in listed
        producers = await page(http, "/producers?group=senders")
        assert p.instance.client_id in producers and cluster.br in producers
        assert "No producer of group nobody" in await page(http, "/producers?group=nobody")
    # A client in a group that cannot give its running info: the page says why, and still serves.
    ghost = ClientInstance(ClientConfig(cluster.ns, "ghost"))
    await ghost.start()
    try:
        entry = consumer_entry("ghosts", "CONSUME_ACTIVELY", "CLUSTERING",
                               "CONSUME_FROM_LAST_OFFSET", [SubscriptionData.build("Live", "*")])
        beat = HeartbeatData(ghost.client_id, consumers=[entry]).encode()
        await ghost.invoke(cluster.br, RemotingCommand(RequestCode.HEART_BEAT, body=beat))
        html = await page(http, "/groups/ghosts")
        assert "No running info" in html and "not exist in this consumer" in html
    finally:
        await ghost.stop()


async def test_messages_are_listed_by_the_time_they_were_stored(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    await cluster.create_topic("Timed", 3)
    async with Producer("PG", cluster.ns, instance_name="dash-p5") as p:
        sent = [await p.send(Message("Timed", str(i).encode())) for i in range(6)]
    async with AdminClient(cluster.ns, instance_name="dash-admin") as admin:
        stored = {m.offset_msg_id: m.store_timestamp for m in
                  [await admin.view_message(r.offset_msg_id) for r in sent]}  # fmt: skip
        times = sorted(stored.values())
        everything, more = await admin.messages_between("Timed", times[0], times[-1])
        assert sorted(m.offset_msg_id for m in everything) == sorted(stored) and not more
        assert [m.store_timestamp for m in everything] == times  # oldest first
        first_two, more = await admin.messages_between("Timed", 0, times[-1], max_num=2)
        assert len(first_two) == 2 and more
        assert cluster.broker.offsets.query("TOOLS_CONSUMER", "Timed", 0) < 0  # nothing committed
    middle = [oid for oid, t in stored.items() if times[1] <= t <= times[4]]
    begin, end = (local_iso(t) for t in (times[1], times[4]))
    listed = await api(http, "/api/messages", topic="Timed", begin=begin, end=end)
    assert sorted(m["offsetMsgId"] for m in listed["messages"]) == sorted(middle)
    html = await page(http, f"/messages?topic=Timed&begin={begin}&end={end}")
    assert all(oid in html for oid in middle)
    later, earlier = local_iso(times[-1] + 1000), local_iso(times[0])  # sends can share a ms
    backwards = await page(http, f"/messages?topic=Timed&begin={later}&end={earlier}", status=400)
    assert "end must not come before begin" in backwards


def local_iso(ms: int) -> str:
    """A store time as an HTML datetime-local input sends it, to the millisecond."""
    return datetime.fromtimestamp(ms / 1000).isoformat(timespec="milliseconds")
