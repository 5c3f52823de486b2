"""NameServer request processors (RocketMQ's DefaultRequestProcessor and ClientRequestProcessor).

Each processor reads its header fields, calls the RouteTable or KVConfig and answers at once.
A missing mandatory field or a malformed body is answered with an error naming it.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable

from rmqkit.common.java_values import parse_bool, parse_int
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.route import (
    NAMESPACE_ORDER_TOPIC_CONFIG,
    BodyError,
    decode_data_version,
    decode_register_broker_body,
    decode_topic_route,
    encode_cluster_info,
    encode_data_version,
    encode_kv_table,
    encode_topic_list,
    encode_topic_route,
)
from rmqkit.remoting.connection import Connection
from rmqkit.remoting.server import RemotingServer
from rmqkit.server.namesrv.kv_config import KVConfig
from rmqkit.server.namesrv.route_table import RouteTable

log = logging.getLogger("rmqkit.namesrv")

Handler = Callable[[Connection, RemotingCommand], RemotingCommand]


class RequestError(Exception):
    """A request that cannot be served as sent; becomes a response with `code` and `remark`."""

    def __init__(self, code: ResponseCode, remark: str) -> None:
        super().__init__(remark)
        self.code = code
        self.remark = remark


def required(cmd: RemotingCommand, name: str) -> str:
    """A mandatory (`@CFNotNull`) header field."""
    value = cmd.ext_fields.get(name)
    if value is None:
        raise RequestError(ResponseCode.SYSTEM_ERROR, f"the custom field <{name}> is null")
    return value


def _as_int(name: str, raw: str) -> int:
    value = parse_int(raw)
    if value is None:
        raise RequestError(
            ResponseCode.INVALID_PARAMETER, f"the custom field <{name}> is not an integer: {raw!r}"
        )
    return value


def required_int(cmd: RemotingCommand, name: str) -> int:
    return _as_int(name, required(cmd, name))


def optional_int(cmd: RemotingCommand, name: str) -> int | None:
    raw = cmd.ext_fields.get(name)
    return None if raw is None or raw == "" else _as_int(name, raw)


def _java_crc32(body: bytes | memoryview) -> int:
    """Java's `UtilAll.crc32`: CRC32 with the sign bit cleared."""
    return zlib.crc32(body) & 0x7FFFFFFF


class NameServerProcessor:
    """Serves the NameServer's request codes from one RouteTable and one KVConfig."""

    def __init__(self, routes: RouteTable, kv: KVConfig) -> None:
        self.routes = routes
        self.kv = kv

    def register_with(self, server: RemotingServer) -> None:
        handlers: dict[RequestCode, Handler] = {
            RequestCode.PUT_KV_CONFIG: self.put_kv_config,
            RequestCode.GET_KV_CONFIG: self.get_kv_config,
            RequestCode.DELETE_KV_CONFIG: self.delete_kv_config,
            RequestCode.GET_KVLIST_BY_NAMESPACE: self.get_kv_list,
            RequestCode.REGISTER_BROKER: self.register_broker,
            RequestCode.UNREGISTER_BROKER: self.unregister_broker,
            RequestCode.BROKER_HEARTBEAT: self.broker_heartbeat,
            RequestCode.QUERY_DATA_VERSION: self.query_data_version,
            RequestCode.GET_ROUTEINFO_BY_TOPIC: self.get_route,
            RequestCode.GET_BROKER_CLUSTER_INFO: self.get_cluster_info,
            RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER: self.get_all_topics,
            RequestCode.GET_TOPICS_BY_CLUSTER: self.get_topics_by_cluster,
            RequestCode.DELETE_TOPIC_IN_NAMESRV: self.delete_topic,
            RequestCode.REGISTER_TOPIC_IN_NAMESRV: self.register_topic,
        }
        for code, handler in handlers.items():
            server.register(code, _answering_errors(handler))

    # -- brokers ----------------------------------------------------------------------------------

    def register_broker(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        broker_name = required(cmd, "brokerName")
        broker_addr = required(cmd, "brokerAddr")
        cluster = required(cmd, "clusterName")
        ha_server_addr = required(cmd, "haServerAddr")
        broker_id = required_int(cmd, "brokerId")
        timeout_ms = optional_int(cmd, "heartbeatTimeoutMillis")
        if parse_bool(cmd.ext_fields.get("compressed")):
            raise RequestError(
                ResponseCode.SYSTEM_ERROR,
                "compressed RegisterBrokerBody is not supported; set compressedRegister=false",
            )
        crc = optional_int(cmd, "bodyCrc32") or 0
        if crc != 0 and crc != _java_crc32(cmd.body):
            raise RequestError(ResponseCode.SYSTEM_ERROR, "crc32 not match")
        topic_configs, data_version = decode_register_broker_body(cmd.body)
        result = self.routes.register_broker(
            cluster=cluster,
            broker_addr=broker_addr,
            broker_name=broker_name,
            broker_id=broker_id,
            ha_server_addr=ha_server_addr,
            topic_configs=topic_configs,
            data_version=data_version,
            connection=conn,
            timeout_ms=timeout_ms,
            zone_name=cmd.ext_fields.get("zoneName"),
            enable_acting_master=parse_bool(cmd.ext_fields.get("enableActingMaster")),
        )
        ext: dict[str, str] = {}
        if result.ha_server_addr is not None:
            ext["haServerAddr"] = result.ha_server_addr
        if result.master_addr is not None:
            ext["masterAddr"] = result.master_addr
        order_conf = self.kv.namespace(NAMESPACE_ORDER_TOPIC_CONFIG) or {}
        return cmd.response(ResponseCode.SUCCESS, ext_fields=ext, body=encode_kv_table(order_conf))

    def unregister_broker(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        broker_name = required(cmd, "brokerName")
        broker_addr = required(cmd, "brokerAddr")
        cluster = required(cmd, "clusterName")
        required_int(cmd, "brokerId")
        self.routes.unregister_broker(cluster, broker_addr, broker_name)
        return cmd.response(ResponseCode.SUCCESS)

    def broker_heartbeat(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        cluster = required(cmd, "clusterName")
        broker_addr = required(cmd, "brokerAddr")
        required(cmd, "brokerName")
        self.routes.touch(cluster, broker_addr)
        return cmd.response(ResponseCode.SUCCESS)

    def query_data_version(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        required(cmd, "brokerName")
        broker_addr = required(cmd, "brokerAddr")
        cluster = required(cmd, "clusterName")
        required_int(cmd, "brokerId")
        # Java reads a missing body as a null version, which always counts as changed.
        offered = decode_data_version(cmd.body) if len(cmd.body) else None
        stored = self.routes.data_version(cluster, broker_addr)
        changed = stored is None or stored != offered
        self.routes.touch(cluster, broker_addr)
        body = b"" if stored is None else encode_data_version(stored)
        ext = {"changed": "true" if changed else "false"}
        return cmd.response(ResponseCode.SUCCESS, ext_fields=ext, body=body)

    # -- topics -----------------------------------------------------------------------------------

    def get_route(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        topic = required(cmd, "topic")
        route = self.routes.route(topic)
        if route is None:
            return cmd.response(
                ResponseCode.TOPIC_NOT_EXIST,
                f"No topic route info in name server for the topic: {topic}",
            )
        route.order_topic_conf = self.kv.get(NAMESPACE_ORDER_TOPIC_CONFIG, topic)
        # Always standard JSON ("0" keys), whatever the client's version or acceptStandardJsonOnly.
        return cmd.response(ResponseCode.SUCCESS, body=encode_topic_route(route))

    def get_cluster_info(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return cmd.response(
            ResponseCode.SUCCESS, body=encode_cluster_info(self.routes.cluster_info())
        )

    def get_all_topics(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return cmd.response(ResponseCode.SUCCESS, body=encode_topic_list(self.routes.topics()))

    def get_topics_by_cluster(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        cluster = required(cmd, "cluster")
        topics = self.routes.topics_by_cluster(cluster)
        return cmd.response(ResponseCode.SUCCESS, body=encode_topic_list(topics))

    def delete_topic(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        topic = required(cmd, "topic")
        self.routes.delete_topic(topic, cmd.ext_fields.get("clusterName"))
        return cmd.response(ResponseCode.SUCCESS)

    def register_topic(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        topic = required(cmd, "topic")
        if len(cmd.body):
            self.routes.register_topic(topic, decode_topic_route(cmd.body).queue_datas)
        return cmd.response(ResponseCode.SUCCESS)

    # -- KV config --------------------------------------------------------------------------------

    def put_kv_config(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        namespace = required(cmd, "namespace")
        key = required(cmd, "key")
        self.kv.put(namespace, key, required(cmd, "value"))
        return cmd.response(ResponseCode.SUCCESS)

    def get_kv_config(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        namespace = required(cmd, "namespace")
        key = required(cmd, "key")
        value = self.kv.get(namespace, key)
        if value is None:
            return cmd.response(
                ResponseCode.QUERY_NOT_FOUND, f"No config item, Namespace: {namespace} Key: {key}"
            )
        return cmd.response(ResponseCode.SUCCESS, ext_fields={"value": value})

    def delete_kv_config(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        self.kv.delete(required(cmd, "namespace"), required(cmd, "key"))
        return cmd.response(ResponseCode.SUCCESS)

    def get_kv_list(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        namespace = required(cmd, "namespace")
        table = self.kv.namespace(namespace)
        if table is None:
            return cmd.response(
                ResponseCode.QUERY_NOT_FOUND, f"No config item, Namespace: {namespace}"
            )
        return cmd.response(ResponseCode.SUCCESS, body=encode_kv_table(table))


def _answering_errors(handler: Handler) -> Handler:
    """Turn `RequestError` and `BodyError` into error responses instead of logged tracebacks."""

    def process(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        try:
            return handler(conn, cmd)
        except RequestError as exc:
            return cmd.response(exc.code, exc.remark)
        except BodyError as exc:
            log.info("bad body in request %d from %s: %s", cmd.code, conn.peer, exc)
            return cmd.response(ResponseCode.SYSTEM_ERROR, str(exc))

    return process
