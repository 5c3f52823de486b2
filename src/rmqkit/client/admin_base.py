"""The connection and the look-ups every admin operation starts from: the NameServers' view of
the cluster, which broker to read from, which to write to, and one request with its error.
`AdminClient` (`rmqkit.client.admin`) builds on it."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from rmqkit.client.instance import ClientConfig, ClientInstance
from rmqkit.errors import TopicNotExistError, error_for_code
from rmqkit.protocol.acl import SessionCredentials
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.route import (
    MASTER_ID,
    BrokerData,
    ClusterInfo,
    TopicRouteData,
    decode_cluster_info,
    decode_kv_table,
)
from rmqkit.remoting.tls import ClientTls


def read_addr(bd: BrokerData) -> str | None:
    """Where to read from one broker: its master, else its lowest slave (None: no member)."""
    addrs = bd.broker_addrs
    return addrs.get(MASTER_ID) or (addrs[min(addrs)] if addrs else None)


class AdminBase:
    """A started client instance and the cluster look-ups (see `AdminClient` for the rest)."""

    def __init__(
        self,
        namesrv_addr: str,
        *,
        instance_name: str = "ADMIN",
        credentials: SessionCredentials | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        self.instance = ClientInstance.shared(
            ClientConfig(namesrv_addr, instance_name, credentials=credentials, tls=tls)
        )

    async def __aenter__(self) -> Self:
        await self.instance.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.instance.stop()

    async def _call(self, addr: str, code: int, body: bytes = b"", **ext: Any) -> RemotingCommand:
        cmd = RemotingCommand(code, ext_fields={k: str(v) for k, v in ext.items()}, body=body)
        resp = await self.instance.invoke(addr, cmd, 10_000)
        if resp.code != ResponseCode.SUCCESS:
            raise error_for_code(resp.code)(
                resp.remark or "", addr=addr, request=RequestCode(code).name
            )
        return resp

    # -- cluster and topics -----------------------------------------------------------------------

    async def cluster(self) -> ClusterInfo:
        resp = await self.instance.invoke_namesrv(
            RemotingCommand(RequestCode.GET_BROKER_CLUSTER_INFO)
        )
        return decode_cluster_info(resp.body)

    async def broker_runtime(self, addr: str) -> dict[str, str]:
        """One broker's runtime info (GET_BROKER_RUNTIME_INFO): offsets, counters and, on
        rmqkit brokers, replication (`brokerRole`, `haSlaveCount`, `haSlaveBehindBytes`,
        `masterAlive` ...)."""
        resp = await self._call(addr, RequestCode.GET_BROKER_RUNTIME_INFO)
        return decode_kv_table(resp.body)

    async def master_addrs(self, cluster: str | None = None) -> dict[str, str]:
        """Broker name -> master address, for one cluster or all."""
        info = await self.cluster()
        names = set(info.cluster_addr_table.get(cluster, [])) if cluster else None
        return {n: bd.broker_addrs[0] for n, bd in info.broker_addr_table.items()
                if 0 in bd.broker_addrs and (names is None or n in names)}  # fmt: skip

    async def read_addrs(self, cluster: str | None = None) -> dict[str, str]:
        """Broker name -> where to read from it: its master, or its lowest slave while the
        master is down, for one cluster or all."""
        info = await self.cluster()
        names = set(info.cluster_addr_table.get(cluster, [])) if cluster else None
        return {n: addr for n, bd in info.broker_addr_table.items()
                if (names is None or n in names) and (addr := read_addr(bd))}  # fmt: skip

    async def route(self, topic: str) -> TopicRouteData:
        route = await self.instance.route(topic, refresh=True)
        if route is None:
            raise TopicNotExistError(f"no route for topic {topic!r}", request="route")
        return route

    async def write_addrs(
        self, cluster: str | None = None, broker_addr: str | None = None
    ) -> list[str]:
        """Where a change goes: the broker at `broker_addr` alone, or every master (of
        `cluster`). Raises when there is none, so a change is never silently applied nowhere."""
        addrs = [broker_addr] if broker_addr else list((await self.master_addrs(cluster)).values())
        if not addrs:
            where = f"in cluster {cluster!r}" if cluster else "registered with the NameServer"
            raise error_for_code(ResponseCode.SYSTEM_ERROR)(
                f"no master broker {where}", request="write_addrs"
            )
        return addrs
