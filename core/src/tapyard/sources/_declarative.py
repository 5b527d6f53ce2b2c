"""The declarative REST connector: a connector for a plain REST API written as data.

::

    connector = RestConnector(
        name="acme",
        base_url="https://api.acme.test/{config.region}",
        config_model=AcmeConfig,
        auth_kinds=["api_key"],
        paginator={"kind": "cursor", "page_size": "{config.page_size}"},
        streams=[
            RestStream(name="customers", path="/v1/customers", schema_model=Customer,
                       primary_key=("id",), cursor_field="updated_at",
                       cursor_param="updated_after", record_path="data"),
        ],
    )

Strings may hold ``{config.FIELD}`` placeholders, filled from the validated
configuration; a string that is exactly one placeholder keeps the field's
type (so ``"{config.page_size}"`` becomes an ``int``). Paginators are given as
instances or as ``{"kind": ..., **options}`` mappings. Every choice the core
makes about a stream still goes through the hooks, so a plugin can override
the paginator, schema, record mapping or auth of a declarative connector
without subclassing anything.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, model_validator

from tapyard.base import (
    ConfigError,
    Connector,
    HTTPStatusError,
    NoConfig,
    Page,
    PageRequest,
    Paginator,
    PluginError,
    ResponseError,
    ResumeRejectedError,
    RunContext,
    Source,
    Stream,
    StreamState,
    declares_decimals,
    model_from_json_schema,
)

if TYPE_CHECKING:
    import httpx

    from tapyard.base import PluginSet
    from tapyard.http import HttpEngine

__all__ = ["RestConnector", "RestSource", "RestStream", "SinglePage", "render", "streams_of"]

#: Statuses with which a vendor refuses a saved page token or next link (expired,
#: unknown, from a restarted service): the pass restarts from its cursor.
_REJECTED_RESUME = frozenset({400, 404, 409, 410, 422})

_PLACEHOLDER = re.compile(r"\{config\.([A-Za-z_][A-Za-z0-9_]*)\}")


class SinglePage(Paginator):
    """No pagination: the first response holds every record."""

    kind: ClassVar[str] = "none"

    def next(
        self, request: PageRequest, response: httpx.Response, body: Any, records: Sequence[Any]
    ) -> PageRequest | None:
        return None


def render(value: Any, config: BaseModel) -> Any:
    """Fill ``{config.FIELD}`` placeholders in ``value`` (strings, lists and dicts, recursively)."""
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            return _config_value(config, whole.group(1))
        return _PLACEHOLDER.sub(lambda m: str(_config_value(config, m.group(1))), value)
    if isinstance(value, Mapping):
        return {k: render(v, config) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, config) for v in value]
    return value


def _config_value(config: BaseModel, name: str) -> Any:
    if name not in type(config).model_fields:
        raise PluginError(f"placeholder {{config.{name}}} names no field of {type(config).__name__}")
    return getattr(config, name)


class RestStream(Stream):
    """A stream of a declarative REST connector.

    ``path`` is relative to the connector's base URL. ``record_path`` is the
    dotted path of the record list in the response body (``None``: the body is
    the list). ``cursor_param`` is the query parameter that carries the
    committed cursor for incremental reads. Give the schema either as
    ``schema_model`` (a pydantic model) or ``json_schema`` (a JSON Schema dict).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    path: str
    record_path: str | None = "data"
    params: dict[str, Any] = {}
    paginator: Paginator | dict[str, Any] | None = None
    cursor_param: str | None = None
    #: Query parameters of each partition, read concurrently with their own state.
    partitions: list[dict[str, Any]] = []

    @model_validator(mode="before")
    @classmethod
    def _schema_from_json(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "json_schema" in data:
            data = dict(data)
            schema = data.pop("json_schema")
            data["schema_model"] = model_from_json_schema(_model_name(data.get("name", "Record")), schema)
        return data


def _model_name(stream: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", stream) if part) or "Record"


def build_paginator(
    spec: Paginator | Mapping[str, Any] | None, config: BaseModel, plugins: PluginSet | None = None
) -> Paginator:
    """A paginator instance from an instance or a ``{"kind": ..., **options}`` mapping
    (the kind's class is the one ``plugins`` registered; default: the process default set's)."""
    if spec is None:
        return SinglePage()
    if isinstance(spec, Paginator):
        return spec
    from tapyard.base import default_plugin_set, validate_model

    options = dict(render(spec, config))
    kind = options.pop("kind", None)
    classes = (plugins or default_plugin_set()).paginators()
    if kind not in classes:
        known = ", ".join(sorted(classes))
        raise PluginError(f"unknown paginator kind {kind!r}; known kinds: {known}")
    return validate_model(classes[kind], options, what=f"options of paginator {kind!r}")


class RestConnector(Connector):
    """A connector for a plain REST API, defined as data. See the module docstring."""

    def __init__(
        self,
        *,
        name: str,
        streams: Sequence[RestStream],
        base_url: str = "",
        config_model: type[BaseModel] = NoConfig,
        description: str = "",
        auth_kinds: Sequence[str] = ("none",),
        paginator: Paginator | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        rate_limit: Mapping[str, float] | None = None,
        check_path: str | None = None,
        http: Mapping[str, Any] | None = None,
        lifespan: Callable[[BaseModel], contextlib.AbstractContextManager[Mapping[str, Any]]] | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.config_model = config_model
        self.auth_kinds = tuple(auth_kinds)
        self.base_url = base_url
        self.paginator = paginator
        self.headers = dict(headers or {})
        self.rate_limit = dict(rate_limit) if rate_limit else None
        self.check_path = check_path
        self.http = dict(http or {})
        self.lifespan = lifespan
        self._streams = list(streams)
        names = [s.name for s in self._streams]
        if len(set(names)) != len(names):
            raise PluginError(f"connector {name!r} declares a stream name twice: {names}")
        for stream in self._streams:
            if stream.cursor_field and not stream.cursor_param and stream.deletes != "listing":
                # The cursor would be saved but never sent: every run reads everything
                # (what a stream whose deletes are found by a full listing means to do).
                warnings.warn(
                    f"connector {name!r}: stream {stream.name!r} has cursor_field "
                    f"{stream.cursor_field!r} but no cursor_param, so incremental runs still "
                    "read every record; set cursor_param to the query parameter that asks "
                    "for records past the cursor",
                    UserWarning,
                    stacklevel=2,
                )

    def stream_names(self) -> list[str]:
        return [s.name for s in self._streams]

    def streams(self, config: BaseModel, plugins: PluginSet | None = None) -> list[Stream]:
        """The declared streams with placeholders filled and paginators built for ``config``
        (paginator kinds are looked up in ``plugins``; default: the process default set)."""
        built: list[Stream] = []
        for stream in self._streams:
            paginator = build_paginator(
                stream.paginator if stream.paginator is not None else self.paginator, config, plugins
            )
            update = {
                "params": render(stream.params, config),
                "paginator": paginator,
                "partitions": render(stream.partitions, config),
            }
            built.append(stream.model_copy(update=update))
        return built

    @contextlib.contextmanager
    def open(self, config: BaseModel, context: RunContext) -> Iterator[Source]:
        # The HTTP engine is imported here, not at module level, so that listing
        # connectors does not pay for httpx.
        from tapyard.http import (
            HttpEngine,
            HttpPolicy,
            limiter_key,
            limiters_of,
            rate_limit_settings,
        )

        # the run's hooks, looked up once: on_response below runs for every response
        hooks = context.plugins.hook
        with contextlib.ExitStack() as stack:
            overrides: Mapping[str, Any] = {}
            if self.lifespan is not None:
                overrides = stack.enter_context(self.lifespan(config))
            base_url = str(overrides.get("base_url") or render(self.base_url, config))
            if not base_url:
                raise ConfigError(f"connector {self.name!r} has no base URL")
            if context.credentials is None and "none" not in self.auth_kinds:
                # Refuse before any request: unauthenticated calls would only fail one by one.
                raise ConfigError(
                    f"connector {self.name!r} needs credentials ({', '.join(self.auth_kinds)}) and "
                    f"none were given: store them with tapyard creds add NAME --connector {self.name}, "
                    "then pass --creds NAME (from Python: credentials=...)"
                )
            auth = hooks.tapyard_auth_strategy(
                connector=self, config=config, credentials=context.credentials
            )
            limits = rate_limit_settings(
                hooks.tapyard_rate_limit_policy(connector=self, config=config), context.rate_limit
            )
            # One budget per credential: a stored one's is shared by every run
            # that uses it, in any process that shares the run's limiter store.
            key, scope = limiter_key(self.name, getattr(context.credentials, "name", None), base_url)
            limiter = limiters_of(context).limiter(key, limits, scope=scope)

            def on_response(response: httpx.Response) -> None:
                hooks.tapyard_rate_limit_learn(connector=self, response=response, limiter=limiter)
                if context.on_response is not None:
                    context.on_response(self, response)

            try:
                http_policy = HttpPolicy(**{**self.http, **context.http})
            except ValueError as exc:
                raise ConfigError(f"invalid HTTP settings: {exc}") from exc
            engine = stack.enter_context(
                HttpEngine(
                    base_url,
                    auth=auth,
                    policy=http_policy,
                    limiter=limiter,
                    on_response=on_response,
                    headers=render(self.headers, config),
                    hosts=context.hosts,
                )
            )
            secret_params = getattr(auth, "query_params", None)
            yield RestSource(
                self,
                config,
                engine,
                context.plugins,
                base_url=base_url,
                secret_params=secret_params() if callable(secret_params) else frozenset(),
            )


def streams_of(connector: Connector, config: BaseModel, plugins: PluginSet) -> list[Stream]:
    """``connector``'s streams for ``config`` in a run with ``plugins``: a
    :class:`RestConnector` builds its paginators from that set's kinds (unless a
    subclass chose its own ``streams``, which is then asked as it is)."""
    if isinstance(connector, RestConnector) and type(connector).streams is RestConnector.streams:
        return connector.streams(config, plugins)
    return connector.streams(config)


class RestSource(Source):
    """One run of a :class:`RestConnector`: reads pages through the HTTP engine."""

    def __init__(
        self,
        connector: RestConnector,
        config: BaseModel,
        engine: HttpEngine,
        plugins: PluginSet | Any,
        *,
        base_url: str = "",
        secret_params: frozenset[str] = frozenset(),
    ) -> None:
        """``plugins``: the run's plugin set (``RunContext.plugins``); a plugin manager
        made by tapyard stands for the set it belongs to."""
        from tapyard.base import plugin_set_of

        self.connector = connector
        self.base_url = base_url.rstrip("/")
        #: query parameters the auth strategy adds: never saved in a resume point
        self.secret_params = secret_params
        self.config = config
        self.engine = engine
        found = plugins if hasattr(plugins, "stream_paginator") else plugin_set_of(plugins)
        if found is None:
            raise TypeError("RestSource needs the run's plugin set (RunContext.plugins)")
        self.plugins: PluginSet = found
        self.pm = found.pm
        self._streams = streams_of(connector, config, self.plugins)

    def streams(self) -> list[Stream]:
        return list(self._streams)

    @property
    def http_stats(self) -> Mapping[str, int]:
        return self.engine.stats.as_dict()

    def check(self) -> None:
        if self.connector.check_path:
            self.engine.get_json(self.connector.check_path)
            return
        for stream in self._streams:
            if isinstance(stream, RestStream):
                paginator = self._paginator(stream)
                request = paginator.first(stream.path, stream.params)
                self.engine.get_json(request.url, params=request.params)
                return

    def _paginator(self, stream: Stream) -> Paginator:
        return self.plugins.stream_paginator(self.connector, stream)

    def partitions(self, stream: Stream) -> list[dict[str, Any]]:
        parts = getattr(stream, "partitions", None)
        return [dict(p) for p in parts] if parts else [{}]

    def read(self, stream: Stream, state: StreamState, partition: Mapping[str, Any]) -> Iterator[Page]:
        if not isinstance(stream, RestStream):
            raise PluginError(f"stream {stream.name!r} is not a RestStream")
        from tapyard.http import redact_url
        from tapyard.sources._paginators import dig

        paginator = self._paginator(stream)
        exact = declares_decimals(stream.schema_model)
        resumed = state.resume is not None and paginator.resume_survives_changes()
        if resumed:
            request: PageRequest | None = state.resume
        else:
            # A position that may have moved (an offset, a page number, a record's
            # id) is not trusted: read again from the cursor written so far
            # (Stream.since); upserts absorb what is read twice.
            params = {**stream.params, **partition}
            since = stream.since(state)
            if stream.cursor_param and since is not None:
                params[stream.cursor_param] = since
            request = paginator.first(stream.path, params)
        while request is not None:
            try:
                body, response = self.engine.get_json(request.url, params=request.params, exact_numbers=exact)
            except HTTPStatusError as exc:
                if resumed and exc.status_code in _REJECTED_RESUME:
                    raise ResumeRejectedError(
                        f"the saved resume point of stream {stream.name!r} was refused ({exc})"
                    ) from exc
                raise
            resumed = False
            records = body if stream.record_path is None else dig(body, stream.record_path)
            if records is None:
                records = []
            if not isinstance(records, list):
                raise ResponseError(
                    f"GET {redact_url(str(response.url))} held no list of records at "
                    f"{stream.record_path!r} (found {type(records).__name__})",
                    method="GET",
                    url=redact_url(str(response.url)),
                )
            request = paginator.next(request, response, body, records)
            yield Page(records=records, resume=self._relative(request))

    def _relative(self, request: PageRequest | None) -> PageRequest | None:
        if request is not None and self.secret_params:
            # A next link can echo the API key the strategy put in the query:
            # it must never reach the saved state (the engine adds it again).
            request = _without_params(request, self.secret_params)
        # A saved resume point must outlive a change of host (a new port for
        # the sample server, a new region): keep URLs under the base URL relative.
        base = self.base_url
        if request is None or not base or not request.url.startswith(base + "/"):
            return request
        return PageRequest(url=request.url[len(base) :], params=request.params)


def _without_params(request: PageRequest, names: frozenset[str]) -> PageRequest:
    """``request`` without the query parameters ``names``, in its params or its URL."""
    params = {k: v for k, v in request.params.items() if k not in names}
    url = request.url
    parts = urlsplit(url)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if k not in names]
        if len(kept) != len(pairs):
            url = urlunsplit(parts._replace(query=urlencode(kept)))
    if url == request.url and len(params) == len(request.params):
        return request
    return PageRequest(url=url, params=params)
