"""`rmqkit dashboard`: the web console of a cluster, served until SIGTERM or SIGINT."""

from __future__ import annotations

import ipaddress

import click

from rmqkit.cli.admin._common import Target, cluster_options


@click.command(name="dashboard")
@cluster_options
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to serve on (0.0.0.0 or :: for every interface).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to serve on (0: any free port, printed at start).",
)
@click.option("--read-only", is_flag=True, help="Show everything, change nothing.")
@click.option("--user", default="admin", show_default=True, help="User name (with --password).")
@click.option(
    "--password",
    envvar="RMQKIT_DASHBOARD_PASSWORD",
    default=None,
    help="Ask every visitor for --user and this password (HTTP basic "
    "authentication; default: $RMQKIT_DASHBOARD_PASSWORD, none).",
)
@click.option(
    "--sample-interval",
    type=click.FloatRange(0.5, 3600),
    default=5.0,
    show_default=True,
    help="Seconds between the rate samples of the charts.",
)
def dashboard_command(
    target: Target, host: str, port: int, read_only: bool, user: str, password: str | None,
    sample_interval: float,
) -> None:  # fmt: skip
    """Serve the web dashboard of the cluster whose NameServers are -n: brokers and their
    rates, topics, consumer groups and their lag, messages by key or id with their trace, and
    changes (topics, group settings, offset resets, test messages, dead-letter resends)."""
    if password is None and not _is_loopback(host):
        click.echo(f"warning: serving on {host} without --password: anyone who reaches this "
                   "port can change the cluster (or add --read-only)", err=True)  # fmt: skip

    async def main() -> None:
        from rmqkit.cli.serve import wait_for_signal  # not at import: every command would load
        from rmqkit.dashboard import Dashboard  # the server and the web framework

        dash = Dashboard(
            target.namesrv, read_only=read_only, user=user, password=password,
            credentials=target.credentials, tls=target.tls, sample_interval_s=sample_interval,
        )  # fmt: skip
        await dash.start(host, port)
        click.echo(f"dashboard of {target.namesrv} on {dash.url} (Ctrl-C stops it)")
        try:
            sig = await wait_for_signal()
        finally:
            await dash.stop()
        click.echo(f"dashboard stopped cleanly ({sig.name})")

    target.run_async(main)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
