"""TLS on real sockets: the server's modes, certificates and client verification, mutual TLS,
large frames through the session, and connections that misbehave."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from rmqkit.errors import ConfigurationError, RemotingConnectError
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.remoting.client import RemotingClient
from rmqkit.remoting.connection import Connection
from rmqkit.remoting.server import RemotingServer
from rmqkit.remoting.tls import ClientTls, ServerTls, TlsMode
from rmqkit.testing import check_for
from tests.certs import TestCA

ECHO = 1000


def _echo(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
    """Answers with the request's body, and says over what the request came."""
    cipher = conn.transport.get_extra_info("cipher") if conn.transport else None
    peercert = conn.transport.get_extra_info("peercert") if conn.transport else None
    who = ""
    if peercert:
        who = dict(x[0] for x in peercert["subject"])["commonName"]
    remark = f"tls {who}".strip() if cipher else "plain"
    return RemotingCommand(0, remark=remark, body=cmd.body)


Serve = Callable[..., Awaitable[str]]
"""`await serve(tls, **server_kw)`: a started echo server's address."""


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[RemotingServer] = []

    async def start(tls: ServerTls | None, **kw: object) -> str:
        server = RemotingServer(tls=tls, **kw)  # type: ignore[arg-type]
        server.register(ECHO, _echo)
        await server.start()
        servers.append(server)
        return f"127.0.0.1:{server.port}"

    yield start
    for server in servers:
        await server.stop()


async def ask(addr: str, tls: ClientTls | None, body: bytes = b"hi") -> RemotingCommand:
    async with RemotingClient(tls=tls) as client:
        return await client.invoke(addr, RemotingCommand(ECHO, body=body), 5.0)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


# -- modes ----------------------------------------------------------------------------------------


async def test_permissive_serves_plain_and_tls_clients_on_one_port(serve: Serve) -> None:
    addr = await serve(ServerTls(TlsMode.PERMISSIVE))
    assert (await ask(addr, None)).remark == "plain"
    assert (await ask(addr, ClientTls())).remark == "tls"


async def test_enforcing_answers_a_plain_client_why_then_closes(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    addr = await serve(ServerTls(TlsMode.ENFORCING))
    async with RemotingClient() as client:
        refused = await client.invoke(addr, RemotingCommand(ECHO), 5.0)
        assert refused.code == ResponseCode.SYSTEM_ERROR
        assert "accepts TLS connections only (tls.server.mode=enforcing)" in refused.remark
        conn = client.cached(addr)
        await check_for(lambda: conn is None or not conn.is_open)
    assert "not TLS, and tls.server.mode=enforcing" in caplog.text
    assert (await ask(addr, ClientTls())).remark == "tls"


@pytest.mark.parametrize("tls", [None, ServerTls(TlsMode.DISABLED)])
async def test_disabled_refuses_tls_and_both_sides_say_why(
    serve: Serve, caplog: pytest.LogCaptureFixture, tls: ServerTls | None
) -> None:
    addr = await serve(tls)
    with pytest.raises(RemotingConnectError, match="does the server accept TLS"):
        await ask(addr, ClientTls())
    await check_for(lambda: "a TLS handshake, and this server does not accept TLS" in caplog.text)
    assert (await ask(addr, None)).remark == "plain"


async def test_frames_far_larger_than_a_tls_record_cross_both_ways(serve: Serve) -> None:
    addr = await serve(ServerTls())
    body = bytes(range(256)) * (3 * 1024 * 1024 // 256 + 7)  # 3 MiB: ~200 TLS records
    async with RemotingClient(tls=ClientTls()) as client:
        replies = await asyncio.gather(
            *(client.invoke(addr, RemotingCommand(ECHO, body=body), 10.0) for _ in range(4))
        )
    assert all(r.body == body for r in replies)


# -- certificates -----------------------------------------------------------------------------


async def test_a_client_that_verifies_accepts_a_server_its_ca_signed(
    serve: Serve, ca: TestCA
) -> None:
    server = ca.issue("broker")
    addr = await serve(ServerTls(cert_path=server.cert, key_path=server.key))
    verify = ClientTls(verify=True, trust_cert_path=ca.cert, check_hostname=True)
    assert (await ask(addr, verify)).remark == "tls"


async def test_a_client_that_verifies_refuses_a_self_signed_server(
    serve: Serve, ca: TestCA
) -> None:
    addr = await serve(ServerTls())  # self-signed
    with pytest.raises(RemotingConnectError, match=r"TLS: .*CERTIFICATE_VERIFY_FAILED"):
        await ask(addr, ClientTls(verify=True, trust_cert_path=ca.cert))
    assert (await ask(addr, ClientTls())).remark == "tls"  # RocketMQ's default: no checks


async def test_check_hostname_refuses_a_certificate_for_another_name(
    serve: Serve, ca: TestCA
) -> None:
    server = ca.issue("elsewhere", hosts=("broker.example.com",))
    addr = await serve(ServerTls(cert_path=server.cert, key_path=server.key))
    chain_only = ClientTls(verify=True, trust_cert_path=ca.cert)
    assert (await ask(addr, chain_only)).remark == "tls"  # as RocketMQ clients: chain only
    with pytest.raises(RemotingConnectError, match=r"TLS: .*(match|mismatch)"):
        await ask(addr, ClientTls(verify=True, trust_cert_path=ca.cert, check_hostname=True))


async def test_mutual_tls_requires_a_client_certificate_the_ca_signed(
    serve: Serve, ca: TestCA, tmp_path: Path
) -> None:
    server = ca.issue("broker-mtls")
    addr = await serve(
        ServerTls(
            TlsMode.ENFORCING, server.cert, server.key, client_auth="require",
            trust_cert_path=ca.cert,
        )
    )  # fmt: skip
    me = ca.issue("order-service", client=True, password="s3cret")
    mine = ClientTls(cert_path=me.cert, key_path=me.key, key_password="s3cret")
    assert (await ask(addr, mine)).remark == "tls order-service"
    with pytest.raises(RemotingConnectError):
        await ask(addr, ClientTls())  # no certificate
    stranger = TestCA(tmp_path / "other").issue("stranger", client=True)
    with pytest.raises(RemotingConnectError):
        await ask(addr, ClientTls(cert_path=stranger.cert, key_path=stranger.key))


async def test_a_configured_certificate_that_cannot_load_stops_the_start(
    ca: TestCA, tmp_path: Path
) -> None:
    issued = ca.issue("bad-key")
    missing = RemotingServer(tls=ServerTls(cert_path=tmp_path / "nope.pem", key_path=issued.key))
    with pytest.raises(ConfigurationError, match=r"nope.pem.*no such file"):
        await missing.start()
    other = ca.issue("other")
    mismatch = RemotingServer(tls=ServerTls(cert_path=issued.cert, key_path=other.key))
    with pytest.raises(ConfigurationError, match="cannot load the certificate and its key"):
        await mismatch.start()


def test_a_client_key_that_does_not_fit_is_named(ca: TestCA) -> None:
    me = ca.issue("svc", client=True, password="right")
    with pytest.raises(ConfigurationError, match=r"tls.client.certPath"):
        ClientTls(cert_path=me.cert, key_path=me.key, key_password="wrong").context()


# -- misbehaving connections ---------------------------------------------------------------------


async def _raw(addr: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = addr.rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def test_garbage_after_the_tls_byte_closes_that_connection_only(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    addr = await serve(ServerTls())
    reader, writer = await _raw(addr)
    writer.write(b"\x16\x03\x01\x00\x05hello" + b"\x00" * 64)
    await asyncio.wait_for(reader.read(), 5)  # an alert at most, then the server closes
    assert reader.at_eof()
    writer.close()
    assert "TLS handshake failed" in caplog.text
    assert (await ask(addr, ClientTls())).remark == "tls"


async def test_a_silent_connection_is_closed_before_it_says_which_it_is(serve: Serve) -> None:
    addr = await serve(ServerTls(), idle_timeout_s=0.3)
    reader, writer = await _raw(addr)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_a_stalled_handshake_is_given_up(caplog: pytest.LogCaptureFixture) -> None:
    from rmqkit.remoting.tls_session import TlsSession

    loop = asyncio.get_running_loop()
    context = ServerTls().context()
    server = await loop.create_server(
        lambda: TlsSession(context, asyncio.Protocol(), handshake_timeout_s=0.2), "127.0.0.1", 0
    )
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01")  # the start of a ClientHello, and no more
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert "no TLS handshake within" in caplog.text
    finally:
        server.close()


async def test_stop_closes_connections_that_never_spoke() -> None:
    server = RemotingServer(tls=ServerTls())
    await server.start()
    reader, writer = await _raw(f"127.0.0.1:{server.port}")
    await check_for(lambda: server._gates)
    await server.stop()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_the_self_signed_certificate_is_made_once_per_process(serve: Serve) -> None:
    a = await serve(ServerTls())
    b = await serve(ServerTls(TlsMode.ENFORCING))
    await ask(a, ClientTls())
    await ask(b, ClientTls())
    assert ServerTls().context() is ServerTls(TlsMode.ENFORCING).context()
    assert isinstance(ServerTls().context(), ssl.SSLContext)


def test_keys_and_passwords_stay_out_of_reprs(tmp_path: Path) -> None:
    assert "s3cret" not in repr(ServerTls(key_password="s3cret"))
    assert "s3cret" not in repr(ClientTls(key_password="s3cret"))
