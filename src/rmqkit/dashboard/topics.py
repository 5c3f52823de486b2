"""The dashboard's topic pages: the list, creating and deleting a topic, one topic's route,
queues and consumer groups, and sending a message to it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from rmqkit.client.admin import QueueStatus
from rmqkit.client.message import Message
from rmqkit.common.names import (
    DLQ_GROUP_TOPIC_PREFIX,
    RETRY_GROUP_TOPIC_PREFIX,
    SCHEDULE_TOPIC,
    TRACE_TOPIC,
)
from rmqkit.common.topic import PERM_READ, PERM_RW, PERM_WRITE, perm_text
from rmqkit.dashboard import forms

if TYPE_CHECKING:
    from rmqkit.dashboard.app import Dashboard

PERMS = {"RW": PERM_RW, "R": PERM_READ, "W": PERM_WRITE, "none": 0}


def topic_kind(topic: str) -> str:
    """How the topic list groups a topic: normal, retry, dlq or system. (Topics named after a
    cluster or a broker, which RocketMQ's brokers register, are system topics too: the list
    knows those names.)"""
    if topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
        return "retry"
    if topic.startswith(DLQ_GROUP_TOPIC_PREFIX):
        return "dlq"
    system = (SCHEDULE_TOPIC, TRACE_TOPIC, "TBW102", "SELF_TEST_TOPIC", "OFFSET_MOVED_EVENT")
    if (
        topic in system
        or topic.startswith(("RMQ_SYS_", "rmq_sys_"))
        or topic.endswith("_REPLY_TOPIC")
    ):
        return "system"
    return "normal"


class TopicPages:
    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/topics", self.list)
        router.add_post("/topics", self.create)
        router.add_get("/topics/{topic}", self.topic)
        router.add_post("/topics/{topic}/send", self.send)
        router.add_post("/topics/{topic}/delete", self.delete)
        router.add_get("/api/topics", self.api_list)
        router.add_get("/api/topics/{topic}", self.api_topic)

    async def _listed(
        self, request: web.Request
    ) -> tuple[list[dict[str, str]], set[str], list[str]]:
        """The topics the query asks for, the kinds shown, and the clusters."""
        info = await self.dash.admin.cluster()
        structural = set(info.cluster_addr_table) | set(info.broker_addr_table)
        kinds = set(request.query.getall("kind", ["normal"]))
        needle = request.query.get("q", "").strip().lower()
        rows = []
        for t in await self.dash.admin.topics():
            kind = "system" if t in structural else topic_kind(t)
            if kind in kinds and needle in t.lower():
                rows.append({"topic": t, "kind": kind})
        return rows, kinds, sorted(info.cluster_addr_table)

    async def list(self, request: web.Request) -> web.Response:
        rows, kinds, clusters = await self._listed(request)
        return self.dash.render(request, "topics.html", topics=rows, kinds=kinds,
                                q=request.query.get("q", ""), clusters=clusters,
                                perms=list(PERMS))  # fmt: skip

    async def create(self, request: web.Request) -> web.Response:
        form = await self.dash.form(request)
        topic = forms.topic(form)
        read_queues = forms.integer(form, "read_queues", 1, 1024, default=8)
        write_queues = forms.integer(form, "write_queues", 1, 1024, default=read_queues)
        perm = PERMS.get(form.get("perm", "RW"))
        if perm is None:
            raise forms.FormError(f"perm must be one of {', '.join(PERMS)}")
        cluster = forms.text(form, "cluster", required=False) or None
        await self.dash.admin.create_topic(
            topic, perm=perm, order=forms.checkbox(form, "order"), cluster=cluster,
            read_queues=read_queues, write_queues=write_queues,
        )  # fmt: skip
        raise web.HTTPSeeOther(f"/topics/{topic}")

    async def _details(self, topic: str) -> dict[str, Any]:
        admin = self.dash.admin
        route = await admin.route(topic)
        status: list[QueueStatus] = await admin.topic_status(topic)
        queues = {q.broker_name: q for q in route.queue_datas}
        return {
            "topic": topic,
            "brokers": [{"brokerName": b.broker_name, "cluster": b.cluster,
                         "addrs": {str(k): v for k, v in sorted(b.broker_addrs.items())},
                         "readQueues": q.read_queue_nums if q else None,
                         "writeQueues": q.write_queue_nums if q else None,
                         "perm": perm_text(q.perm) if q else None}
                        for b in route.broker_datas for q in [queues.get(b.broker_name)]],
            "status": [{"brokerName": s.queue.broker_name, "queueId": s.queue.queue_id,
                        "minOffset": s.min_offset, "maxOffset": s.max_offset,
                        "lastUpdated": s.last_update_timestamp} for s in status],
            "messages": sum(s.max_offset - s.min_offset for s in status),
            "consumers": await admin.topic_consumers(topic),
        }  # fmt: skip

    async def topic(self, request: web.Request) -> web.Response:
        details = await self._details(request.match_info["topic"])
        return self.dash.render(request, "topic.html", **details)

    async def send(self, request: web.Request) -> web.Response:
        topic = request.match_info["topic"]
        form = await self.dash.form(request)
        body = forms.text(form, "body", max_len=4 * 1024 * 1024)
        msg = Message(
            topic, body.encode("utf-8"), tags=forms.text(form, "tags", required=False) or None,
            keys=forms.text(form, "keys", required=False).split(),
        )  # fmt: skip
        result = await (await self.dash.producer()).send(msg)
        return self.dash.render(request, "sent.html", topic=topic, result=result)

    async def delete(self, request: web.Request) -> web.Response:
        topic = request.match_info["topic"]
        form = await self.dash.form(request)
        forms.confirm_deletion(form, "topic", topic)
        await self.dash.admin.delete_topic(topic)
        raise web.HTTPSeeOther("/topics")

    async def api_list(self, request: web.Request) -> web.Response:
        rows, _, _ = await self._listed(request)
        return self.dash.json(rows)

    async def api_topic(self, request: web.Request) -> web.Response:
        return self.dash.json(await self._details(request.match_info["topic"]))
