"""The dashboard's web application: an aiohttp server, Jinja2 pages, and one `AdminClient`.

Everything it shows it asks the cluster over RocketMQ's admin requests, as `rmqkit admin`
does, so it works against rmqkit and Apache RocketMQ alike and holds no state of its own but
a short history of each broker's rates (`RateHistory`).

Changes (creating a topic, resetting offsets, sending a message ...) are HTML form POSTs. Each
form carries a token made when the dashboard starts; a POST without it is refused, so another
web page open in the same browser cannot make changes through the dashboard. `read_only`
refuses every change. With a password, every request needs HTTP basic authentication.
"""

from __future__ import annotations

import base64
import hmac
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import jinja2
import orjson
from aiohttp import web

from rmqkit.client.admin import AdminClient
from rmqkit.client.producer import Producer
from rmqkit.dashboard.cluster import ClusterPages
from rmqkit.dashboard.forms import FormError
from rmqkit.dashboard.groups import GroupPages
from rmqkit.dashboard.history import RateHistory
from rmqkit.dashboard.messages import MessagePages
from rmqkit.dashboard.topics import TopicPages
from rmqkit.errors import BrokerResponseError, RemotingError, RmqkitError, TopicNotExistError
from rmqkit.protocol.acl import SessionCredentials
from rmqkit.protocol.route import BodyError
from rmqkit.remoting.tls import ClientTls

log = logging.getLogger("rmqkit.dashboard")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def format_ms(ms: int | None) -> str:
    """A time in milliseconds since the epoch as local `yyyy-MM-dd HH:mm:ss.SSS`; 0 is '-'."""
    if not ms or ms <= 0:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) + f".{ms % 1000:03d}"


class Dashboard:
    """The web console of one cluster (the NameServers at `namesrv`).

    `start()` binds `host:port` (port 0: any free port, see `port`), `stop()` closes it.
    """

    def __init__(
        self,
        namesrv: str,
        *,
        read_only: bool = False,
        user: str = "admin",
        password: str | None = None,
        credentials: SessionCredentials | None = None,
        tls: ClientTls | None = None,
        sample_interval_s: float = 5.0,
    ) -> None:
        self.namesrv = namesrv
        self.read_only = read_only
        self._auth = (user, password) if password else None
        self.credentials = credentials
        self.tls = tls
        self.token = secrets.token_urlsafe(24)
        """The token every form carries (see the module's text)."""
        self.admin = AdminClient(
            namesrv, instance_name=f"DASHBOARD-{time.time_ns()}", credentials=credentials, tls=tls
        )
        self.history = RateHistory(self.admin, sample_interval_s)
        self._producer: Producer | None = None
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("rmqkit.dashboard", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["ms"] = format_ms
        self.app = web.Application(middlewares=[self._guard])
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.host = ""
        for pages in (ClusterPages(self), TopicPages(self), GroupPages(self), MessagePages(self)):
            pages.register(self.app.router)

    # -- running -------------------------------------------------------------------------------

    async def start(
        self, host: str = "127.0.0.1", port: int = 8080, *, sock: socket.socket | None = None
    ) -> None:
        """Connect to the cluster and serve on `host:port` (or on an already bound `sock`)."""
        await self.admin.start()
        try:
            self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
            await self._runner.setup()
            if sock is None:
                sock = socket.create_server((host, port), family=_family(host), reuse_port=False)
            site = web.SockSite(self._runner, sock)
            await site.start()
        except BaseException:
            await self.stop()
            raise
        self.host, self.port = sock.getsockname()[:2]
        await self.history.start()
        log.warning("dashboard of %s serving on %s%s", self.namesrv, self.url,
                    " (read-only)" if self.read_only else "")  # fmt: skip

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def stop(self) -> None:
        await self.history.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        await self.admin.stop()

    async def producer(self) -> Producer:
        """The dashboard's producer (for "send a message"), started on first use."""
        if self._producer is None:
            p = Producer(
                "RMQKIT_DASHBOARD_PRODUCER", self.namesrv,
                instance_name=f"DASHBOARD-P-{time.time_ns()}",
                credentials=self.credentials, tls=self.tls,
            )  # fmt: skip
            await p.start()
            self._producer = p
        return self._producer

    # -- answering -----------------------------------------------------------------------------

    def render(
        self, request: web.Request, template: str, http_status: int = 200, **context: Any
    ) -> web.Response:
        page = self.templates.get_template(template).render(
            token=self.token, read_only=self.read_only, namesrv=self.namesrv,
            path=request.path, **context,
        )  # fmt: skip
        return web.Response(text=page, status=http_status, content_type="text/html")

    @staticmethod
    def json(value: Any, status: int = 200) -> web.Response:
        return web.Response(body=orjson.dumps(value), status=status,
                            content_type="application/json")  # fmt: skip

    async def form(self, request: web.Request) -> Mapping[str, str]:
        """A POSTed form, once its token is checked (a change, so refused when read-only)."""
        if self.read_only:
            raise web.HTTPForbidden(text="this dashboard is read-only (--read-only)")
        data = await request.post()
        if not hmac.compare_digest(str(data.get("_token", "")).encode(), self.token.encode()):
            raise web.HTTPForbidden(
                text="the form's token is missing or stale: reload the page and try again"
            )
        return {k: v for k, v in data.items() if isinstance(v, str)}

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Basic authentication when a password is set; the cluster's errors as pages."""
        if self._auth is not None and not self._authorised(request):
            return web.Response(
                status=401, text="the dashboard needs a user name and password",
                headers={"WWW-Authenticate": 'Basic realm="rmqkit dashboard"'},
            )  # fmt: skip
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except FormError as exc:
            return self._error(request, 400, "Bad input", str(exc))
        except TopicNotExistError as exc:
            return self._error(request, 404, "No such topic", str(exc))
        except BrokerResponseError as exc:
            return self._error(request, 502, "The cluster refused", str(exc))
        except (RemotingError, OSError) as exc:
            return self._error(request, 502, "The cluster did not answer", str(exc))
        except (RmqkitError, BodyError) as exc:
            return self._error(request, 502, "The cluster's answer was not understood", str(exc))

    def _authorised(self, request: web.Request) -> bool:
        assert self._auth is not None
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        expected_user, expected_password = self._auth
        return hmac.compare_digest(user.encode(), expected_user.encode()) & hmac.compare_digest(
            password.encode(), expected_password.encode()
        )

    def _error(self, request: web.Request, status: int, title: str, detail: str) -> web.Response:
        if request.path.startswith("/api/"):
            return self.json({"error": title, "detail": detail}, status)
        return self.render(request, "error.html", status, title=title, detail=detail)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
