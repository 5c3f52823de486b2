"""What every `rmqkit admin` command shares: the options that say which cluster and how to
reach it, running one coroutine against an `AdminClient` with every failure turned into one
line, and printing rows as a table or as JSON."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from rmqkit.client.admin import AdminClient
from rmqkit.errors import RmqkitError
from rmqkit.protocol.acl import SessionCredentials
from rmqkit.protocol.route import BodyError
from rmqkit.remoting.tls import ClientTls
from rmqkit.remoting.tls_config import load_tls

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

Column = tuple[str, str]
"""A table column: the row key (also the JSON key) and the heading mqadmin prints."""


@dataclass(frozen=True, slots=True)
class Target:
    """The cluster a command talks to, and how."""

    namesrv: str
    credentials: SessionCredentials | None = None
    tls: ClientTls | None = None

    def run(self, work: Callable[[AdminClient], Awaitable[T]]) -> T:
        """Run `work` against a started `AdminClient` (see `run_async`)."""

        async def main() -> T:
            async with AdminClient(
                self.namesrv, instance_name=f"ADMIN-{time.time_ns()}",
                credentials=self.credentials, tls=self.tls,
            ) as admin:  # fmt: skip
                return await work(admin)

        return self.run_async(main)

    def run_async(self, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run `main` in a new event loop; a failure becomes a `ClickException` (exit status 1,
        one line), never a traceback."""
        try:
            return asyncio.run(main())
        except (RmqkitError, BodyError, OSError) as exc:
            raise click.ClickException(str(exc) or type(exc).__name__) from None


def cluster_options(command: F) -> F:
    """Add -n, --access-key, --secret-key, --tls and --tls-config; the command gets a `Target`
    as its first argument instead."""

    @functools.wraps(command)
    def wrapper(
        namesrv: str,
        access_key: str | None,
        secret_key: str | None,
        tls: bool,
        tls_config: Path | None,
        **kwargs: Any,
    ) -> Any:
        if (access_key is None) != (secret_key is None):
            raise click.UsageError("--access-key and --secret-key go together")
        credentials = (
            SessionCredentials(access_key, secret_key)
            if access_key is not None and secret_key is not None
            else None
        )
        client_tls: ClientTls | None = None
        if tls_config is not None:
            try:
                client_tls = load_tls(config_file=tls_config).client or ClientTls()
            except RmqkitError as exc:
                raise click.ClickException(str(exc)) from None
        elif tls:
            client_tls = ClientTls()
        return command(Target(namesrv, credentials, client_tls), **kwargs)

    options = [
        click.option("-n", "--namesrvAddr", "namesrv", envvar="NAMESRV_ADDR", required=True,
                     metavar="HOST:PORT[;HOST:PORT]",
                     help="NameServer addresses (default: $NAMESRV_ADDR)."),
        click.option("--access-key", envvar="RMQKIT_ACCESS_KEY", default=None,
                     help="ACL access key (default: $RMQKIT_ACCESS_KEY)."),
        click.option("--secret-key", envvar="RMQKIT_SECRET_KEY", default=None,
                     help="ACL secret key (default: $RMQKIT_SECRET_KEY)."),
        click.option("--tls", is_flag=True, help="Connect over TLS (RocketMQ's tls.enable)."),
        click.option("--tls-config", type=click.Path(exists=True, dir_okay=False,
                     path_type=Path), default=None,
                     help="A tls.properties file with tls.client.* keys (implies --tls)."),
    ]  # fmt: skip
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document instead of a table."
)


def print_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> None:
    """Rows as aligned columns under mqadmin's `#Heading`s; a row lacks no key of `columns`."""
    cells = [[f"#{title}" for _, title in columns]]
    cells += [[_cell(row[key]) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def emit(rows: Sequence[dict[str, Any]], columns: Sequence[Column], as_json: bool) -> None:
    if as_json:
        print_json(list(rows))
    else:
        print_table(rows, columns)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def format_ms(ms: int) -> str:
    """A store time as mqadmin prints one (`yyyy-MM-dd HH:mm:ss,SSS`, local time); 0 is '-'."""
    if ms <= 0:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) + f",{ms % 1000:03d}"


def parse_time(text: str) -> int:
    """A point in time as mqadmin takes one: `now`, milliseconds since the epoch, or
    `yyyy-MM-dd#HH:mm:ss:SSS` (local time). Raises `click.BadParameter`."""
    if text == "now":
        return int(time.time() * 1000)
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        day, clock = text.split("#")
        hms, _, millis = clock.rpartition(":")
        t = time.strptime(f"{day} {hms}", "%Y-%m-%d %H:%M:%S")
        return int(time.mktime(t)) * 1000 + int(millis)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not 'now', milliseconds since the epoch, or yyyy-MM-dd#HH:mm:ss:SSS"
        ) from None


def where_options(command: F) -> F:
    """-c CLUSTER / -b BROKER_ADDR: where a change goes (every master of the cluster, or one
    broker); with neither, every master of every cluster."""
    command = click.option("-b", "--brokerAddr", "broker_addr", default=None,
                           metavar="HOST:PORT", help="One broker.")(command)  # fmt: skip
    return click.option("-c", "--clusterName", "cluster", default=None,
                        help="Every master of this cluster.")(command)  # fmt: skip
