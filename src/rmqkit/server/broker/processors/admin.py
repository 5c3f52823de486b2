"""Offsets, messages by id and key, and topic administration (RocketMQ `AdminBrokerProcessor`,
`QueryMessageProcessor`): GET_MAX/MIN_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP,
GET_EARLIEST_MSG_STORETIME, VIEW_MESSAGE_BY_ID, QUERY_MESSAGE, UPDATE_AND_CREATE_TOPIC,
DELETE_TOPIC_IN_BROKER, GET_ALL_TOPIC_CONFIG, GET_BROKER_CONFIG, UPDATE_BROKER_CONFIG
(`config_update.py`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import orjson

from rmqkit.common.java_properties import parse_properties
from rmqkit.common.names import DEFAULT_TOPIC, topic_problem
from rmqkit.common.topic import PERM_RW, DataVersion, TopicConfig
from rmqkit.errors import ConfigurationError
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.remoting.connection import Connection, HandlerResult
from rmqkit.server.broker.config_update import ConfigUpdater
from rmqkit.server.broker.headers import Header, HeaderProblem
from rmqkit.server.settings import broker_properties

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker


class AdminProcessor:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._config_version = DataVersion()
        """The configuration's version (GET_BROKER_CONFIG's header): the next one after each
        UPDATE_BROKER_CONFIG."""
        self._updater = ConfigUpdater(broker)
        self.handlers: dict[RequestCode, Callable[[RemotingCommand, Header], HandlerResult]] = {
            RequestCode.GET_MAX_OFFSET: self.max_offset,
            RequestCode.GET_MIN_OFFSET: self.min_offset,
            RequestCode.SEARCH_OFFSET_BY_TIMESTAMP: self.offset_by_time,
            RequestCode.GET_EARLIEST_MSG_STORETIME: self.earliest_time,
            RequestCode.VIEW_MESSAGE_BY_ID: self.view_by_offset,
            RequestCode.QUERY_MESSAGE: self.query_message,
            RequestCode.UPDATE_AND_CREATE_TOPIC: self.create_topic,
            RequestCode.DELETE_TOPIC_IN_BROKER: self.delete_topic,
            RequestCode.GET_ALL_TOPIC_CONFIG: self.all_topics,
            RequestCode.GET_BROKER_CONFIG: self.broker_config,
            RequestCode.UPDATE_BROKER_CONFIG: self.update_config,
        }

    def __call__(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        handler = self.handlers[RequestCode(cmd.code)]
        try:
            return handler(cmd, Header(cmd.ext_fields))
        except HeaderProblem as exc:
            return cmd.response(ResponseCode.SYSTEM_ERROR, str(exc))

    def max_offset(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        off = self.broker.store.get_max_offset(h.text("topic"), h.integer("queueId", 32))
        return cmd.response(ResponseCode.SUCCESS, ext_fields={"offset": str(off)})

    def min_offset(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        off = self.broker.store.get_min_offset(h.text("topic"), h.integer("queueId", 32))
        return cmd.response(ResponseCode.SUCCESS, ext_fields={"offset": str(off)})

    def offset_by_time(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        topic, qid, ts = h.text("topic"), h.integer("queueId", 32), h.integer("timestamp")
        store = self.broker.store
        off = store.get_offset_by_time(topic, qid, ts)
        if (h.opt_text("boundaryType") or "LOWER").upper() == "UPPER":
            # The last message stored at or before `ts`, rather than the first at or after it.
            while (
                off < store.get_max_offset(topic, qid)
                and store.get_store_time(topic, qid, off) == ts
            ):
                off += 1
            off = max(store.get_min_offset(topic, qid), off - 1)
        return cmd.response(ResponseCode.SUCCESS, ext_fields={"offset": str(off)})

    def earliest_time(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        ts = self.broker.store.get_earliest_store_time(h.text("topic"), h.integer("queueId", 32))
        return cmd.response(ResponseCode.SUCCESS, ext_fields={"timestamp": str(ts)})

    def view_by_offset(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        offset = h.integer("offset")
        rec = self.broker.store.look_message_by_offset(offset)
        if rec is None:
            return cmd.response(
                ResponseCode.SYSTEM_ERROR, f"can not find message by the offset, {offset}"
            )
        return cmd.response(ResponseCode.SUCCESS, body=bytes(rec))

    def query_message(self, cmd: RemotingCommand, h: Header) -> HandlerResult:
        max_num = max(1, min(h.opt_int("maxNum", 32, 32), 64))
        begin = h.opt_int("beginTimestamp", 0)
        end = h.opt_int("endTimestamp", int(time.time() * 1000))
        return self._query(cmd, h.text("topic"), h.text("key"), max_num, begin, end)

    async def _query(
        self, cmd: RemotingCommand, topic: str, key: str, max_num: int, begin: int, end: int
    ) -> RemotingCommand:
        q = await self.broker.store.query_message(topic, key, max_num, begin, end)
        ext = {
            "indexLastUpdateTimestamp": str(q.index_last_update_timestamp),
            "indexLastUpdatePhyoffset": str(q.index_last_update_phy_offset),
        }
        if not q.records:
            return cmd.response(ResponseCode.QUERY_NOT_FOUND, "can not find message, maybe time "
                                "range not correct", ext)  # fmt: skip
        return cmd.response(ResponseCode.SUCCESS, None, ext, b"".join(q.records))

    def create_topic(self, cmd: RemotingCommand, h: Header) -> HandlerResult:
        topic = h.text("topic")
        problem = topic_problem(topic)
        if problem is not None:
            return cmd.response(ResponseCode.SYSTEM_ERROR, problem)
        if topic == DEFAULT_TOPIC or topic == self.broker.settings.broker_cluster_name:
            return cmd.response(ResponseCode.SYSTEM_ERROR, f"the topic[{topic}] is conflict "
                                "with system topic")  # fmt: skip
        read = h.integer("readQueueNums", 32)
        write = h.integer("writeQueueNums", 32)
        if not (0 < read <= 1024 and 0 < write <= 1024):
            return cmd.response(
                ResponseCode.INVALID_PARAMETER, "readQueueNums and writeQueueNums take 1..1024"
            )
        cfg = TopicConfig(
            topic, read, write, h.opt_int("perm", PERM_RW, 32),
            h.opt_text("topicFilterType") or "SINGLE_TAG", h.opt_int("topicSysFlag", 0, 32),
            h.flag("order"),
        )  # fmt: skip
        self.broker.topics.put(cfg)
        return self._registered(cmd.response(ResponseCode.SUCCESS))

    def delete_topic(self, cmd: RemotingCommand, h: Header) -> Awaitable[RemotingCommand]:
        self.broker.topics.delete(h.text("topic"))
        return self._registered(cmd.response(ResponseCode.SUCCESS))

    async def _registered(self, response: RemotingCommand) -> RemotingCommand:
        """`response`, once the NameServers have the new topic table (as Java's broker
        answers), or after a few seconds without a NameServer's answer."""
        await self.broker.registration.register_now()
        return response

    def all_topics(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        t = self.broker.topics
        body = {
            "topicConfigTable": {n: c.to_json() for n, c in t.topics.items()},
            "dataVersion": t.data_version.to_json(),
        }
        return cmd.response(ResponseCode.SUCCESS, body=orjson.dumps(body))

    def broker_config(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        """Every broker.properties key with its running value, as Java's `properties2String`
        writes it (`key=value` lines); the ports are the bound ones."""
        b = self.broker
        props = broker_properties(b.settings)
        props["haListenPort"] = str(b.ha_port)
        body = "".join(f"{k}={v}\n" for k, v in props.items()).encode()
        version = orjson.dumps(self._config_version.to_json()).decode()
        return cmd.response(ResponseCode.SUCCESS, body=body, ext_fields={"version": version})

    async def update_config(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        """Set broker.properties keys (the body, `key=value` lines); the remark says which
        apply now and which at the next start (see `config_update.py`)."""
        try:
            text = bytes(cmd.body or b"").decode("utf-8")
        except UnicodeDecodeError:
            return cmd.response(ResponseCode.SYSTEM_ERROR, "the body is not UTF-8 properties text")
        props = parse_properties(text)
        if not props:
            return cmd.response(ResponseCode.SUCCESS, "nothing to update")
        try:
            change = await self._updater.update(props)
        except ConfigurationError as exc:
            return cmd.response(ResponseCode.SYSTEM_ERROR, str(exc))
        except OSError as exc:
            return cmd.response(
                ResponseCode.SYSTEM_ERROR, f"the properties file could not be written: {exc}"
            )
        self._config_version.next_version()
        return cmd.response(ResponseCode.SUCCESS, change.remark())
