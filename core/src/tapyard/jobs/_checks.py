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

__all__ = ["check_job"]


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
