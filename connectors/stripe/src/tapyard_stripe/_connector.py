"""The Stripe connector: the stripe SDK, paged and paced by tapyard's hooks.

- Pages: the paginator comes from ``tapyard_stream_paginator`` (the stock
  ``cursor`` paginator: ``starting_after`` the last id, while ``has_more``);
  each page is one SDK ``list`` call.
- Expandable fields (``latest_charge``, ``customer``, ...): an id or an
  expanded object alike; the column holds the id, ``<field>_expanded`` the
  object when it came expanded (``expand`` asks Stripe to expand them).
- Incremental: new objects by ``created[gte]=<cursor>``, and changed (or
  deleted) ones from the events API (``type=<object>.*``, ``created[gte]``),
  each object once, as the newest event saw it. The cursor is ``changed_at``.
- Rate limits and retries: every request the SDK's HTTP client makes goes
  through tapyard's SDK-call path (``tapyard.http.SdkEngine``): the run's
  shared limiter, circuit breaker, retries with backoff (429s, 5xx and
  connection failures, and whatever ``Stripe-Should-Retry: true`` names; never
  what it names ``false``) and the run's HTTP counters. The SDK's own retries
  are off. ``rate_limit_per_s`` is the default ceiling (the policy hook, and
  ``--rate`` or a config ``rate_limit``, override it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

import tapyard
from tapyard import (
    AuthenticationError,
    ConfigError,
    Credentials,
    CursorPaginator,
    HTTPError,
    HTTPStatusError,
    Page,
    PageRequest,
    Paginator,
    ResponseError,
    RunContext,
    Stream,
    StreamState,
    TransportError,
)
from tapyard.http import SdkConnector, SdkSource
from tapyard_stripe import _models

__all__ = ["STREAMS", "StripeConfig", "StripeConnector", "StripeKey"]


@dataclass(frozen=True)
class _Spec:
    path: str  # the list endpoint
    service: str  # the StripeClient attribute
    model: type[BaseModel]
    object: str  # the ``object`` of its records
    events: str | None  # the event type family that changes them
    params: Mapping[str, Any] = ()  # type: ignore[assignment]


STREAMS: dict[str, _Spec] = {
    "customers": _Spec("/v1/customers", "customers", _models.Customer, "customer", "customer.*"),
    "charges": _Spec("/v1/charges", "charges", _models.Charge, "charge", "charge.*"),
    "payment_intents": _Spec(
        "/v1/payment_intents", "payment_intents", _models.PaymentIntent, "payment_intent", "payment_intent.*"
    ),
    "invoices": _Spec("/v1/invoices", "invoices", _models.Invoice, "invoice", "invoice.*"),
    "subscriptions": _Spec(
        "/v1/subscriptions", "subscriptions", _models.Subscription, "subscription",
        "customer.subscription.*", {"status": "all"},
    ),
    "products": _Spec("/v1/products", "products", _models.Product, "product", "product.*"),
    "prices": _Spec("/v1/prices", "prices", _models.Price, "price", "price.*"),
    "balance_transactions": _Spec(
        "/v1/balance_transactions", "balance_transactions", _models.BalanceTransaction,
        "balance_transaction", None,
    ),
    "events": _Spec("/v1/events", "events", _models.Event, "event", None),
}


class StripeKey(Credentials):
    """A Stripe secret key (``sk_...``) or, better, a restricted key (``rk_...``)
    with read access to the streams you sync."""

    kind: Literal["api_key"] = "api_key"
    api_key: SecretStr = Field(description="A secret (sk_) or restricted (rk_) API key.")
    stripe_account: str | None = Field(None, description="A connected account to read (Connect).")

    @field_validator("api_key")
    @classmethod
    def _shape(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("sk_", "rk_")):
            raise ValueError("a Stripe secret key starts with sk_ or, restricted, rk_")
        return value


class StripeConfig(BaseModel):
    """Configuration of the Stripe connector."""

    model_config = ConfigDict(extra="forbid")

    api_base: str = Field("https://api.stripe.com", description="The API address (an emulator's, for tests).")
    page_size: int = Field(100, ge=1, le=100, description="Objects per list call (Stripe's most: 100).")
    start_date: int | None = Field(None, ge=0, description="Read only objects created at or after this Unix time.")
    events_resync: bool = Field(
        True, description="On incremental runs, re-sync objects changed since (from the events API)."
    )
    max_network_retries: int = Field(5, ge=0, le=20, description="Retries of 429s, 5xx, connection failures and what Stripe-Should-Retry names.")
    rate_limit_per_s: float = Field(
        20, gt=0, description="Requests per second at most (Stripe allows 100 live, 25 in test mode)."
    )
    expand: dict[str, list[str]] = Field(
        {}, description="Expandable fields to ask Stripe to expand, per stream ({\"charges\": [\"customer\"]}); "
        "the column keeps the id, <field>_expanded the object.",
    )

    @model_validator(mode="after")
    def _expandable(self) -> StripeConfig:
        for stream, fields in self.expand.items():
            spec = STREAMS.get(stream)
            if spec is None:
                raise ValueError(f"expand names stream {stream!r}; streams: {', '.join(STREAMS)}")
            known = getattr(spec.model, "EXPANDABLE", ())
            unknown = [f for f in fields if f not in known]
            if unknown:
                raise ValueError(
                    f"expand: {stream} cannot expand {', '.join(unknown)} (expandable: {', '.join(known) or 'none'})"
                )
        return self


def _error(exc: Exception, method: str, path: str) -> HTTPError:
    """A stripe SDK error as a one-line tapyard error."""
    import stripe

    status = getattr(exc, "http_status", None) or 0
    said = " ".join(str(getattr(exc, "user_message", None) or exc or type(exc).__name__).split())
    where = f"{method} {path}"
    if isinstance(exc, stripe.AuthenticationError):
        return AuthenticationError(
            f"{where} was refused: {status or 401}; check the API key (Stripe said: {said})",
            status_code=status or 401, method=method, url=path,
        )
    if isinstance(exc, stripe.PermissionError):
        return AuthenticationError(
            f"{where} was refused: {status or 403}; the restricted key lacks read access (Stripe said: {said})",
            status_code=status or 403, method=method, url=path,
        )
    if isinstance(exc, stripe.APIConnectionError):
        return TransportError(f"{where} failed: cannot reach Stripe ({said})", method=method, url=path)
    body = getattr(exc, "http_body", None) or ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if status < 400 or body.lstrip()[:1] == "<":
        # The SDK's message quotes the body, and a 2xx body holds customer data: say only its size.
        shown = f"HTTP {status}, " if status else ""
        return ResponseError(
            f"{where} returned a response that is not Stripe JSON ({shown}{len(body):,} bytes)", method=method, url=path
        )
    return HTTPStatusError(f"{where} failed: {status}: {said[:300]}", status_code=status, method=method, url=path)


def _reply(result: Any, error: BaseException | None) -> Any:
    """What one exchange of the SDK's HTTP client said (its result, or the
    ``APIConnectionError`` it raised), for the SDK-call path."""
    from tapyard.http import SdkReply

    if result is None:
        return SdkReply.failed(error or RuntimeError("no response"))
    content, status, headers = result
    told = (headers or {}).get("stripe-should-retry")
    # Stripe asks clients to back off and retry on 429 (rate limits and lock
    # timeouts) and says when another try cannot help.
    retry = {"true": True, "false": False}.get(str(told).lower()) if told is not None else None
    size = len(content) if isinstance(content, bytes | str) else None
    return SdkReply.of(status, headers, size=size, retry=retry)


def _http_client(engine: Any) -> Any:
    """A stripe ``RequestsClient`` whose every request goes through the run's SDK-call
    path (limiter, breaker, retries, counters); the SDK's own retries are off."""
    import stripe

    class TapyardRequestsClient(stripe.RequestsClient):
        # The SDK's own annotations disagree (str in HTTPClient, bytes in RequestsClient).
        def request(
            self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None, **kwargs: Any
        ) -> Any:
            def send() -> Any:
                return stripe.RequestsClient.request(self, method, url, headers, post_data, **kwargs)

            return engine.exchange(send, _reply, method=method, url=url)

    return TapyardRequestsClient(timeout=engine.policy.read_timeout)


class StripeSource(SdkSource):
    """One run: a ``StripeClient`` with tapyard's HTTP client."""

    config: StripeConfig

    def __init__(self, connector: StripeConnector, config: StripeConfig, context: RunContext) -> None:
        import stripe

        super().__init__(
            connector, config, context, fallback=config.api_base, rate_field="rate_limit_per_s",
            policy={"max_attempts": config.max_network_retries + 1},
        )
        credentials = context.credentials
        self.account = getattr(credentials, "stripe_account", None)
        self.client: Any = None
        if credentials is not None:
            key = credentials.api_key.get_secret_value()  # type: ignore[attr-defined]
            from tapyard_credentials import redactor

            redactor.register(key)
            self.client = stripe.StripeClient(
                key,
                base_addresses={"api": config.api_base.rstrip("/")},
                http_client=_http_client(self.engine),
                max_network_retries=0,  # the SDK-call path retries
            )
        self._streams = connector.streams(config)

    def streams(self) -> list[Stream]:
        return list(self._streams)

    def check(self) -> None:
        self._list("balance_transactions", {"limit": 1})

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client._requestor._client.close()  # the SDK's requests session

    def _list(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        import stripe

        spec = STREAMS[name]
        if self.client is None:
            raise ConfigError(
                "stripe needs an api_key credential: tapyard creds add NAME --connector stripe, then --creds NAME"
            )
        options = {"stripe_account": self.account} if self.account else None
        try:
            service = getattr(self.client.v1, spec.service)
            page = service.list(params=dict(params), options=options) if options else service.list(params=dict(params))
        except stripe.StripeError as exc:
            raise _error(exc, "GET", spec.path) from exc
        body = page.to_dict()
        return body if isinstance(body, dict) else {}

    def _paginator(self, stream: Stream) -> Paginator:
        return tapyard.stream_paginator(self.connector, stream)

    def _pages(self, name: str, stream: Stream, request: PageRequest) -> Iterator[tuple[list[dict[str, Any]], PageRequest | None]]:
        paginator = self._paginator(stream)
        current: PageRequest | None = request
        while current is not None:
            body = self._list(name, current.params)
            records = list(body.get("data") or [])
            # an SDK list call has no HTTP response: the cursor paginator reads only the body
            current = paginator.next(current, None, body, records)  # type: ignore[arg-type]
            yield records, current

    def read(self, stream: Stream, state: StreamState, partition: Mapping[str, Any]) -> Iterator[Page]:
        spec = STREAMS[stream.name]
        paginator = self._paginator(stream)
        since = state.cursor
        listing: PageRequest | None
        if state.resume is not None and state.resume.url == spec.path:
            listing = state.resume
        else:
            params: dict[str, Any] = dict(spec.params)
            if self.config.expand.get(stream.name):
                params["expand"] = [f"data.{name}" for name in self.config.expand[stream.name]]
            lower = max(x for x in (since, self.config.start_date) if x is not None) if (
                since is not None or self.config.start_date is not None
            ) else None
            if lower is not None:
                # gte, not gt: created is in seconds, and an object created in the
                # same second as the cursor after the last run must not be lost.
                params["created"] = {"gte": int(lower)}
            listing = paginator.first(spec.path, params)
        cursor_field = stream.cursor_field
        for records, after in self._pages(stream.name, stream, listing):
            if cursor_field == "changed_at":
                for record in records:
                    record["changed_at"] = record.get("created")
            yield Page(records=records, resume=after)
        if since is not None and spec.events and self.config.events_resync:
            yield from self._changed(stream, spec, int(since))

    def _changed(self, stream: Stream, spec: _Spec, since: int) -> Iterator[Page]:
        """Objects changed since ``since``, once each, as the newest event saw them."""
        params = {"type": spec.events, "created": {"gte": since}}
        request = self._paginator(stream).first(STREAMS["events"].path, params)
        newest: dict[str, dict[str, Any]] = {}
        for events, _ in self._pages("events", stream, request):
            for event in events:  # newest first
                obj = (event.get("data") or {}).get("object") or {}
                if obj.get("object") != spec.object or not obj.get("id") or obj["id"] in newest:
                    continue
                record = dict(obj)
                record["changed_at"] = event.get("created")
                if str(event.get("type", "")).endswith(".deleted"):
                    record["deleted"] = True
                newest[obj["id"]] = record
        changed = sorted(newest.values(), key=lambda r: r.get("changed_at") or 0)
        size = self.config.page_size
        for start in range(0, len(changed), size):
            yield Page(records=changed[start : start + size], resume=None)


class StripeConnector(SdkConnector):
    """Stripe through the stripe SDK. See the module docstring."""

    name = "stripe"
    description = (
        "Stripe (stripe SDK): customers, charges, payment intents, invoices, subscriptions, "
        "products, prices, balance transactions and events; changes re-synced from events."
    )
    config_model = StripeConfig
    auth_kinds = ("api_key",)
    credential_models = {"api_key": StripeKey}

    def stream_names(self) -> list[str]:
        return list(STREAMS)

    def streams(self, config: BaseModel) -> list[Stream]:
        assert isinstance(config, StripeConfig)
        paginator = CursorPaginator(
            cursor_param="starting_after", id_field="id", has_more_field="has_more",
            limit_param="limit", page_size=config.page_size,
        )
        return [
            _PagedStream(
                name=name,
                schema_model=spec.model,
                primary_key=("id",),
                cursor_field="created" if name in ("events", "balance_transactions") else "changed_at",
                description=f"Stripe {spec.path}",
                paginator=paginator,
            )
            for name, spec in STREAMS.items()
        ]

    def source(self, config: BaseModel, context: RunContext) -> StripeSource:
        assert isinstance(config, StripeConfig)
        return StripeSource(self, config, context)


class _PagedStream(Stream):
    """A stream that names its paginator (the built-in ``tapyard_stream_paginator`` returns it)."""

    paginator: CursorPaginator
