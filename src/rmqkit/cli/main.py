"""The `rmqkit` command (click): one group, a sub-command per job."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click


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


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
