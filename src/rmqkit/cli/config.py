"""`rmqkit config`: inspect the starter's `rocketmq.*` settings (Spring's `RocketMQProperties`).

`rmqkit config explain [--file F]` prints every effective key, its value (secrets masked) and
where it came from: default, env (environment or .env), file or init.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group(name="config")
def config_group() -> None:
    """Inspect the starter's rocketmq.* settings."""


@config_group.command()
@click.option(
    "--file",
    "-f",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A TOML or application.properties file (read under the environment and .env).",
)
def explain(file: Path | None) -> None:
    """Print each rocketmq.* key, its effective value and its source."""
    from rmqkit.errors import ConfigurationError
    from rmqkit.starter.settings import RocketSettings

    try:
        settings = RocketSettings.from_file(file) if file is not None else RocketSettings()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    rows = [("KEY", "VALUE", "SOURCE")]
    rows += [(key, value or "-", source) for key, value, source in settings.explain()]
    key_width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    for key, value, source in rows:
        click.echo(f"{key:<{key_width}}  {value:<{value_width}}  {source}")
