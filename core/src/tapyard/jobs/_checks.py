"""The checks a job definition passes before it is stored (``jobs add``, ``edit``, ``apply``).

Each refusal is a :class:`tapyard.ConfigError` whose message is one line naming
the job and what to fix: a bad cron expression, an unknown time zone, an
unknown connector, a configuration the connector refuses, a credential the
connector may not use (or that does not exist), a destination URL no plugin
handles. Nothing of a credential's value is read into the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from tapyard.jobs._spec import JobSpec, spec_error

__all__ = ["check_job", "spread_refusal"]

#: destinations that runs on several machines can write at once (``spread``)
SHARED_DESTINATIONS = ("postgresql", "postgres")


def spread_refusal(spec: JobSpec) -> str | None:
    """Why ``spec`` cannot be spread over several workers (one line), or None.

    A spread run's units run on any worker, on any machine, at the same time, and
    each commits its own streams' or partitions' state in the destination: the
    destination must be one every worker reaches and that takes several writers at
    once, PostgreSQL. A file destination (SQLite, DuckDB, JSONL) is refused, even
    with every worker on one machine: DuckDB and JSONL take one writer, SQLite
    one write transaction at a time, and one run already reads a stream's
    partitions in parallel threads into them (``concurrency``)."""
    if spec.spread == "none":
        return None
    scheme = (spec.to or "sqlite:").partition(":")[0].lower().partition("+")[0]
    if scheme in SHARED_DESTINATIONS:
        return None
    shown = scheme[:30] or "the default (sqlite)"
    return (
        f"job {spec.name!r}: spread needs a destination every worker writes at once (postgresql://...), "
        f"not {shown}: files live on one machine and take one writer; leave spread out "
        "(one run reads a stream's partitions in parallel already) or sync into PostgreSQL"
    )


def check_job(raw: Mapping[str, Any], *, vault: Any = None, vault_url: str | None = None) -> JobSpec:
    """``raw`` as a checked :class:`JobSpec`, or a ``ConfigError`` in one line.

    ``vault`` (an open vault) or ``vault_url`` is where ``creds`` is looked up.
    """
    import tapyard

    name = str(raw.get("name", ""))[:80] or None
    try:
        spec = JobSpec.model_validate(dict(raw))
    except ValidationError as exc:
        raise tapyard.ConfigError(spec_error(exc, name)) from None
    who = f"job {spec.name!r}"
    try:
        connector = tapyard.get_connector(spec.connector)
    except tapyard.TapyardError as exc:
        raise tapyard.ConfigError(f"{who}: {exc}") from None
    config = {k: v for k, v in spec.config.items() if k not in ("rate_limit", "policies")}
    try:
        connector.parse_config(config)
    except tapyard.TapyardError as exc:
        raise tapyard.ConfigError(f"{who}: {exc}") from None
    if spec.to:
        scheme = spec.to.partition(":")[0].lower()
        known = tapyard.collect_destinations()
        if scheme not in known and scheme.partition("+")[0] not in known:
            raise tapyard.ConfigError(
                f"{who}: no destination handles {scheme[:30]!r} URLs (known: {', '.join(sorted(known))})"
            )
    refused = spread_refusal(spec)
    if refused:
        raise tapyard.ConfigError(refused)
    if spec.creds:
        _check_credential(spec, connector, vault, vault_url, who)
    return spec


def _check_credential(spec: JobSpec, connector: Any, vault: Any, vault_url: str | None, who: str) -> None:
    import contextlib

    import tapyard

    with contextlib.ExitStack() as stack:
        try:
            opened = vault if vault is not None else stack.enter_context(tapyard.open_vault(vault_url))
            assert spec.creds is not None
            tapyard.load_credentials(opened, spec.creds, connector, actor=f"jobs:{spec.name}")
        except tapyard.TapyardError as exc:
            raise tapyard.ConfigError(f"{who}: {exc}") from None
        except Exception as exc:
            from tapyard_credentials import VaultError

            if isinstance(exc, VaultError):
                raise tapyard.ConfigError(f"{who}: {exc}") from None
            raise
