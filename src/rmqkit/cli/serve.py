"""`rmqkit serve` and `rmqkit namesrv`: run servers until SIGTERM or SIGINT, then stop cleanly.

`serve --config broker-a.properties` runs one broker as its file describes. `serve` without a file
runs the embedded default: a NameServer on 9876 and a broker on 10911 in one process, data under
./rmqkit-data. TLS comes from `tls.*` keys (`rmqkit.remoting.tls_config`): in the broker.properties
file, in a tls.properties file (`--tls-config`) and in `RMQKIT_TLS_*` variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from rmqkit.common.java_properties import parse_properties
from rmqkit.remoting.tls_config import TlsSettings, load_tls
from rmqkit.server.broker.broker import Broker
from rmqkit.server.namesrv.namesrv import NameServer, NameServerSettings
from rmqkit.server.properties import load_broker_settings

log = logging.getLogger("rmqkit.cli")


async def wait_for_signal() -> signal.Signals:
    """Block until SIGTERM or SIGINT arrives; returns which."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[signal.Signals] = loop.create_future()

    def arrived(sig: signal.Signals) -> None:
        if not got.done():
            got.set_result(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, arrived, sig)
    try:
        return await got
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _tls_line(tls: TlsSettings) -> str:
    server = tls.server
    cert = str(server.cert_path) if server.cert_path else "a self-signed certificate"
    accepts = {"disabled": "plain only", "permissive": "plain and TLS", "enforcing": "TLS only"}
    line = f"TLS {server.mode.value}: {accepts[server.mode.value]}"
    if server.mode.value != "disabled":
        line += f", showing {cert}"
    return line


async def run_broker(
    config: Path | None,
    data_dir: Path,
    port: int | None,
    namesrv_port: int,
    tls_config: Path | None = None,
) -> None:
    """The broker of `config`, or the embedded NameServer + broker when there is none."""
    text = config.read_text(encoding="utf-8") if config is not None else ""  # noqa: ASYNC240
    props = parse_properties(text)
    tls = load_tls(props, base_dir=config.parent if config else None, config_file=tls_config)
    namesrv: NameServer | None = None
    if config is None:
        namesrv = NameServer(
            NameServerSettings(host="0.0.0.0", listen_port=namesrv_port), tls=tls.server
        )
        await namesrv.start()
        overrides: dict[str, object] = {"namesrv_addr": f"127.0.0.1:{namesrv.port}"}
    else:
        overrides = {}
    if port is not None:
        overrides["listen_port"] = port
    settings = load_broker_settings(config, **overrides)
    if config is None and "RMQKIT_STORE__STORE_PATH_ROOT_DIR" not in os.environ:
        # Only the store's place changes: every other store setting, environment included, stays.
        store = settings.store.model_copy(update={"store_path_root_dir": data_dir / "store"})
        settings = settings.model_copy(update={"store": store})
    broker = Broker(settings, tls=tls)
    await broker.start()
    where = (
        f"NameServer on 127.0.0.1:{namesrv.port}"
        if namesrv
        else f"registering with {settings.namesrv_addr or 'no NameServer'}"
    )
    if settings.is_master:
        replication = f"slaves replicate from {broker.ha_server_addr}"
    else:
        replication = "replicating from " + (
            settings.store.ha_master_address or "the master the NameServer names"
        )
    # The "listening on" line stays first: scripts and supervisors wait for it.
    print(f"rmqkit broker {settings.broker_name} listening on {broker.addr}, {where}", flush=True)
    role = settings.broker_role
    print(f"rmqkit broker {settings.broker_name} ({role}): {replication}", flush=True)
    print(f"rmqkit broker {settings.broker_name}: {_tls_line(tls)}", flush=True)
    try:
        sig = await wait_for_signal()
        print(f"{sig.name}: stopping", flush=True)
    finally:
        await broker.stop()
        if namesrv is not None:
            await namesrv.stop()
    print("stopped cleanly", flush=True)


async def run_namesrv(port: int, tls_config: Path | None = None) -> None:
    tls = load_tls(config_file=tls_config)
    ns = NameServer(NameServerSettings(host="0.0.0.0", listen_port=port), tls=tls.server)
    await ns.start()
    print(f"rmqkit NameServer listening on port {ns.port}", flush=True)
    print(f"rmqkit NameServer: {_tls_line(tls)}", flush=True)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            sig = await wait_for_signal()
            print(f"{sig.name}: stopping", flush=True)
    finally:
        await ns.stop()
    print("stopped cleanly", flush=True)
