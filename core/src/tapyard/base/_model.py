"""The nouns every part of tapyard shares: requests for a page, pages, stream
state, paginators, auth strategies, streams and connectors.

These are deliberately small. The HTTP engine, the paginators, the declarative
REST connector and the sync engine all speak in these terms, and so do plugins.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, PrivateAttr, SecretStr

#: The plugin API this core implements. A connector built for another version is
#: refused at load time with a clear message. (Defined beside the manifests, which
#: are read without importing this module.)
from tapyard.base._manifest import PLUGIN_API_VERSION

if TYPE_CHECKING:
    import httpx

    from tapyard.base._context import PluginSet

__all__ = [
    "AuthStrategy",
    "Connector",
    "Credentials",
    "NoConfig",
    "Page",
    "PageRequest",
    "Paginator",
    "Source",
    "Stream",
    "StreamState",
    "TokenStore",
]

@dataclass(frozen=True, slots=True)
class PageRequest:
    """What to fetch next: a URL (relative to the connector's base URL, or absolute)
    and the query parameters to send with it.

    A paginator's ``next()`` returns one of these; the sync engine stores it in
    the stream state as the resume point, so it must be JSON-serialisable.
    """

    url: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_state(self) -> dict[str, Any]:
        return {"url": self.url, "params": dict(self.params)}

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> PageRequest:
        return cls(url=str(data["url"]), params=dict(data.get("params") or {}))


@dataclass(slots=True)
class Page:
    """One page of vendor records, as read, plus where to resume after it.

    ``resume`` is the request for the next page (``None`` on the last page).
    The sync engine commits it with the page's records, in one transaction.

    ``cursor_limit``, when set, is the highest cursor this read may commit when
    it ends, however high the records' cursors went: a listing not ordered by
    the cursor (an object store lists by key) may miss records changed after
    it began, and the next read must ask again from there. The last one given
    in a read holds.
    """

    records: list[dict[str, Any]]
    resume: PageRequest | None = None
    cursor_limit: Any = None
    #: primary keys (as ``{field: value}``) of records the source saw but does
    #: not send again because they did not change: a stream with
    #: ``deletes="listing"`` that filters unchanged records out of its complete
    #: listing names them here, so that its pass does not take them for deleted
    seen: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class StreamState:
    """The committed state of one stream.

    ``cursor`` is the high-water mark of the cursor field over every finished
    run: the next incremental run asks for records after it. ``resume`` is set
    while a run is under way (the next page to fetch) and ``pending`` is the
    highest cursor value already written by that unfinished run. A run that
    finishes folds ``pending`` into ``cursor`` and clears both.
    """

    cursor: Any = None
    resume: PageRequest | None = None
    pending: Any = None
    #: the pass under way: its id (stamped on every row it writes, so that a
    #: complete pass can find the rows it did not see), when it started (UTC,
    #: ISO 8601) and whether it is a full refresh; ``None`` between passes
    pass_id: int | None = None
    started: str | None = None
    refresh: bool = False

    def to_json(self) -> dict[str, Any]:
        data = {
            "cursor": self.cursor,
            "resume": self.resume.to_state() if self.resume else None,
            "pending": self.pending,
        }
        if self.pass_id is not None:
            data |= {"pass_id": self.pass_id, "started": self.started, "refresh": self.refresh}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> StreamState:
        """The state saved as :meth:`to_json` made it. Raises :class:`ValueError`
        naming the field for a saved state of any other shape (a hand-edited row):
        an object, a resume point with a URL and params, an integer pass id, a
        timestamp text when it started. Whether the cursor fits its stream is the
        sync engine's to check (:func:`tapyard.engine._sync.state_problem`)."""
        if not data:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError(f"it is a JSON {type(data).__name__}, not an object")
        for name in ("cursor", "pending"):
            if isinstance(data.get(name), Mapping | list):
                raise ValueError(f"its {name} is a JSON {type(data[name]).__name__}, not a value")
        resume = data.get("resume")
        if resume and not (
            isinstance(resume, Mapping) and isinstance(resume.get("url"), str)
            and isinstance(resume.get("params") or {}, Mapping)
        ):
            raise ValueError("its resume point is not a request (a url and params)")
        pass_id = data.get("pass_id")
        if pass_id is not None and (not isinstance(pass_id, int) or isinstance(pass_id, bool)):
            raise ValueError("its pass_id is not an integer")
        started = data.get("started")
        if started is not None:
            try:
                dt.datetime.fromisoformat(str(started).replace("Z", "+00:00"))
            except ValueError:
                raise ValueError("its started is not a timestamp") from None
        refresh = data.get("refresh", False)
        if not isinstance(refresh, bool):
            raise ValueError("its refresh is not true or false")
        return cls(
            cursor=data.get("cursor"),
            resume=PageRequest.from_state(resume) if resume else None,
            pending=data.get("pending"),
            pass_id=pass_id,
            started=started,
            refresh=refresh,
        )


class Paginator(BaseModel, abc.ABC):
    """How a stream walks from one page to the next.

    A paginator is configuration, not state: every bit of position lives in the
    :class:`PageRequest` it returns, so a run can resume from a saved request.
    Options are pydantic fields, validated with ``extra="forbid"``.

    ``stable`` says whether a saved request still points at the same place in a
    later run (server-side cursors and page tokens do; offsets and page numbers
    over data that changes do not, nor do the stock next-link paginators unless
    told ``survives_changes``). For unstable paginators the sync
    engine resumes an interrupted run from the committed cursor instead.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The kind name connectors declare (``"cursor"``, ``"offset"``, ...).
    kind: ClassVar[str] = ""
    stable: ClassVar[bool] = True

    def resume_survives_changes(self) -> bool:
        """Whether a saved request still means the same position after the source
        changed (records added, updated, deleted) between the interruption and the
        resume. Default: :attr:`stable`.

        A position that names a record (Stripe's ``starting_after=<id>``) does
        not: when that record is updated, a listing in cursor order moves it to
        the end, and resuming after it would skip everything in between. The sync
        engine resumes such a read from the highest cursor written instead
        (``Stream.is_sorted``) or from the committed cursor.
        """
        return self.stable

    def first(self, url: str, params: Mapping[str, Any]) -> PageRequest:
        """The request for the first page, given the stream's URL and parameters."""
        return PageRequest(url=url, params=dict(params))

    @abc.abstractmethod
    def next(
        self,
        request: PageRequest,
        response: httpx.Response,
        body: Any,
        records: Sequence[Mapping[str, Any]],
    ) -> PageRequest | None:
        """The request for the page after ``request``, or ``None`` when it was the last.

        ``body`` is the parsed JSON of ``response``; ``records`` the records
        extracted from it.
        """


@runtime_checkable
class TokenStore(Protocol):
    """Where a strategy keeps a credential's tokens.

    ``load()`` returns the credential's current fields; ``save(fields)`` merges
    fields into it and must be durable when it returns; ``lock()`` is an
    exclusive, re-entrant lock on the credential that every process sharing the
    store respects. ``tapyard_credentials.VaultTokenStore`` implements it over
    the vault; :class:`~tapyard.MemoryTokenStore` in memory.
    """

    def load(self) -> Mapping[str, str]: ...

    def save(self, fields: Mapping[str, str]) -> None: ...

    def lock(self) -> AbstractContextManager[Any]: ...


class Credentials(BaseModel):
    """Base of the typed credential models: the fields one auth kind needs.

    A subclass pins ``kind`` (``kind: Literal["api_key"] = "api_key"``) and
    declares its fields, secrets only as ``SecretStr``. ``name`` is the name the
    credential is stored under in the vault (``None`` for one built in code): it
    keys the run's shared rate limiter and the lock around token refreshes.
    Everything else is a field stored, encrypted, in the vault.

    A credential loaded from the vault carries a :class:`~tapyard.TokenStore`
    (:attr:`token_store`), through which strategies that obtain tokens (OAuth)
    save them back, durably, before they use them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    name: str | None = None

    _token_store: TokenStore | None = PrivateAttr(default=None)

    @property
    def token_store(self) -> TokenStore | None:
        """Where obtained tokens are saved (the vault), or ``None`` (kept in memory)."""
        return self._token_store

    def with_token_store(self, store: TokenStore | None) -> Credentials:
        """A copy of these credentials that saves obtained tokens through ``store``."""
        copy = self.model_copy()
        copy._token_store = store
        return copy

    def fields(self) -> dict[str, str]:
        """The values to store in the vault: every field but ``kind`` and ``name``
        that is set, as plain strings (secrets revealed)."""
        return stored_fields(self)

    def secret_values(self) -> list[str]:
        """The plain values of every ``SecretStr`` field (to register with the redactor)."""
        return secret_values(self)


def stored_fields(credentials: BaseModel) -> dict[str, str]:
    """The vault fields of a credential model: every field but ``kind`` and ``name``
    that is not None, as plain strings."""
    fields: dict[str, str] = {}
    for key, value in credentials:
        if key in ("kind", "name") or value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        fields[key] = value if isinstance(value, str) else str(value)
    return fields


def secret_values(credentials: BaseModel) -> list[str]:
    """The plain values of every ``SecretStr`` field of ``credentials``."""
    return [value.get_secret_value() for _, value in credentials if isinstance(value, SecretStr)]


class AuthStrategy(abc.ABC):
    """Applies a credential to outgoing requests.

    The HTTP engine calls :meth:`apply` on every request it sends to the
    connector's own origin, and never on a redirect to another host. A
    strategy may be shared by the run's worker threads: ``apply`` and
    ``refresh`` must be thread-safe.

    A strategy class declares its credential model as a nested ``Options``
    class (a :class:`Credentials` subclass): it is what ``tapyard creds add``
    validates fields against for connectors that declare no model of their own.
    """

    #: The kind name connectors declare (``"api_key"``, ``"bearer"``, ...).
    kind: ClassVar[str] = ""

    @classmethod
    def credentials_model(cls) -> type[BaseModel] | None:
        """The credential model of this kind (the nested ``Options`` class), if any."""
        model = getattr(cls, "Options", None)
        return model if isinstance(model, type) and issubclass(model, BaseModel) else None

    @classmethod
    def from_credentials(cls, credentials: BaseModel) -> AuthStrategy:
        """Build the strategy from a credential model. The default passes every
        field but ``kind`` and ``name`` as keyword arguments; strategies that keep
        tokens override it to take ``credentials.token_store``."""
        return cls(**{key: value for key, value in credentials if key not in ("kind", "name")})

    @abc.abstractmethod
    def apply(self, request: httpx.Request) -> None:
        """Add the credential to ``request`` in place (headers or query)."""

    def refresh(self) -> bool:
        """Called after a 401. Return True if the credential was refreshed and
        the request should be tried once more."""
        return False

    def query_params(self) -> frozenset[str]:
        """Names of the query parameters :meth:`apply` adds. They carry secrets, so
        they are dropped from every request saved as a resume point."""
        return frozenset()


class Stream(BaseModel):
    """A stream as discovery reports it and as the sync engine writes it.

    ``schema_model`` is a pydantic model of one record; the destination table
    is created from it and each record is validated against it. Records that
    fail go to the dead-letter table.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str
    schema_model: type[BaseModel]
    primary_key: tuple[str, ...] = ("id",)
    cursor_field: str | None = None
    #: True when the vendor returns records in ascending cursor order with
    #: unique cursor values: an interrupted read may then restart after the
    #: highest cursor written instead of the committed one.
    is_sorted: bool = False
    #: False when the listing is not in cursor order (object stores list by
    #: key): a record changed behind the read position would then be missed,
    #: so a pass commits no cursor later than the moment it started (less
    #: ``cursor_lookback``), and its interrupted read is finished, not trusted.
    ordered_by_cursor: bool = True
    #: Seconds subtracted from the saved cursor before an incremental read asks
    #: for records after it: for vendors whose cursor has a coarse resolution
    #: (whole seconds) or whose filter is strict (``>``), so that records sharing
    #: the boundary value are read again; upserts absorb the overlap.
    cursor_lookback: float = 0.0
    #: How records deleted at the source reach the destination: ``"vendor"``
    #: (the vendor reports them: a soft-delete flag, delete events),
    #: ``"listing"`` (every pass lists every record, so rows a complete pass did
    #: not see are marked ``_tapyard_deleted_at``, or removed with
    #: ``hard_delete``), or ``"none"`` (deletes never reach the destination).
    deletes: Literal["vendor", "listing", "none"] = "none"
    description: str = ""

    def since(self, state: StreamState) -> Any:
        """The cursor value an incremental read of this stream asks for records after.

        The committed cursor; for a sorted listing (``is_sorted``) whose
        interrupted pass wrote records past it, the highest cursor written. Both
        less ``cursor_lookback`` (in seconds for timestamps, in units for
        numbers), so that records sharing the boundary value are read again.
        ``None`` when there is nothing to ask after (read everything).
        """
        value = state.cursor
        if self.is_sorted and self.ordered_by_cursor and state.pending is not None:
            value = state.pending
        if value is None or not self.cursor_lookback:
            return value
        return shift_cursor(value, -self.cursor_lookback)


def shift_cursor(value: Any, seconds: float) -> Any:
    """``value`` moved by ``seconds``: an ISO 8601 timestamp (written back in the same
    style: a ``Z`` stays a ``Z``), a datetime, or a number. Anything else is
    returned unchanged."""
    import datetime as dt

    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value + (int(seconds) if isinstance(value, int) and seconds == int(seconds) else seconds)
    if isinstance(value, dt.datetime):
        return value + dt.timedelta(seconds=seconds)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
        moved = (parsed + dt.timedelta(seconds=seconds)).isoformat()
        if value.endswith(("Z", "z")) and moved.endswith("+00:00"):
            moved = moved[:-6] + "Z"
        return moved
    return value


class Source(abc.ABC):
    """An open connection to one vendor for one run: made by :meth:`Connector.open`."""

    @abc.abstractmethod
    def streams(self) -> list[Stream]:
        """The streams this source can read."""

    def partitions(self, stream: Stream) -> list[dict[str, Any]]:
        """The independent parts of ``stream`` that may be read at once.

        Each partition is a JSON-serialisable mapping (a date range, a shard,
        a region); each has its own state. The default is one partition, ``{}``.
        """
        return [{}]

    @abc.abstractmethod
    def read(self, stream: Stream, state: StreamState, partition: Mapping[str, Any]) -> Iterator[Page]:
        """Yield the pages of one ``partition`` of the stream, starting after ``state``.

        When ``state.resume`` is set and still means the same position, start
        from that request; otherwise start from the first page, asking only for
        records whose cursor is past ``state.cursor`` where the vendor allows it.
        """

    def check(self) -> None:  # noqa: B027 - optional hook with a sensible default
        """Raise a :class:`~tapyard.TapyardError` if the source cannot be read.

        The default reads nothing; connectors should override it with a cheap call.
        """

    @property
    def http_stats(self) -> Mapping[str, int]:
        """Counters of HTTP work done so far (requests, retries, ...)."""
        return {}


class NoConfig(BaseModel):
    """The configuration of a connector that takes none."""

    model_config = ConfigDict(extra="forbid")


class Connector(abc.ABC):
    """A connector definition, registered through ``tapyard_register_connectors``.

    Subclasses set the class attributes or pass them to ``__init__``; the core
    fills ``version`` and ``distribution`` from the installed package.
    """

    name: str = ""
    description: str = ""
    config_model: type[BaseModel] = NoConfig
    auth_kinds: Sequence[str] = ("none",)
    #: Credential models by auth kind, for kinds whose fields differ from the
    #: registered strategy's ``Options`` (other defaults, extra checks).
    credential_models: Mapping[str, type[BaseModel]] = {}
    #: Streams offered only when some configuration is given, by stream name:
    #: the config fields each needs (``{"s3_objects": ("bucket",)}``).
    #: ``tapyard connectors info`` lists them, and asking for such a stream
    #: without them says what to set instead of "no stream named".
    stream_config: Mapping[str, Sequence[str]] = {}
    plugin_api: int = PLUGIN_API_VERSION
    version: str = "0"
    distribution: str | None = None

    @abc.abstractmethod
    def streams(self, config: BaseModel) -> list[Stream]:
        """The streams this connector offers for ``config`` (discovery)."""

    def stream_names(self) -> list[str]:
        """The stream names to list without any configuration or network call.

        The default asks :meth:`streams` with the default configuration and
        gives an empty list when the connector needs configuration to know.
        """
        try:
            return [s.name for s in self.streams(self.config_model())]
        except Exception:
            return []

    @abc.abstractmethod
    def open(self, config: BaseModel, context: RunContext) -> contextlib.AbstractContextManager[Source]:
        """Open a source for one run; closing it releases every resource."""

    def credential_model(
        self, kind: str, strategies: Mapping[str, type[AuthStrategy]] | None = None
    ) -> type[BaseModel]:
        """The model a credential of ``kind`` must fit to be used with this connector.

        The connector's own model from :attr:`credential_models`, else the model
        of the auth strategy registered for that kind in ``strategies`` (a plugin
        set's ``auth_strategies()``; default: the process default set's). Raises
        :class:`~tapyard.ConfigError` when the connector takes no such credential.
        """
        from tapyard.base._exceptions import ConfigError

        takes = [k for k in self.auth_kinds if k != "none"]
        if kind not in takes:
            from tapyard.base._hints import did_you_mean

            listed = ", ".join(takes) if takes else "none: it needs no credentials"
            hint = did_you_mean(kind, takes)
            raise ConfigError(
                f"connector {self.name!r} does not take {kind!r} credentials (it takes {listed})"
                + (f"; {hint}" if hint else "")
            )
        model = self.credential_models.get(kind)
        if model is None:
            if strategies is None:
                from tapyard.base._context import default_plugin_set

                strategies = default_plugin_set().auth_strategies()
            strategy = strategies.get(kind)
            model = strategy.credentials_model() if strategy is not None else None
        if model is None:
            raise ConfigError(
                f"connector {self.name!r} takes {kind!r} credentials, but no installed auth "
                "strategy declares their fields"
            )
        return model

    def parse_config(self, raw: Mapping[str, Any]) -> BaseModel:
        """Validate raw configuration against :attr:`config_model`."""
        from tapyard.base._config import validate_model

        return validate_model(self.config_model, raw, what=f"config for {self.name!r}")


@dataclass
class RunContext:
    """What a source needs from the core for one run: the run's plugins, its
    credentials, its flags and the store of its rate limiters, passed in (never
    looked up in process globals), so that runs in one process stay apart.

    Give ``plugins`` (a :class:`tapyard.plugins.Plugins`); ``pm`` alone (a
    manager from ``tapyard.get_plugin_manager()`` or ``Plugins.pm``) also works
    and stands for the set it belongs to. With neither, the process default set.
    """

    #: the plugin manager (to call hooks): ``plugins.pm``
    pm: Any = None
    #: credential values for this run (a :class:`Credentials` model), or None
    credentials: BaseModel | None = None
    #: HTTP policy overrides (a dict of :class:`tapyard.HttpPolicy` fields)
    http: Mapping[str, Any] = field(default_factory=dict)
    #: called with (connector, response) after every HTTP response
    on_response: Callable[..., None] | None = None
    #: rate-limit overrides for this run (``rate``, ``burst``, ``concurrency``,
    #: ``learn``, ``max_wait``): they win over the connector's policy hook
    rate_limit: Mapping[str, Any] = field(default_factory=dict)
    #: the hosts the connector's manifest lets it call (a
    #: ``tapyard.base.manifest.HostGuard``), or None when it declares none: every
    #: request is checked against it before it leaves the machine
    hosts: Any = None
    #: the run's plugin set (a :class:`tapyard.base.PluginSet`): the hooks, the
    #: registered paginators, auth strategies, destinations; filled from ``pm``
    #: (or the process default) when not given
    plugins: PluginSet = None  # type: ignore[assignment]
    #: where the run's rate limiters live (a ``tapyard.http.LimiterStore``): runs
    #: handed one store share one budget per credential; None: the default store
    limiters: Any = None

    def __post_init__(self) -> None:
        from tapyard.base._context import default_plugin_set, plugin_set_of

        if self.plugins is None:
            found = plugin_set_of(self.pm) if self.pm is not None else default_plugin_set()
            if found is None:
                raise TypeError(
                    "RunContext(pm=...) needs a plugin manager made by tapyard (tapyard.get_plugin_manager() "
                    "or tapyard.plugins.Plugins().pm); or pass plugins=tapyard.plugins.Plugins(...)"
                )
            self.plugins = found
        if self.pm is None:
            self.pm = self.plugins.pm
