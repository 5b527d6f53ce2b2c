"""Hook specifications: the reference for plugin authors.

A tapyard plugin is a module or object with functions marked
``@tapyard.hookimpl`` whose names match the specs below. Connector packages
register their module under the entry-point group ``tapyard``::

    [project.entry-points.tapyard]
    acme = "tapyard_acme"

Rules every hook follows:

* Hooks are called with keyword arguments. An implementation may accept any
  subset of a spec's parameters, and must not give them defaults (pluggy does
  not pass defaults).
* Hooks run per connector, per stream or per page, never per record.
* A spec marked *firstresult* stops at the first non-None result; plugins
  registered later are called first, and the built-in implementations are
  registered with ``trylast=True`` so that any plugin can override them.
* A plugin that answers for one connector only checks ``connector.name`` and
  returns ``None`` for the others.

The built-in paginators, auth strategies and destinations are registered
through these same hooks by ``tapyard.plugins.builtins`` (one module per capability), exactly as a third-party
plugin would register its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import httpx
    import typer
    from pydantic import BaseModel

    from tapyard.base import AuthStrategy, Connector, Paginator, Stream
    from tapyard.http import RateLimiter

hookspec = pluggy.HookspecMarker("tapyard")


# -- discovery ---------------------------------------------------------------


@hookspec
def tapyard_register_connectors(register: Callable[[Connector], None]) -> None:
    """Register the connectors this plugin provides.

    :param register: call it once per :class:`tapyard.Connector` instance.

    Called lazily, the first time the core needs the list of connectors (never
    at import time). Keep it cheap: do not import vendor SDKs here; import them
    inside :meth:`Connector.open`.
    """


# -- auth ----------------------------------------------------------------------


@hookspec
def tapyard_register_auth_strategies(register: Callable[[str, type[AuthStrategy]], None]) -> None:
    """Register auth strategy classes by kind name (``"api_key"``, ``"bearer"``, ...).

    :param register: call ``register(kind, cls)``; ``cls`` subclasses
        :class:`tapyard.AuthStrategy`, is built with ``cls.from_credentials(model)``
        (by default: the credential's fields as keyword arguments), and declares
        its credential model as a nested ``Options`` class (a
        :class:`tapyard.Credentials` subclass), which ``tapyard creds add``
        validates stored fields against.

    The stock kinds are ``api_key``, ``bearer``, ``basic``,
    ``oauth2_client_credentials``, ``oauth2_refresh_token``,
    ``oauth2_authorization_code``, ``jwt_bearer``, ``aws``, ``azure`` and ``gcp``.
    """


@hookspec(firstresult=True)
def tapyard_auth_strategy(
    connector: Connector, config: BaseModel, credentials: BaseModel | None
) -> AuthStrategy | None:
    """Build the auth strategy that signs this run's requests.

    :param connector: the connector being run.
    :param config: its validated configuration.
    :param credentials: the credential for this run (a :class:`tapyard.Credentials`
        model, validated against the connector's model for its kind, carrying a
        ``token_store`` when it came from the vault), or None when there is none.
    :return: an :class:`tapyard.AuthStrategy`, or None to leave the choice to
        the next plugin. Stops at the first non-None result. The built-in
        implementation returns no strategy when ``credentials`` is None, and
        otherwise ``cls.from_credentials(credentials)`` for the strategy class
        registered under the credential's ``kind`` field, after registering its
        secret values with the redactor.
    """


# -- secret backends -------------------------------------------------------------


@hookspec
def tapyard_register_secret_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register secret backends (where the vault keeps credentials) by URL scheme.

    :param register: call ``register(scheme, factory)``; ``factory(url, key)``
        returns a ``tapyard_credentials.SecretBackend`` for a vault URL of that
        scheme (``--vault URL`` or ``TAPYARD_VAULT``). ``key`` is the
        ``tapyard_credentials.VaultKey`` the user gave (or None): backends that
        encrypt with their own key management ignore it.

    The built-ins are ``file`` (the local encrypted vault, also used for plain
    paths) and ``aws-secretsmanager`` (``aws-secretsmanager://REGION/PREFIX``;
    the ``aws`` extra). Import the backend's SDK inside ``factory``, not at
    module level.
    """


# -- pagination ----------------------------------------------------------------


@hookspec
def tapyard_register_paginators(register: Callable[[str, type[Paginator]], None]) -> None:
    """Register paginator classes by kind name (``"cursor"``, ``"offset"``, ...).

    :param register: call ``register(kind, cls)``; ``cls`` subclasses
        :class:`tapyard.Paginator`, a pydantic model whose fields are its options.
    """


@hookspec(firstresult=True)
def tapyard_stream_paginator(connector: Connector, stream: Stream) -> Paginator | None:
    """Choose the paginator that walks ``stream``'s pages.

    :return: a :class:`tapyard.Paginator` instance, or None to leave the choice
        to the next plugin. Stops at the first non-None result. The built-in
        implementation returns the paginator the stream (or its connector)
        declares. Override it to page an API that no stock paginator fits.
    """


# -- rate limits ---------------------------------------------------------------


@hookspec(firstresult=True)
def tapyard_rate_limit_policy(connector: Connector, config: BaseModel) -> Mapping[str, float] | None:
    """The static rate limit for a run of ``connector``.

    :return: a mapping with ``rate`` (requests per second, a ceiling the
        limiter reaches) and optionally ``burst`` (bucket size), ``concurrency``
        (requests in flight at once), ``learn`` (False: ignore rate-limit
        headers) and ``max_wait`` (the longest wait slept rather than failing
        the stream); see :class:`tapyard.RateLimitSettings`. None leaves it to
        the next plugin. Stops at the first non-None result. The built-in
        implementation returns the connector's declared ``rate_limit``, or no
        limit. A ``rate_limit`` key in the user's config, ``sync(rate_limit=...)``
        and ``tapyard sync --rate`` override it for a run. Every worker of one
        credential shares the resulting bucket.
    """


@hookspec
def tapyard_rate_limit_learn(
    connector: Connector, response: httpx.Response, limiter: RateLimiter
) -> None:
    """Learn from a response's headers how fast the vendor lets us go.

    :param response: a response of this run (any status, 429 included): an
        ``httpx.Response`` on the REST path, a :class:`tapyard.http.SdkReply`
        on the SDK path (both have ``status_code`` and case-insensitive
        ``headers``).
    :param limiter: the run's shared limiter; call ``limiter.learn(headers)``
        with standard ``RateLimit-*``/``X-RateLimit-*`` headers, or
        ``limiter.penalize(seconds)`` for vendor-specific signals.

    Called once per HTTP response. The built-in implementation already feeds
    the standard headers to the limiter; implement this for vendor headers
    such as Salesforce's ``Sforce-Limit-Info``.
    """


# -- schema mapping ------------------------------------------------------------


@hookspec(firstresult=True)
def tapyard_stream_schema(connector: Connector, stream: Stream) -> type[BaseModel] | None:
    """The pydantic model that one record of ``stream`` must satisfy.

    :return: a pydantic model class, or None to leave it to the next plugin.
        Stops at the first non-None result. The built-in implementation returns
        ``stream.schema_model``. The destination table is created from this
        model and every record is validated against it.
    """


@hookspec(firstresult=True)
def tapyard_map_records(
    connector: Connector, stream: Stream, records: Sequence[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    """Map one page of vendor records into the shape of the stream schema.

    :param records: the records of one page, as the vendor sent them.
    :return: the mapped records (a new list, or the same one changed in
        place), or None to leave them to the next plugin. Stops at the first
        non-None result. The built-in implementation returns them unchanged.

    Called once per page, before validation: do per-record work inside it, in
    a plain loop or comprehension, rather than in a hook per record.
    """


@hookspec(firstresult=True)
def tapyard_json_schema(
    connector: Connector, stream: Stream, model: type[BaseModel]
) -> dict[str, Any] | None:
    """Export the JSON Schema of ``stream`` (as ``tapyard discover`` shows it).

    :return: a JSON Schema dict, or None to leave it to the next plugin. Stops
        at the first non-None result. The built-in implementation returns
        ``model.model_json_schema()`` with ``x-primary-key`` and
        ``x-cursor-field`` added.
    """


# -- destinations --------------------------------------------------------------


@hookspec
def tapyard_register_destinations(register: Callable[[str, Callable[[str], Any]], None]) -> None:
    """Register destination factories by URL scheme (``"sqlite"``, ``"jsonl"``, ...).

    :param register: call ``register(scheme, factory)``; ``factory(url)``
        returns a :class:`tapyard.Destination` for a ``--to`` URL of that scheme.
    """


# -- command line --------------------------------------------------------------


@hookspec
def tapyard_register_commands(cli: typer.Typer) -> None:
    """Add commands or command groups to the ``tapyard`` CLI.

    :param cli: the root typer application; use ``cli.command()`` or
        ``cli.add_typer()``. Import heavy modules inside the command functions
        so that ``tapyard --help`` stays fast.
    """
