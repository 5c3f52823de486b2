"""The dashboard's cluster pages: every broker with its rates, and one broker's runtime figures
and configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from rmqkit.errors import BrokerResponseError

if TYPE_CHECKING:
    from rmqkit.dashboard.app import Dashboard

CHART_W, CHART_H = 240, 48


class ClusterPages:
    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/", self.overview)
        router.add_get("/brokers/{addr}", self.broker)
        router.add_get("/api/cluster", self.api_cluster)
        router.add_get("/api/brokers/{addr}", self.api_broker)

    async def overview(self, request: web.Request) -> web.Response:
        brokers = await self.dash.admin.brokers()
        charts = {b.addr: self.chart(b.addr) for b in brokers}
        return self.dash.render(request, "cluster.html", brokers=brokers, charts=charts)

    def chart(self, addr: str) -> dict[str, object] | None:
        """SVG polyline points of a broker's in and out rates (None: fewer than two points)."""
        series = list(self.dash.history.series.get(addr, ()))
        if len(series) < 2:
            return None
        top = max(max(p.in_tps, p.out_tps) for p in series) or 1.0
        step = CHART_W / (len(series) - 1)

        def line(values: list[float]) -> str:
            return " ".join(
                f"{i * step:.1f},{CHART_H - v / top * (CHART_H - 2) - 1:.1f}"
                for i, v in enumerate(values)
            )

        return {"in": line([p.in_tps for p in series]), "out": line([p.out_tps for p in series]),
                "top": top, "w": CHART_W, "h": CHART_H,
                "minutes": (series[-1].at_ms - series[0].at_ms) / 60_000}  # fmt: skip

    async def broker(self, request: web.Request) -> web.Response:
        addr = request.match_info["addr"]
        runtime = await self.dash.admin.broker_runtime(addr)
        try:
            config = await self.dash.admin.broker_config(addr)
        except BrokerResponseError:
            config = {}  # a broker that does not answer GET_BROKER_CONFIG still has figures
        return self.dash.render(request, "broker.html", addr=addr, runtime=runtime, config=config)

    async def api_cluster(self, request: web.Request) -> web.Response:
        return self.dash.json(
            [{**b.to_json(), "runtime": b.runtime} for b in await self.dash.admin.brokers()]
        )

    async def api_broker(self, request: web.Request) -> web.Response:
        addr = request.match_info["addr"]
        return self.dash.json({"runtime": await self.dash.admin.broker_runtime(addr),
                               "config": await self.dash.admin.broker_config(addr)})  # fmt: skip
