"""The connection and the look-ups every admin operation starts from: the NameServers' view of
the cluster, which broker to read from, which to write to, and one request with its error.
`AdminClient` (`rmqkit.client.admin`) builds on it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from rmqkit.client.instance import ClientConfig, ClientInstance
from rmqkit.common.lifecycle import AsyncLifecycle
from rmqkit.errors import BrokerResponseError, RemotingError, TopicNotExistError, error_for_code
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


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def read_addr(bd: BrokerData) -> str | None:
    """Where to read from one broker: its master, else its lowest slave (None: no member)."""
    addrs = bd.broker_addrs
    return addrs.get(MASTER_ID) or (addrs[min(addrs)] if addrs else None)


@dataclass(slots=True)
class BrokerSummary:
    """One broker as `mqadmin clusterList` shows it, from its runtime info. The figures are
    None when the broker did not answer (or does not report that figure)."""

    cluster: str
    broker_name: str
    broker_id: int
    addr: str
    version: str | None = None
    in_tps: float | None = None
    """Messages stored per second over the last 10 s."""
    out_tps: float | None = None
    """Messages handed to consumers per second over the last 10 s."""
    hour: float | None = None
    """Hours since the oldest message the broker keeps was stored."""
    space: float | None = None
    """The share of the CommitLog's disk in use."""
    in_total_yest: int | None = None
    out_total_yest: int | None = None
    in_total_today: int | None = None
    out_total_today: int | None = None
    runtime: dict[str, str] | None = None
    """The whole runtime-info table (None: the broker did not answer)."""

    def to_json(self) -> dict[str, Any]:
        """The figures under mqadmin's camel-case names, without the runtime table."""
        return {_camel(k): v for k, v in asdict(self).items() if k != "runtime"}

    def read_runtime(self, rt: dict[str, str], now_ms: int) -> None:
        """Fill the figures in from a runtime-info table: the rates of the last 10 s, day
        totals as differences of the midnight totals (as mqadmin computes them)."""

        def number(key: str) -> float | None:
            try:
                return float(rt[key].split()[0])
            except (KeyError, IndexError, ValueError):
                return None

        def diff(now_key: str, then_key: str) -> int | None:
            a, b = number(now_key), number(then_key)
            return int(a - b) if a is not None and b is not None else None

        earliest = number("earliestMessageTimeStamp")
        self.runtime = rt
        self.version = rt.get("brokerVersionDesc")
        self.in_tps, self.out_tps = number("putTps"), number("getTransferedTps")
        self.hour = round((now_ms - earliest) / 3_600_000, 2) if earliest else 0.0
        self.space = number("commitLogDiskRatio")
        self.in_total_yest = diff("msgPutTotalTodayMorning", "msgPutTotalYesterdayMorning")
        self.out_total_yest = diff("msgGetTotalTodayMorning", "msgGetTotalYesterdayMorning")
        self.in_total_today = diff("msgPutTotalTodayNow", "msgPutTotalTodayMorning")
        self.out_total_today = diff("msgGetTotalTodayNow", "msgGetTotalTodayMorning")


class AdminBase(AsyncLifecycle):
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

    async def start(self) -> None:
        await self.instance.start()

    async def stop(self) -> None:
        await self.instance.stop()

    async def _call(
        self, addr: str, code: int, body: bytes = b"", *, timeout_ms: int = 10_000, **ext: Any
    ) -> RemotingCommand:
        cmd = RemotingCommand(code, ext_fields={k: str(v) for k, v in ext.items()}, body=body)
        resp = await self.instance.invoke(addr, cmd, timeout_ms)
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

    async def brokers(self, cluster: str | None = None) -> list[BrokerSummary]:
        """Every member of every cluster (or of one) with its runtime figures, sorted by
        cluster, broker name and id; a member that does not answer keeps None figures."""
        info = await self.cluster()
        out = []
        for name in sorted(info.cluster_addr_table):
            if cluster is not None and name != cluster:
                continue
            for broker_name in sorted(info.cluster_addr_table[name]):
                bd = info.broker_addr_table.get(broker_name)
                for bid, addr in sorted(bd.broker_addrs.items()) if bd else ():
                    row = BrokerSummary(name, broker_name, bid, addr)
                    try:
                        row.read_runtime(await self.broker_runtime(addr), int(time.time() * 1000))
                    except (BrokerResponseError, RemotingError):
                        pass
                    out.append(row)
        return out

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
