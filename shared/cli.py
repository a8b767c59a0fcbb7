"""What every dcign command does alike: user errors as one line and a non-zero exit."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from .errors import DcignError


def _reporting_errors(invoke, ctx: click.Context):
    try:
        return invoke(ctx)
    except DcignError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("\ninterrupted: finished work is kept; rerun the same command to resume",
                   err=True)
        ctx.exit(130)


class DcignGroup(click.Group):
    """A click group whose commands report DcignError as `Error: ...` with no traceback."""

    def invoke(self, ctx: click.Context):
        return _reporting_errors(super().invoke, ctx)


class DcignCommand(click.Command):
    """The same error handling for a single command (its own super(): the group's zero-argument
    super() cannot be borrowed by another class)."""

    def invoke(self, ctx: click.Context):
        return _reporting_errors(super().invoke, ctx)


def split_choices(values: tuple[str, ...], allowed: list[str], option: str) -> tuple[str, ...]:
    """Accept `--opt a --opt b` and `--opt a,b`; refuse names outside `allowed` in one line."""
    names = [v.strip() for value in values for v in value.split(",") if v.strip()]
    for name in names:
        if name not in allowed:
            raise DcignError(f"unknown {option} {name!r}: choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(names))  # de-duplicated, order kept


def default_of(cls: type, name: str) -> Any:
    """The default of a dataclass field, so a CLI option states no default of its own: the
    dataclass (a training config, a render recipe) is the one place each default lives."""
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise TypeError(f"{cls.__name__}.{name} has no default")
