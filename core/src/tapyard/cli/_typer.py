"""typer command classes for the commands on the start-up path.

typer 0.29 coerces every option's value through pydantic unless it is a bool
flag whose value is already a bool. Its own ``--help`` option has no default,
so its value is ``None`` when ``--help`` is not given, and merely parsing any
command line imports pydantic for it: about a quarter of what ``tapyard
connectors list`` costs at start-up. These classes give that option the
default ``False``, which is what an absent flag means anyway.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup

__all__ = ["Command", "Group"]


def _false_by_default(option: Any) -> Any:
    if option is not None and option.default is None:
        option.default = False
    return option


class Group(TyperGroup):
    """A typer group whose ``--help`` defaults to ``False``."""

    def get_help_option(self, ctx: Any) -> Any:
        return _false_by_default(super().get_help_option(ctx))


class Command(TyperCommand):
    """A typer command whose ``--help`` defaults to ``False``."""

    def get_help_option(self, ctx: Any) -> Any:
        return _false_by_default(super().get_help_option(ctx))
