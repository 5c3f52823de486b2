"""Bad input to a NameServer: answered with an error that says what is wrong, never a crash."""

from __future__ import annotations

import zlib

import pytest

from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.remoting.client import RemotingClient
from rmqkit.server.namesrv import NameServer
from tests.unit.server.namesrv.wire import register_request, request, route_request


async def still_serving(namesrv: NameServer, client: RemotingClient) -> bool:
    resp = await client.invoke(namesrv.addr, route_request("T"))
    return resp.code in (ResponseCode.SUCCESS, ResponseCode.TOPIC_NOT_EXIST)


@pytest.mark.parametrize(
    "field", ["brokerName", "brokerAddr", "clusterName", "haServerAddr", "brokerId"]
)
async def test_register_without_mandatory_field(
    namesrv: NameServer, client: RemotingClient, field: str
) -> None:
    cmd = register_request()
    del cmd.ext_fields[field]
    resp = await client.invoke(namesrv.addr, cmd)
    assert resp.code == ResponseCode.SYSTEM_ERROR
    assert resp.remark == f"the custom field <{field}> is null"
    assert namesrv.routes.broker_addr_table == {}


async def test_register_with_bad_broker_id(namesrv: NameServer, client: RemotingClient) -> None:
    resp = await client.invoke(namesrv.addr, register_request(brokerId="master"))
    assert resp.code == ResponseCode.INVALID_PARAMETER
    assert resp.remark is not None and "<brokerId>" in resp.remark


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"\x00garbage\xff", "RegisterBrokerBody body is not valid JSON"),
        (b'{"topicConfigSerializeWrapper":{"topicConfigTable":[]}}', "topicConfigTable"),
        (b'{"topicConfigSerializeWrapper":{"dataVersion":{"counter":"x"}}}', "counter"),
    ],
)
async def test_register_with_garbage_body(
    namesrv: NameServer, client: RemotingClient, body: bytes, needle: str
) -> None:
    cmd = register_request()
    cmd.body = body
    resp = await client.invoke(namesrv.addr, cmd)
    assert resp.code == ResponseCode.SYSTEM_ERROR
    assert resp.remark is not None and needle in resp.remark
    assert await still_serving(namesrv, client)


async def test_compressed_register_body_is_refused(
    namesrv: NameServer, client: RemotingClient
) -> None:
    resp = await client.invoke(namesrv.addr, register_request(compressed="true"))
    assert resp.code == ResponseCode.SYSTEM_ERROR
    assert resp.remark is not None and "compressed" in resp.remark


async def test_body_crc32_is_checked(namesrv: NameServer, client: RemotingClient) -> None:
    bad = await client.invoke(namesrv.addr, register_request(bodyCrc32="12345"))
    assert (bad.code, bad.remark) == (ResponseCode.SYSTEM_ERROR, "crc32 not match")
    good = register_request()
    good.ext_fields["bodyCrc32"] = str(zlib.crc32(good.body) & 0x7FFFFFFF)
    assert (await client.invoke(namesrv.addr, good)).code == ResponseCode.SUCCESS


@pytest.mark.parametrize(
    ("code", "ext", "field"),
    [
        (RequestCode.GET_ROUTEINFO_BY_TOPIC, {}, "topic"),
        (RequestCode.GET_TOPICS_BY_CLUSTER, {}, "cluster"),
        (RequestCode.DELETE_TOPIC_IN_NAMESRV, {}, "topic"),
        (RequestCode.PUT_KV_CONFIG, {"namespace": "ns", "key": "k"}, "value"),
        (RequestCode.GET_KV_CONFIG, {"key": "k"}, "namespace"),
        (RequestCode.DELETE_KV_CONFIG, {"namespace": "ns"}, "key"),
        (RequestCode.GET_KVLIST_BY_NAMESPACE, {}, "namespace"),
        (RequestCode.BROKER_HEARTBEAT, {"clusterName": "c", "brokerName": "b"}, "brokerAddr"),
        (
            RequestCode.UNREGISTER_BROKER,
            {"clusterName": "c", "brokerName": "b", "brokerAddr": "a"},
            "brokerId",
        ),
        (RequestCode.REGISTER_TOPIC_IN_NAMESRV, {}, "topic"),
    ],
)
async def test_missing_fields_are_named(
    namesrv: NameServer, client: RemotingClient, code: RequestCode, ext: dict[str, str], field: str
) -> None:
    resp = await client.invoke(namesrv.addr, request(code, **ext))
    assert resp.code == ResponseCode.SYSTEM_ERROR
    assert resp.remark == f"the custom field <{field}> is null"


async def test_garbage_bodies_on_other_codes(namesrv: NameServer, client: RemotingClient) -> None:
    ids = {"brokerName": "b", "brokerAddr": "a:1", "clusterName": "c", "brokerId": "0"}
    query = request(RequestCode.QUERY_DATA_VERSION, b"{{{", **ids)
    resp = await client.invoke(namesrv.addr, query)
    assert resp.code == ResponseCode.SYSTEM_ERROR and "DataVersion" in (resp.remark or "")
    topic = request(RequestCode.REGISTER_TOPIC_IN_NAMESRV, b'{"queueDatas":[1]}', topic="X")
    resp = await client.invoke(namesrv.addr, topic)
    assert resp.code == ResponseCode.SYSTEM_ERROR and "queueData" in (resp.remark or "")
    assert await still_serving(namesrv, client)


async def test_unknown_code_is_not_supported(namesrv: NameServer, client: RemotingClient) -> None:
    resp = await client.invoke(namesrv.addr, request(RequestCode.SEND_MESSAGE))
    assert resp.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
