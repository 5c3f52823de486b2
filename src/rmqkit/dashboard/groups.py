"""The dashboard's group pages: consumer groups with their lag, one group's progress queue by
queue, its clients and settings, resetting its offsets, and producer groups' connections."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

from aiohttp import web

from rmqkit.dashboard import forms
from rmqkit.errors import BrokerResponseError, RmqkitError

if TYPE_CHECKING:
    from rmqkit.client.admin import AdminClient
    from rmqkit.dashboard.app import Dashboard

RUNNING_INFO_WAIT_S = 3.0
"""How long a group page waits for a client's running info; a client that does not answer in
time is shown as such (the broker itself would wait 10 s)."""

# The settings the group form changes: form field -> SubscriptionGroupConfig field.
SETTINGS = {
    "consume_enable": "consume_enable",
    "broadcast": "consume_broadcast_enable",
    "orderly": "consume_message_orderly",
}


class GroupPages:
    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/groups", self.list)
        router.add_post("/groups", self.update)
        router.add_get("/groups/{group}", self.group)
        router.add_post("/groups/{group}/reset", self.reset)
        router.add_post("/groups/{group}/delete", self.delete)
        router.add_get("/producers", self.producers)
        router.add_get("/api/groups", self.api_list)
        router.add_get("/api/groups/{group}", self.api_group)

    async def list(self, request: web.Request) -> web.Response:
        groups = await self.dash.admin.group_summaries()
        return self.dash.render(request, "groups.html", groups=groups)

    async def update(self, request: web.Request) -> web.Response:
        """Create a group or change its settings: retries and the three switches."""
        form = await self.dash.form(request)
        group = forms.group(form)
        changes: dict[str, Any] = {
            "retry_max_times": forms.integer(form, "retry_max_times", -1, 2**31 - 1, default=16),
        }
        changes.update({field: forms.checkbox(form, name) for name, field in SETTINGS.items()})
        await self.dash.admin.update_group(group, **changes)
        raise web.HTTPSeeOther(f"/groups/{group}")

    async def _details(self, group: str) -> dict[str, Any]:
        admin = self.dash.admin
        progress = await admin.consumer_progress(group)
        try:
            connections: dict[str, Any] | None = await admin.consumer_connections(group)
        except BrokerResponseError:
            connections = None  # no client of the group is online
        settings = None
        for addr in (await admin.read_addrs()).values():
            found = (await admin.groups(addr)).get(group)
            if found is not None:
                settings = dataclasses.asdict(found)
                break
        running = await _running(admin, group, connections)
        return {
            "group": group,
            "running": running,
            "progress": [{"topic": p.queue.topic, "brokerName": p.queue.broker_name,
                          "queueId": p.queue.queue_id, "brokerOffset": p.broker_offset,
                          "consumerOffset": p.consumer_offset, "lag": p.lag,
                          "lastTimestamp": p.last_timestamp} for p in progress],
            "lag": sum(p.lag for p in progress),
            "connections": connections,
            "settings": settings,
        }  # fmt: skip

    async def group(self, request: web.Request) -> web.Response:
        details = await self._details(request.match_info["group"])
        if details["settings"] is None and not details["progress"]:
            raise web.HTTPNotFound(text=f"no broker knows consumer group {details['group']!r}")
        topics = sorted({p["topic"] for p in details["progress"]})
        return self.dash.render(request, "group.html", topics=topics, **details)

    async def reset(self, request: web.Request) -> web.Response:
        group = request.match_info["group"]
        form = await self.dash.form(request)
        topic, when = forms.topic(form), forms.timestamp(form, "timestamp")
        moved = await self.dash.admin.reset_offset_by_time(group, topic, when)
        rows = [{"brokerName": q.broker_name, "queueId": q.queue_id, "offset": off}
                for q, off in sorted(moved.items(), key=lambda e: (e[0].broker_name,
                                                                   e[0].queue_id))]  # fmt: skip
        return self.dash.render(request, "reset.html", group=group, topic=topic, when=when,
                                moved=rows)  # fmt: skip

    async def delete(self, request: web.Request) -> web.Response:
        group = request.match_info["group"]
        form = await self.dash.form(request)
        forms.confirm_deletion(form, "group", group)
        await self.dash.admin.delete_group(group)
        raise web.HTTPSeeOther("/groups")

    async def producers(self, request: web.Request) -> web.Response:
        group = request.query.get("group", "").strip()
        rows = await self.dash.admin.producer_connections(group) if group else None
        return self.dash.render(request, "producers.html", group=group, rows=rows)

    async def api_list(self, request: web.Request) -> web.Response:
        return self.dash.json(
            [dataclasses.asdict(g) for g in await self.dash.admin.group_summaries()]
        )

    async def api_group(self, request: web.Request) -> web.Response:
        return self.dash.json(await self._details(request.match_info["group"]))


async def _running(
    admin: AdminClient, group: str, connections: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Each online client's running info (queues held, waiting messages, rates), asked through a
    broker; a client that cannot say carries the reason instead."""
    ids = [c["clientId"] for c in (connections or {}).get("connectionSet", [])]

    async def one(cid: str) -> dict[str, Any]:
        try:
            async with asyncio.timeout(RUNNING_INFO_WAIT_S):
                info = await admin.consumer_running_info(group, cid)
        except TimeoutError:
            return {"clientId": cid, "error": f"no answer within {RUNNING_INFO_WAIT_S:g} s"}
        except RmqkitError as exc:
            return {"clientId": cid, "error": str(exc)}
        return {"clientId": cid, "error": None, **info.to_json()}

    return list(await asyncio.gather(*(one(cid) for cid in ids)))
