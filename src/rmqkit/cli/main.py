"""The `rmqkit` command (click): one group, a sub-command per job."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from rmqkit.cli.admin import admin_group
from rmqkit.cli.bench import bench_group
from rmqkit.cli.config import config_group
from rmqkit.cli.dashboard import dashboard_command
from rmqkit.cli.run import run_command

_TLS_CONFIG = click.option(
    "--tls-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A RocketMQ tls.properties file (tls.server.mode, tls.server.certPath, ...).",
)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def cli(verbose: bool) -> None:
    """rmqkit: RocketMQ for Python services."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Keep the store here instead of in a temporary folder.",
)
@click.option("--messages", default=2000, show_default=True, help="Orders to write.")
def demo(data_dir: Path | None, messages: int) -> None:
    """Write orders into a store, read them back by queue, tag and key, crash it, recover it."""
    from rmqkit.cli.store_demo import run_store_demo

    raise SystemExit(asyncio.run(run_store_demo(data_dir, messages)))


@cli.command()
@click.option(
    "--config",
    "-c",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A RocketMQ broker.properties file. Without one: NameServer + broker in one process.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("rmqkit-data"),
    show_default=True,
    help="Where the embedded broker keeps its store (no --config).",
)
@click.option("--port", type=int, default=None, help="Broker port (overrides listenPort).")
@click.option(
    "--namesrv-port",
    type=int,
    default=9876,
    show_default=True,
    help="Port of the embedded NameServer (no --config).",
)
@_TLS_CONFIG
def serve(
    config: Path | None,
    data_dir: Path,
    port: int | None,
    namesrv_port: int,
    tls_config: Path | None,
) -> None:
    """Run a broker until SIGTERM/SIGINT (then finish requests, flush, checkpoint, exit)."""
    from rmqkit.cli.serve import run_broker
    from rmqkit.errors import ConfigurationError, StoreError

    try:
        asyncio.run(run_broker(config, data_dir, port, namesrv_port, tls_config))
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    except StoreError as exc:  # a store it cannot open or recover (wrong files, no disk space)
        raise click.ClickException(f"the message store failed: {exc}") from None


@cli.command()
@click.option("--port", type=int, default=9876, show_default=True, help="Listen port.")
@_TLS_CONFIG
def namesrv(port: int, tls_config: Path | None) -> None:
    """Run a NameServer until SIGTERM/SIGINT."""
    from rmqkit.cli.serve import run_namesrv
    from rmqkit.errors import ConfigurationError

    try:
        asyncio.run(run_namesrv(port, tls_config))
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


cli.add_command(run_command)
cli.add_command(admin_group)
cli.add_command(config_group)
cli.add_command(bench_group)
cli.add_command(dashboard_command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
