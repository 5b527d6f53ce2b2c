"""Hints for one-line errors: "did you mean ...?" for a misspelt name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["did_you_mean", "missing_stream"]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"did you mean 'x'?"`` for the choice closest to ``name``, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.75)
    return f"did you mean {close[0]!r}?" if close else ""


def missing_stream(name: str, offered: Sequence[str], needs: Mapping[str, Sequence[str]]) -> str:
    """Why stream ``name`` cannot be read: it needs configuration, or no stream has that name.

    ``offered`` are the streams of this run's configuration; ``needs`` maps the
    streams offered only with some configuration to the fields they need.
    """
    if name in needs and name not in offered:
        fields = " and ".join(repr(f) for f in needs[name]) or "more configuration"
        return f"stream {name!r} needs configuration: set {fields} in the connector's config (--config)"
    hint = did_you_mean(name, [*offered, *needs])
    known = ", ".join(sorted(offered)) or "none"
    return f"no stream named {name!r} (streams: {known})" + (f"; {hint}" if hint else "")
