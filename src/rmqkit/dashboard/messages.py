"""The dashboard's message pages: finding messages by key, by the id a producer gave them or
by offset id; one message with its properties, body and trace; sending a dead letter back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from rmqkit.common.names import DLQ_GROUP_TOPIC_PREFIX
from rmqkit.common.properties import SYSTEM_KEYS
from rmqkit.dashboard import forms
from rmqkit.errors import CorruptRecordError
from rmqkit.protocol.message_id import decode_offset_msg_id
from rmqkit.protocol.record import StoredMessage, format_host

if TYPE_CHECKING:
    from rmqkit.dashboard.app import Dashboard

MAX_LISTED = 2000
"""Messages a search by time lists at most (as rocketmq-dashboard)."""
BODY_PREVIEW = 64 * 1024
"""Bytes of a body shown on its page; the rest is left out (and said so)."""



def describe(m: StoredMessage) -> dict[str, Any]:
    """A stored message as the pages and the JSON API show it."""
    body = m.body[:BODY_PREVIEW]
    try:
        text, binary = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, binary = body.hex(" ", 2), True
    return {
        "msgId": m.msg_id, "offsetMsgId": m.offset_msg_id, "topic": m.topic,
        "tags": m.tags, "keys": m.keys, "queueId": m.queue_id, "queueOffset": m.queue_offset,
        "commitLogOffset": m.commit_log_offset, "reconsumeTimes": m.reconsume_times,
        "bornTimestamp": m.born_timestamp, "storeTimestamp": m.store_timestamp,
        "bornHost": m.born_host_str, "storeHost": format_host(m.store_host),
        "sysFlag": m.sys_flag, "bodySize": len(m.body), "body": text, "binary": binary,
        "truncated": len(m.body) > BODY_PREVIEW,
        "userProperties": {k: v for k, v in m.properties.items() if k not in SYSTEM_KEYS},
        "systemProperties": {k: v for k, v in m.properties.items() if k in SYSTEM_KEYS},
    }  # fmt: skip


def offset_id_problem(text: str) -> str | None:
    try:
        decode_offset_msg_id(text)
    except CorruptRecordError as exc:
        return exc.reason
    return None


class MessagePages:
    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/messages", self.search)
        router.add_get("/messages/{offset_id}", self.message)
        router.add_post("/messages/{offset_id}/resend", self.resend)
        router.add_get("/api/messages", self.api_search)
        router.add_get("/api/messages/{offset_id}", self.api_message)

    async def _found(self, request: web.Request) -> tuple[list[StoredMessage] | None, bool]:
        """The messages a search asks for (None: no search yet), and whether there were more.

        `topic` and `key`: by KEYS (or UNIQ_KEY); `topic` and `id`: by the id a producer
        gave it; `id` alone: by offset message id; `topic`, `begin` and `end`: stored in that
        time range (at most `MAX_LISTED`)."""
        q = request.query
        topic, key, msg_id = (q.get(n, "").strip() for n in ("topic", "key", "id"))
        admin = self.dash.admin
        if q.get("begin") or q.get("end"):
            forms.topic({"topic": topic})
            begin, end = forms.timestamp(q, "begin"), forms.timestamp(q, "end")
            if end < begin:
                raise forms.FormError("end must not come before begin")
            return await admin.messages_between(topic, begin, end, max_num=MAX_LISTED)
        if not (key or msg_id):
            return None, False
        if not topic:
            if not msg_id:
                raise forms.FormError("a search by key needs its topic")
            problem = offset_id_problem(msg_id)
            if problem is not None:
                raise forms.FormError(
                    f"{msg_id!r} is not an offset message id ({problem}); a producer's message "
                    "id (UNIQ_KEY) is searched with its topic"
                )
            return [await admin.view_message(msg_id)], False
        forms.topic({"topic": topic})
        found = await admin.query_by_key(topic, key or msg_id, max_num=64)
        if key:  # index hashes can collide: keep the messages that carry the key
            return [m for m in found if key in m.keys or m.uniq_key == key], False
        return [m for m in found if m.uniq_key == msg_id], False

    async def search(self, request: web.Request) -> web.Response:
        found, more = await self._found(request)
        rows = sorted(found, key=lambda m: m.store_timestamp) if found else found
        asked = {n: request.query.get(n, "") for n in ("topic", "key", "id", "begin", "end")}
        return self.dash.render(request, "messages.html", found=rows, more=more, q=asked,
                                max_listed=MAX_LISTED)  # fmt: skip

    async def _message(self, offset_id: str) -> dict[str, Any]:
        problem = offset_id_problem(offset_id)
        if problem is not None:
            raise forms.FormError(f"{offset_id!r} is not an offset message id: {problem}")
        admin = self.dash.admin
        m = await admin.view_message(offset_id)
        trace = await admin.query_trace(m.uniq_key) if m.uniq_key else None
        return {
            "message": describe(m),
            "trace": trace.timeline() if trace is not None else [],
            "dlqGroup": m.topic[len(DLQ_GROUP_TOPIC_PREFIX):]
            if m.topic.startswith(DLQ_GROUP_TOPIC_PREFIX) else None,
        }  # fmt: skip

    async def message(self, request: web.Request) -> web.Response:
        return self.dash.render(request, "message.html",
                                **await self._message(request.match_info["offset_id"]))  # fmt: skip

    async def resend(self, request: web.Request) -> web.Response:
        """Send a dead letter back to its group's retry topic."""
        offset_id = request.match_info["offset_id"]
        await self.dash.form(request)
        m = await self.dash.admin.view_message(offset_id)
        if not m.topic.startswith(DLQ_GROUP_TOPIC_PREFIX):
            raise forms.FormError(f"{offset_id} is in {m.topic}, not in a dead-letter topic")
        group = m.topic[len(DLQ_GROUP_TOPIC_PREFIX) :]
        new_id = await self.dash.admin.resend_dead_letter(m, group)
        return self.dash.render(request, "resent.html", group=group, old_id=offset_id,
                                new_id=new_id)  # fmt: skip

    async def api_search(self, request: web.Request) -> web.Response:
        found, more = await self._found(request)
        return self.dash.json({"messages": [describe(m) for m in found or []], "more": more})

    async def api_message(self, request: web.Request) -> web.Response:
        return self.dash.json(await self._message(request.match_info["offset_id"]))
