"""typer command classes for every tapyard command.

Two things typer 0.29 does that a person reading ``--help`` should not pay for:

- Its own ``--help`` option has no default, so its value is ``None`` when
  ``--help`` is not given, and typer coerces that value through pydantic:
  merely parsing any command line imported pydantic, about a quarter of what
  ``tapyard connectors list`` costs at start-up. These classes give that
  option the default ``False``, which is what an absent flag means anyway.
- Its usage lines and help show internal metavars: ``{name}`` for a required
  argument, ``<str>`` and ``<list[str]>`` for option values. These classes
  show the conventional ``NAME`` and ``--config CONFIG`` instead.

:func:`complete` gives every command of an app (plugin commands included)
these classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

__all__ = ["Command", "Group", "complete"]


def _false_by_default(option: Any) -> Any:
    if option is not None and option.default is None:
        option.default = False
    return option


class _Argument(TyperArgument):
    """An argument shown as ``NAME`` (``[NAME]`` when optional), not ``{name} <str>``."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def display_type(self, ctx: Any) -> str:
        return ""


def _tidy(params: list[Any]) -> list[Any]:
    """``params`` with conventional metavars: the upper-cased name where typer has none."""
    for param in params:
        if isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = (param.name or "value").upper()
            if type(param) is TyperArgument:
                param.__class__ = _Argument
        elif isinstance(param, TyperOption) and param.metavar is None and not (param.is_flag or param.count):
            param.metavar = (param.name or "value").upper()
    return params


def _parse(parse: Any, ctx: Any, args: list[str]) -> list[str]:
    """``parse(ctx, args)``, with a misspelt option answered by "did you mean '--x'?"."""
    try:
        return list(parse(ctx, args))
    except typer.TyperException as exc:
        # typer's NoSuchOption (of its own copy of click) lists "possible options"
        possible = getattr(exc, "possibilities", None)
        name = getattr(exc, "option_name", None)
        if not possible or not isinstance(name, str):
            raise
        from difflib import get_close_matches

        close = get_close_matches(name, list(possible), n=1, cutoff=0.0)
        hint = f"did you mean {close[0]!r}?" if close else ""
        kind: Any = type(exc)
        raise kind(name, f"No such option: {name}; {hint}", ctx=getattr(exc, "ctx", None)) from None


# typer (>= 0.29) bases its classes on its own copy of click (private), so the mixin
# names it for the type checker only
if TYPE_CHECKING:
    from typer._click.core import Command as _TyperBase
else:
    _TyperBase = object


class _Plain(_TyperBase):
    """What :class:`Group` and :class:`Command` change in typer's classes (placed
    before them in the bases): ``--help`` defaults to ``False``, help has plain
    metavars, and a misspelt option gets a suggestion."""

    def get_help_option(self, ctx: Any) -> Any:
        return _false_by_default(super().get_help_option(ctx))

    def get_params(self, ctx: Any) -> list[Any]:
        return _tidy(super().get_params(ctx))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return _parse(super().parse_args, ctx, args)


class Group(_Plain, TyperGroup):
    """A typer group whose ``--help`` defaults to ``False`` and whose help has plain metavars."""


class Command(_Plain, TyperCommand):
    """A typer command whose ``--help`` defaults to ``False`` and whose help has plain metavars."""


def complete(app: typer.Typer) -> None:
    """Give every command and group of ``app`` (recursively) :class:`Command` and :class:`Group`.

    Commands and groups registered with a class of their own keep it.
    """
    for command in app.registered_commands:
        if command.cls is None or command.cls is TyperCommand:
            command.cls = Command
    for info in app.registered_groups:
        if not isinstance(info.cls, type) or info.cls is TyperGroup:
            info.cls = Group
        sub = info.typer_instance
        if sub is not None:
            if not isinstance(sub.info.cls, type) or sub.info.cls is TyperGroup:
                sub.info.cls = Group
            complete(sub)
