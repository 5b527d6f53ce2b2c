"""The Salesforce connector: simple-salesforce over a requests session that
tapyard paces, retries and re-authenticates.

- Auth: the OAuth 2.0 token endpoint of ``login_url`` (``password`` grant with
  the security token appended, ``refresh_token``, or the JWT bearer grant with
  an assertion signed by the core's :class:`tapyard.JwtBearerAuth`); the
  session id and instance URL it returns go to ``simple_salesforce.Salesforce``.
  After ``INVALID_SESSION_ID`` the session asks for a new token once and retries.
  A rotated refresh token (a connected app with refresh token rotation) is
  saved to the credential's token store (the vault, for a stored credential)
  under its lock before the new session id is used, and the stored refresh
  token is the one presented next time.
- Discovery: ``describe()`` of each configured sObject, its fields mapped to
  typed columns: compound fields (``Name``, address and location fields) as
  they come, and their parts (``FirstName``, ``BillingCity``, ...) as columns
  of their own. Numbers (``currency``, ``double``, ``percent``) are ``Decimal``,
  parsed from the response text digit for digit, never through a float.
- Reads: ``SELECT <fields> FROM <sObject> [WHERE SystemModstamp >= <cursor>]
  ORDER BY SystemModstamp, Id`` through ``queryAll`` (so deleted records come
  back with ``IsDeleted`` true), following ``nextRecordsUrl``. ``>=``: Salesforce
  stamps in milliseconds, and records changed in the millisecond of the saved
  cursor after the last run must not be lost; the boundary records read again
  are absorbed by the upserts. Or, for the
  sObjects in ``bulk_sobjects`` and those whose ``SELECT COUNT()`` for the run
  reaches ``bulk_threshold``, one Bulk API 2.0 query job (``_bulk``).
- Limits: every request goes through tapyard's SDK-call path
  (``tapyard.http.SdkEngine``): the run's shared limiter, circuit breaker,
  retries with backoff from ``retry_backoff_s`` (``REQUEST_LIMIT_EXCEEDED``,
  a 403, counts as a throttle like a 429; 5xx and connection failures) and
  the run's HTTP counters. Every reply goes to ``tapyard_rate_limit_learn``
  (which reads ``Sforce-Limit-Info``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, create_model, model_validator

from tapyard import (
    AuthenticationError,
    ConfigError,
    Credentials,
    HTTPError,
    HTTPStatusError,
    JwtBearerAuth,
    MemoryTokenStore,
    Page,
    PageRequest,
    ResponseError,
    RunContext,
    Stream,
    StreamState,
    TokenStore,
    TransportError,
)
from tapyard.http import SdkConnector, SdkSource
from tapyard_salesforce._bulk import COMPOUND_TYPES, read_bulk

__all__ = ["SalesforceConfig", "SalesforceConnector", "SalesforceJwt", "SalesforcePassword", "SalesforceRefreshToken"]

#: RFC 7523's grant type, as Salesforce's token endpoint expects it.
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Salesforce wants assertions that expire within 3 minutes.
ASSERTION_LIFETIME_S = 180


class SalesforcePassword(Credentials):
    """A user's username, password and security token, through a connected app
    (the OAuth 2.0 username-password flow)."""

    kind: Literal["salesforce_password"] = "salesforce_password"
    username: str
    password: SecretStr
    security_token: SecretStr | None = Field(None, description="Appended to the password (not needed from trusted IPs).")
    client_id: str = Field(description="The connected app's consumer key.")
    client_secret: SecretStr = Field(description="The connected app's consumer secret.")


class SalesforceRefreshToken(Credentials):
    """A connected app's refresh token (the OAuth 2.0 refresh token flow)."""

    kind: Literal["oauth2_refresh_token"] = "oauth2_refresh_token"
    client_id: str
    client_secret: SecretStr | None = None
    refresh_token: SecretStr


class SalesforceJwt(Credentials):
    """A connected app's private key and a user it is pre-authorized for (the
    OAuth 2.0 JWT bearer flow): no password or refresh token is stored."""

    kind: Literal["jwt_bearer"] = "jwt_bearer"
    client_id: str = Field(description="The connected app's consumer key (the assertion's iss).")
    username: str = Field(description="The user to act as (sub), pre-authorized for the connected app.")
    private_key: SecretStr = Field(
        description="The PEM private key whose certificate is uploaded to the connected app (RS256)."
    )
    audience: str | None = Field(
        None,
        description="aud (default: login_url, or https://login.salesforce.com / https://test.salesforce.com "
        "for a My Domain login_url).",
    )


def audience(login_url: str) -> str:
    """The default ``aud`` of a JWT assertion for ``login_url``: Salesforce takes
    login.salesforce.com (test.salesforce.com for sandboxes) even when users log
    in through My Domain; any other URL (an Experience Cloud site) is its own."""
    url = login_url.rstrip("/")
    host = url.split("://", 1)[-1].split("/", 1)[0].lower()
    if host.endswith(".sandbox.my.salesforce.com"):
        return "https://test.salesforce.com"
    if host.endswith(".my.salesforce.com"):
        return "https://login.salesforce.com"
    return url


class SalesforceConfig(BaseModel):
    """Configuration of the Salesforce connector."""

    model_config = ConfigDict(extra="forbid")

    login_url: str = Field(
        "https://login.salesforce.com",
        description="Where to get tokens: login.salesforce.com, test.salesforce.com, or My Domain.",
    )
    sobjects: list[str] = Field(["Account", "Contact"], min_length=1, description="The sObjects to sync, one stream each.")
    api_version: str = Field("59.0", pattern=r"^\d+\.\d$")
    batch_size: int = Field(2000, ge=200, le=2000, description="Records per query batch (Sforce-Query-Options).")
    include_deleted: bool = Field(True, description="Read through queryAll, so deleted records come back marked.")
    max_retries: int = Field(5, ge=0, le=20, description="Retries of REQUEST_LIMIT_EXCEEDED, 429, 5xx and connection errors.")
    retry_backoff_s: float = Field(1.0, ge=0, description="The first retry's wait; it doubles each time (at most 60 s).")
    rate_limit_per_s: float = Field(10, gt=0, description="Requests per second at most.")
    ca_bundle: str | None = Field(None, description="A CA certificate file to trust (a local fake's).")
    bulk_sobjects: list[str] = Field(
        [], description="sObjects always read through the Bulk API 2.0 (each must be in sobjects)."
    )
    bulk_threshold: int | None = Field(
        None, ge=0,
        description="The other sObjects go through the Bulk API 2.0 when a run would read at least this many "
        "records (a SELECT COUNT() with the run's filter first); 0: every sObject, without counting; "
        "unset: only bulk_sobjects.",
    )
    bulk_page_size: int = Field(
        50000, ge=100, le=1_000_000,
        description="Records per Bulk results request (maxRecords); records are streamed, so it sets the "
        "number of requests, not memory.",
    )
    bulk_poll_s: float = Field(2.0, gt=0, le=60, description="The first wait for a Bulk job; it doubles up to 30 s.")
    bulk_timeout_s: float = Field(3600, gt=0, description="A Bulk job still running after this is aborted.")

    @model_validator(mode="after")
    def _bulk_within_sobjects(self) -> SalesforceConfig:
        unknown = [name for name in self.bulk_sobjects if name not in self.sobjects]
        if unknown:
            raise ValueError(f"bulk_sobjects names {', '.join(unknown)}, not in sobjects; add it there too")
        return self


#: describe() types -> record types; numbers exact (``Decimal``: a currency field holds
#: 18 digits, more than a float carries)
_TYPES: dict[str, Any] = {
    "boolean": bool, "int": int, "long": int, "double": Decimal, "currency": Decimal, "percent": Decimal,
    "date": dt.date, "datetime": dt.datetime, "address": dict[str, Any], "location": dict[str, Any],
    # History objects' OldValue/NewValue hold any JSON value
    "anyType": Any, "complexvalue": Any,
}


def record_model(sobject: str, fields: Sequence[Mapping[str, Any]]) -> type[BaseModel]:
    """The pydantic model of one record of ``sobject``, from its describe() fields."""
    columns: dict[str, Any] = {}
    for field in fields:
        kind = _TYPES.get(str(field.get("type")), str)
        columns[str(field["name"])] = (kind | None, None)
    return create_model(sobject, __config__=ConfigDict(extra="ignore"), **columns)


def selected_fields(fields: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The fields to query: all but base64 ones (blobs, read one record at a time).
    The parts of compound fields (``FirstName`` of ``Name``, ``BillingCity`` of
    ``BillingAddress``) are kept: they are fields of their own, and Bulk queries
    can select only them."""
    return [f for f in fields if f.get("type") != "base64"]


def _soql_time(value: Any) -> str:
    """A cursor value as a SOQL datetime literal (UTC, milliseconds)."""
    stamp = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    stamp = stamp.astimezone(dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _since(cursor: Any) -> str:
    """The SOQL filter of an incremental read: the saved cursor's millisecond
    included (see the module docs)."""
    return f"SystemModstamp >= {_soql_time(cursor)}"


def _said(content: Any) -> tuple[str, str]:
    """(errorCode, message) of a Salesforce error body."""
    if isinstance(content, list) and content and isinstance(content[0], dict):
        content = content[0]
    if isinstance(content, dict):
        code = str(content.get("errorCode") or content.get("error") or "")
        message = str(content.get("message") or content.get("error_description") or "")
        return code, " ".join(message.split())
    return "", " ".join(str(content or "").split())[:200]


def _title(text: str) -> str:
    found = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    return f" ({' '.join(found.group(1).split())[:80]})" if found else ""


class _Stats:
    """The run's HTTP counters (the SDK-call path's) and the connector's own."""

    def __init__(self, engine: Any) -> None:
        self._lock = threading.Lock()
        self._engine = engine
        self.own = {"reauthenticated": 0, "bulk_jobs": 0}

    def add(self, name: str) -> None:
        with self._lock:
            self.own[name] += 1

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return {**self._engine.stats.as_dict(), **self.own}


def _reply(response: Any, error: BaseException | None) -> Any:
    """What one exchange said, for the SDK-call path: ``REQUEST_LIMIT_EXCEEDED`` (a 403)
    is Salesforce's throttle; ``Sforce-Limit-Info`` goes to the rate-limit hook."""
    from tapyard.http import SdkReply

    if response is None:
        return SdkReply.failed(error or RuntimeError("no response"))
    code, _ = _said(_json(response))
    limited = response.status_code == 403 and code == "REQUEST_LIMIT_EXCEEDED"
    return SdkReply.of(response.status_code, response.headers, throttled=limited, code=code or None)


def _session(source: SalesforceSource) -> Any:
    """A requests session that signs with the current token, sends every request
    through the run's SDK-call path (limiter, breaker, retries, counters),
    re-authenticates once after INVALID_SESSION_ID, and refuses HTML pages."""
    import requests

    config = source.config

    class TapyardSession(requests.Session):
        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
            method, url = str(method), str(url)
            shown = f"{method.upper()} {url.split('?')[0]}"
            if "/services/oauth2/token" in url:
                return self._send(method, url, shown, *args, **kwargs)
            reauthenticated = False
            while True:
                headers = dict(kwargs.pop("headers", None) or {})
                headers["Authorization"] = f"Bearer {source.token}"
                if "/query" in url and "/jobs/" not in url:  # SOQL batches; Bulk jobs page by maxRecords
                    headers["Sforce-Query-Options"] = f"batchSize={config.batch_size}"
                response = self._send(method, url, shown, *args, headers=headers, **kwargs)
                code, _ = _said(_json(response))
                if response.status_code == 401 and code == "INVALID_SESSION_ID" and not reauthenticated:
                    reauthenticated = True
                    source.stats.add("reauthenticated")
                    source.login()
                    continue
                if "html" in response.headers.get("content-type", "").lower():
                    raise ResponseError(
                        f"{shown} returned an HTML page, not Salesforce JSON{_title(response.text)}: "
                        f"{response.status_code}; is the org under maintenance?",
                        method=method.upper(), url=url.split("?")[0],
                    )
                return response

        def _send(self, method: str, url: str, shown: str, *args: Any, **kwargs: Any) -> requests.Response:
            request = super().request

            def send() -> requests.Response:
                return request(method, url, *args, **kwargs)

            try:
                response: requests.Response = source.engine.exchange(send, _reply, method=method, url=url)
            except requests.ConnectionError as exc:
                raise TransportError(f"{shown} failed: cannot reach Salesforce ({type(exc).__name__})",
                                     method=method.upper(), url=url.split("?")[0]) from exc
            return response

    session = TapyardSession()
    if config.ca_bundle:
        session.verify = config.ca_bundle
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    return session


#: Token stores of refresh-token credentials that came without one (built in
#: code, not loaded from the vault), by token endpoint, connected app and original
#: refresh token: a rotated token is kept for the life of the process, so a later
#: run in it presents the newest one instead of a spent one (which would revoke
#: them all). Only the vault keeps it across processes.
_MEMORY_STORES: dict[tuple[str, str, str], MemoryTokenStore] = {}
_MEMORY_LOCK = threading.Lock()


def token_store(creds: SalesforceRefreshToken, token_url: str) -> TokenStore:
    """Where the rotated refresh tokens of ``creds`` are kept: the vault for a
    stored credential (its ``token_store``), else memory for this process."""
    store = creds.token_store
    if store is not None:
        return store
    with _MEMORY_LOCK:
        key = (token_url, creds.client_id, creds.refresh_token.get_secret_value())
        return _MEMORY_STORES.setdefault(key, MemoryTokenStore({"refresh_token": key[2]}))


def _signer(creds: SalesforceJwt, config: SalesforceConfig) -> JwtBearerAuth:
    """The core's JWT bearer strategy, used only to sign assertions (RS256:
    iss the consumer key, sub the user, aud the login server, exp 3 minutes);
    the token request goes through the connector's session like the other grants,
    since Salesforce's answer carries the instance URL the core's token store drops."""
    token_url = config.login_url.rstrip("/") + "/services/oauth2/token"
    options = JwtBearerAuth.Options(
        name=creds.name, token_url=token_url, issuer=creds.client_id, subject=creds.username,
        audience=creds.audience or audience(config.login_url), private_key=creds.private_key,
        algorithm="RS256", assertion_lifetime_s=ASSERTION_LIFETIME_S,
    )
    return JwtBearerAuth(options)


def _json(response: Any) -> Any:
    if response.status_code < 400:
        return None
    try:
        return response.json()
    except ValueError:
        return None


class SalesforceSource(SdkSource):
    """One run: a token, a ``simple_salesforce.Salesforce`` client and the described streams."""

    config: SalesforceConfig

    def __init__(self, connector: SalesforceConnector, config: SalesforceConfig, context: RunContext) -> None:
        super().__init__(
            connector, config, context, fallback=config.login_url, rate_field="rate_limit_per_s",
            policy={"max_attempts": config.max_retries + 1, "backoff_base": config.retry_backoff_s,
                    "backoff_max": 60.0},
        )
        self.stats = _Stats(self.engine)
        self.credentials = context.credentials
        if not isinstance(self.credentials, SalesforcePassword | SalesforceRefreshToken | SalesforceJwt):
            raise ConfigError(
                "salesforce needs a salesforce_password, oauth2_refresh_token or jwt_bearer credential: "
                "tapyard creds add NAME --connector salesforce, then --creds NAME"
            )
        from tapyard_credentials import redactor

        for value in self.credentials.secret_values():
            redactor.register(value)
        self._signer = _signer(self.credentials, config) if isinstance(self.credentials, SalesforceJwt) else None
        self.session = _session(self)
        self.token = ""
        self.instance_url = ""
        self._login_lock = threading.Lock()
        self.login()
        from simple_salesforce.api import Salesforce

        self.sf = Salesforce(
            instance_url=self.instance_url, session_id=self.token, version=config.api_version, session=self.session,
            parse_float=Decimal, object_pairs_hook=dict,
        )
        self.fields: dict[str, list[Mapping[str, Any]]] = {}
        self._streams = [self._describe(name) for name in config.sobjects]

    def login(self) -> None:
        """Get a session id from the token endpoint (again, after one expired)."""
        creds = self.credentials
        url = self.config.login_url.rstrip("/") + "/services/oauth2/token"
        form: dict[str, str]
        if isinstance(creds, SalesforceRefreshToken):
            with self._login_lock:
                self._refresh(creds, url)
            return
        if isinstance(creds, SalesforcePassword):
            password = creds.password.get_secret_value()
            if creds.security_token is not None:
                password += creds.security_token.get_secret_value()
            form = {"grant_type": "password", "client_id": creds.client_id,
                    "client_secret": creds.client_secret.get_secret_value(),
                    "username": creds.username, "password": password}
        else:
            assert self._signer is not None
            # a fresh assertion for every login: each one expires within 3 minutes
            form = {"grant_type": JWT_BEARER_GRANT, "assertion": self._signer.assertion(url)}
        with self._login_lock:
            self._use(self._grant(url, form))

    def _refresh(self, creds: SalesforceRefreshToken, url: str) -> None:
        """The refresh token grant, under the token store's lock (which the vault
        holds across processes): the refresh token presented is the stored one,
        and a rotated one is saved, durably, before the new session id is used.
        If saving fails, the session id is not used."""
        store = token_store(creds, url)
        with store.lock():
            presented = store.load().get("refresh_token") or creds.refresh_token.get_secret_value()
            form = {"grant_type": "refresh_token", "client_id": creds.client_id, "refresh_token": presented}
            if creds.client_secret is not None:
                form["client_secret"] = creds.client_secret.get_secret_value()
            body = self._grant(url, form, " (a refresh token that was revoked, expired or already used needs a new "
                                          "one: tapyard creds add NAME --replace)")
            rotated = body.get("refresh_token")
            if isinstance(rotated, str) and rotated and rotated != presented:
                from tapyard_credentials import redactor

                redactor.register(rotated)
                store.save({"refresh_token": rotated})
            self._use(body)

    def _grant(self, url: str, form: Mapping[str, str], hint: str = "") -> dict[str, Any]:
        """The token endpoint's answer to ``form``; a refusal is one line."""
        response = self.session.post(url, data=dict(form), headers={"Accept": "application/json"})
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            code, message = _said(body if body is not None else response.text)
            if self._signer is not None:
                hint = (" (the certificate uploaded to the connected app must match private_key, and the "
                        "user must be pre-authorized for it)")
            raise AuthenticationError(
                f"POST {url} was refused: {response.status_code}; check the credential{hint} "
                f"(Salesforce said: {code or 'no JSON'}: {message or _title(response.text)})",
                status_code=response.status_code or 401, method="POST", url=url,
            )
        from tapyard_credentials import redactor

        redactor.register(str(body["access_token"]))
        return body

    def _use(self, body: Mapping[str, Any]) -> None:
        """Sign the following requests with the session id of a token answer."""
        self.token = str(body["access_token"])
        self.instance_url = str(body.get("instance_url") or self.instance_url)
        if getattr(self, "sf", None) is not None:
            self.sf.session_id = self.token
            self.sf.headers["Authorization"] = f"Bearer {self.token}"

    def call(self, what: str, call: Any) -> Any:
        """``call()``, with simple-salesforce's errors as one-line tapyard errors naming ``what``."""
        from simple_salesforce.exceptions import SalesforceError

        try:
            return call()
        except SalesforceError as exc:
            code, message = _said(exc.content)
            status = int(getattr(exc, "status", 0) or 0)
            said = f"{code}: {message}" if code else message
            if status == 401 or code == "INVALID_SESSION_ID":
                raise AuthenticationError(
                    f"{what} was refused: {status}; the session is expired or revoked and a new login "
                    f"did not help (Salesforce said: {said[:200]})", status_code=status or 401,
                ) from exc
            raise HTTPStatusError(f"{what} failed: {status}: {said[:300]}", status_code=status) from exc
        except ValueError as exc:
            raise ResponseError(f"{what} returned a response that is not Salesforce JSON") from exc

    def _describe(self, sobject: str) -> Stream:
        described = self.call(f"describe {sobject}", lambda: getattr(self.sf, sobject).describe())
        fields = selected_fields(list(described.get("fields") or []))
        names = {str(f["name"]) for f in fields}
        if "Id" not in names:
            raise ConfigError(f"sObject {sobject!r} has no Id field")
        self.fields[sobject] = fields
        return Stream(
            name=sobject, schema_model=record_model(sobject, fields), primary_key=("Id",),
            cursor_field="SystemModstamp" if "SystemModstamp" in names else None,
            description=str(described.get("label") or sobject),
        )

    def streams(self) -> list[Stream]:
        return list(self._streams)

    @property
    def http_stats(self) -> Mapping[str, int]:
        return dict(self.stats.counts)

    def close(self) -> None:
        self.session.close()

    def check(self) -> None:
        self.call("limits", self.sf.limits)

    def soql(self, stream: Stream, since: Any, *, bulk: bool = False) -> str:
        """The query of ``stream`` after ``since``. Bulk queries leave out compound
        fields (refused there) and ORDER BY (it stops Salesforce chunking the job;
        the cursor is the maximum seen, so order does not matter)."""
        fields = self.fields[stream.name]
        if bulk:
            fields = [f for f in fields if f.get("type") not in COMPOUND_TYPES]
        query = f"SELECT {', '.join(str(f['name']) for f in fields)} FROM {stream.name}"
        if since is not None and stream.cursor_field:
            query += f" WHERE {_since(since)}"
        if stream.cursor_field and not bulk:
            query += " ORDER BY SystemModstamp, Id"
        return query

    def bulk(self, stream: Stream, state: StreamState) -> bool:
        """Whether this run reads ``stream`` through the Bulk API 2.0: always for
        ``bulk_sobjects``, when a Bulk read is to be resumed, and when the records
        after the cursor reach ``bulk_threshold``."""
        threshold = self.config.bulk_threshold
        if stream.name in self.config.bulk_sobjects or threshold == 0:
            return True
        if threshold is None:
            return False
        if state.resume is not None and "/jobs/query/" in state.resume.url:
            return True
        query = f"SELECT COUNT() FROM {stream.name}"
        if state.cursor is not None and stream.cursor_field:
            query += f" WHERE {_since(state.cursor)}"
        deleted = self.config.include_deleted
        counted = self.call(f"counting {stream.name}", lambda: self.sf.query(query, include_deleted=deleted))
        return int(counted.get("totalSize") or 0) >= threshold

    def read(self, stream: Stream, state: StreamState, partition: Mapping[str, Any]) -> Iterator[Page]:
        if self.bulk(stream, state):
            yield from read_bulk(self, stream, state)
            return
        deleted = self.config.include_deleted
        what = f"SOQL query on {stream.name}"
        body: dict[str, Any] | None = None
        resume = state.resume
        if resume is not None and "/query" in resume.url and "/jobs/query/" not in resume.url:
            with contextlib.suppress(HTTPError):  # query locators expire: start again from the cursor
                body = self.call(what, lambda: self.sf.query_more(resume.url, identifier_is_url=True))
        if body is None:
            query = self.soql(stream, state.cursor)
            body = self.call(what, lambda: self.sf.query(query, include_deleted=deleted))
        while True:
            assert body is not None
            records = [{k: v for k, v in r.items() if k != "attributes"} for r in body.get("records") or []]
            following = body.get("nextRecordsUrl")
            yield Page(records=records, resume=PageRequest(url=following) if following else None)
            if not following or body.get("done"):
                return
            body = self.call(what, lambda url=following: self.sf.query_more(url, identifier_is_url=True))


class SalesforceConnector(SdkConnector):
    """Salesforce through simple-salesforce. See the module docstring."""

    name = "salesforce"
    description = (
        "Salesforce (simple-salesforce): any sObject, typed from describe(); incremental on "
        "SystemModstamp; deleted records from queryAll; Bulk API 2.0 for large objects; JWT bearer auth."
    )
    config_model = SalesforceConfig
    auth_kinds = ("salesforce_password", "oauth2_refresh_token", "jwt_bearer")
    credential_models = {
        "salesforce_password": SalesforcePassword, "oauth2_refresh_token": SalesforceRefreshToken,
        "jwt_bearer": SalesforceJwt,
    }

    def stream_names(self) -> list[str]:
        return list(SalesforceConfig().sobjects)

    def streams(self, config: BaseModel) -> list[Stream]:
        """Without a connection only the key and cursor are known; a run's source
        describes each sObject for its full schema."""
        assert isinstance(config, SalesforceConfig)
        minimal = [{"name": "Id", "type": "id"}, {"name": "SystemModstamp", "type": "datetime"}]
        return [
            Stream(name=name, schema_model=record_model(name, minimal), primary_key=("Id",), cursor_field="SystemModstamp")
            for name in config.sobjects
        ]

    def source(self, config: BaseModel, context: RunContext) -> SalesforceSource:
        assert isinstance(config, SalesforceConfig)
        return SalesforceSource(self, config, context)
