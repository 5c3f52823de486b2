"""`rmqkit run module:attr`: run a service's `RocketApp` until SIGTERM or SIGINT.

The target names a `RocketApp`, or a callable (sync or async) returning one, so a factory can read
settings first. With no name server configured the app starts an embedded cluster itself.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
from typing import Any

import click

from rmqkit.errors import ConfigurationError
from rmqkit.starter.app import RocketApp


def load_target(target: str) -> Any:
    """The object `module.path:attribute` names.

    Raises:
        click.BadParameter: the target is malformed or not found.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(f"{target!r}: use module.path:attribute (e.g. myservice.app:app)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: the service's own modules import
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise click.BadParameter(f"{module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


async def resolve_app(obj: Any) -> RocketApp:
    """A `RocketApp` from the target: the app itself or what a factory returns."""
    if not isinstance(obj, RocketApp) and callable(obj):
        obj = obj()
        if inspect.isawaitable(obj):
            obj = await obj
    if not isinstance(obj, RocketApp):
        raise ConfigurationError(f"the target is a {type(obj).__name__}, not a RocketApp")
    return obj


async def run_target(target: str) -> None:
    app = await resolve_app(load_target(target))
    await app.run()


@click.command("run")
@click.argument("target")
def run_command(target: str) -> None:
    """Run the RocketApp named by TARGET (module.path:attribute) until SIGTERM or SIGINT."""
    try:
        asyncio.run(run_target(target))
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
