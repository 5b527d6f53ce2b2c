"""OAuth 2.0 auth strategies, through authlib: client credentials, refresh token
with rotation, authorization code with PKCE, and the JWT bearer grant (RFC 7523).

The token lifecycle every strategy here keeps:

- **Tokens live in a** :class:`TokenStore` (the vault through
  ``tapyard_credentials.VaultTokenStore``, or memory), never only in the strategy.
- **Refreshed before expiry, and after a 401.** A token is renewed once it is
  past its refresh point (a minute before it expires, or half-way for tokens
  that live less than two minutes), and when the API refuses it.
- **Serialized.** A renewal runs under the strategy's thread lock and the
  store's lock (which the vault holds across processes). Inside the lock the
  stored token is read again: if another thread or process already renewed it,
  that token is adopted and no grant is made, so a single-use refresh token is
  never spent twice.
- **Saved before use.** A new token, and above all a rotated refresh token, is
  saved to the store (durably, for the vault) before the new access token goes
  out on any request. If saving fails, the new token is not used.
- **Never leaked.** Every token obtained is registered with the process-wide
  redactor (``tapyard_credentials.redactor``); errors name the token endpoint
  without its query string and the OAuth error code, never a value.
"""

from __future__ import annotations

import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr

from tapyard.auth._strategies import options_from
from tapyard.base import (
    AuthenticationError,
    AuthStrategy,
    ConfigError,
    Credentials,
    HTTPStatusError,
    ResponseError,
    TokenStore,
    TransportError,
    secret_values,
    stored_fields,
)

if TYPE_CHECKING:
    import httpx

__all__ = [
    "OAUTH_STRATEGIES",
    "TOKEN_FIELDS",
    "JwtBearerAuth",
    "MemoryTokenStore",
    "OAuth2AuthorizationCodeAuth",
    "OAuth2ClientCredentialsAuth",
    "OAuth2RefreshTokenAuth",
    "Token",
    "TokenStore",
]

#: The credential fields tapyard itself writes as tokens come and go.
TOKEN_FIELDS = ("access_token", "refresh_token", "token_type", "expires_at", "refresh_at")

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: the JOSE key type of each family of signing algorithms
_KEY_TYPES: dict[str, Literal["RSA", "EC", "OKP", "oct"]] = {
    "RS": "RSA",
    "PS": "RSA",
    "ES": "EC",
    "Ed": "OKP",
    "HS": "oct",
}


def _register_secrets(*values: str | None) -> None:
    from tapyard_credentials import redactor

    redactor.register(*values)


# --- where tokens live ----------------------------------------------------------------


class MemoryTokenStore:
    """A :class:`TokenStore` in memory: tokens last as long as the process."""

    def __init__(self, fields: Mapping[str, str] | None = None) -> None:
        self._fields = dict(fields or {})
        self._lock = threading.RLock()

    def load(self) -> dict[str, str]:
        with self._lock:
            return dict(self._fields)

    def save(self, fields: Mapping[str, str]) -> None:
        with self._lock:
            self._fields.update(fields)

    def lock(self) -> AbstractContextManager[Any]:
        return self._lock


@dataclass(frozen=True)
class Token:
    """An access token, when to renew it, and the refresh token that came with it."""

    access_token: str
    token_type: str = "Bearer"
    expires_at: float | None = None
    refresh_at: float | None = None
    refresh_token: str | None = None

    def fresh(self, now: float) -> bool:
        """Whether the token may still be sent (it is not past its refresh point)."""
        return self.refresh_at is None or now < self.refresh_at

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> Token | None:
        """The token stored in a credential's fields, or None when there is none."""
        access = fields.get("access_token")
        if not access:
            return None
        return cls(
            access_token=access,
            token_type=fields.get("token_type") or "Bearer",
            expires_at=_number(fields.get("expires_at")),
            refresh_at=_number(fields.get("refresh_at")),
            refresh_token=fields.get("refresh_token") or None,
        )

    @classmethod
    def from_response(
        cls, answer: Mapping[str, Any], *, now: float, previous: Token | None = None
    ) -> Token:
        """A token from a token endpoint's answer, keeping the previous refresh token
        when the server did not rotate it."""
        access = answer.get("access_token")
        if not isinstance(access, str) or not access:
            raise ValueError("no access_token in the answer")
        expires_in = _number(answer.get("expires_in"))
        expires_at = refresh_at = None
        if expires_in is not None and expires_in > 0:
            expires_at = now + expires_in
            refresh_at = now + max(expires_in / 2, expires_in - 60)
        refresh = answer.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            refresh = previous.refresh_token if previous is not None else None
        token_type = answer.get("token_type")
        return cls(
            access_token=access,
            token_type=token_type if isinstance(token_type, str) and token_type else "Bearer",
            expires_at=expires_at,
            refresh_at=refresh_at,
            refresh_token=refresh,
        )

    def to_fields(self) -> dict[str, str]:
        """The credential fields that hold this token (an empty string: no value)."""
        fields = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": "" if self.expires_at is None else f"{self.expires_at:.3f}",
            "refresh_at": "" if self.refresh_at is None else f"{self.refresh_at:.3f}",
        }
        if self.refresh_token:
            fields["refresh_token"] = self.refresh_token
        return fields

    def header(self) -> str:
        """The ``Authorization`` header value."""
        scheme = "Bearer" if self.token_type.lower() == "bearer" else self.token_type
        return f"{scheme} {self.access_token}"


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# --- talking to the token endpoint ------------------------------------------------------


class _TokenEndpointError(Exception):
    """An OAuth error answer (``{"error": ...}``) from a token endpoint."""

    def __init__(self, error: str | None = None, description: str | None = None, **_: Any) -> None:
        super().__init__(error or "error")
        self.error = error or "error"
        self.description = description or ""


class _Session:
    """The small requests-like session authlib's generic OAuth2Client drives, over httpx.

    Each call uses a short-lived client: token calls are rare, and this keeps the
    token endpoint's connections apart from the API's (credentials for one never
    go to the other).
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.last_status = 0

    def post(
        self, url: str, data: Any = None, headers: Any = None, auth: Any = None, **_: Any
    ) -> httpx.Response:
        return self.request("POST", url, data=data, headers=headers, auth=auth)

    def request(
        self,
        method: str,
        url: str,
        data: Any = None,
        headers: Any = None,
        auth: Any = None,
        withhold_token: bool = False,
        **_: Any,
    ) -> httpx.Response:
        body = urllib.parse.urlencode(dict(data or {}))
        sent = dict(headers or {})
        if auth is not None:
            url, sent, body = auth.prepare(method, url, sent, body)
        import httpx  # here, not at import: listing connectors need not load httpx

        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            response = client.request(method, url, content=body.encode("utf-8"), headers=sent)
        self.last_status = response.status_code
        return response


class _NoClientAuth:
    """Client authentication that adds nothing (the JWT bearer grant authenticates itself)."""

    def prepare(self, method: str, uri: str, headers: Any, body: Any) -> tuple[Any, Any, Any]:
        return uri, headers, body


def _client(session: _Session, **options: Any) -> Any:
    """authlib's generic OAuth 2.0 client over ``session``, raising our own error type."""
    from authlib.oauth2.client import OAuth2Client

    class Client(OAuth2Client):  # type: ignore[misc]
        oauth_error_class = _TokenEndpointError

    return Client(session, **options)


def _shown(url: str) -> str:
    from tapyard.http import redact_url

    return redact_url(url)


def _call_token_endpoint(
    session: _Session, url: str, grant: str, call: Callable[[], Any], hint: str = ""
) -> Mapping[str, Any]:
    """Run one token request; map every failure to a one-line, safe tapyard error."""
    import httpx

    from tapyard_credentials import redact

    shown = _shown(url)
    attempts = 0
    while True:
        attempts += 1
        try:
            answer = call()
        except _TokenEndpointError as exc:
            description = " ".join(exc.description.split())[:200]
            said = f" ({description})" if description else ""
            raise AuthenticationError(
                redact(f"POST {shown} refused the {grant} grant: {exc.error}{said}{hint}"),
                status_code=session.last_status or 400,
                method="POST",
                url=shown,
                attempts=attempts,
            ) from None
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            advice = "the token endpoint is failing; try again later" if status >= 500 else (
                "check the token URL"
            )
            raise HTTPStatusError(
                f"POST {shown} failed: {status} {exc.response.reason_phrase} ({advice})",
                status_code=status,
                method="POST",
                url=shown,
                attempts=attempts,
            ) from None
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # The request never left: trying again cannot spend a token twice.
            if attempts < 3:
                time.sleep(0.2 * attempts)
                continue
            raise TransportError(
                f"POST {shown} failed: {type(exc).__name__} on all {attempts} attempts; check "
                "the token URL and the network",
                method="POST",
                url=shown,
                attempts=attempts,
            ) from None
        except httpx.TransportError as exc:
            raise TransportError(
                f"POST {shown} failed: {type(exc).__name__}", method="POST", url=shown, attempts=attempts
            ) from None
        except ValueError:
            raise ResponseError(
                f"POST {shown} answered the {grant} grant with no token (not a JSON object)",
                method="POST",
                url=shown,
                attempts=attempts,
            ) from None
        if not isinstance(answer, Mapping) or not answer.get("access_token"):
            raise ResponseError(
                f"POST {shown} answered the {grant} grant without an access_token",
                method="POST",
                url=shown,
                attempts=attempts,
            )
        _register_secrets(answer.get("access_token"), answer.get("refresh_token"))
        return answer


# --- the strategies -------------------------------------------------------------------


class _TokenFields(Credentials):
    """The token fields tapyard keeps in an OAuth credential (not given by the user)."""

    access_token: SecretStr | None = Field(None, description="Kept by tapyard.")
    token_type: str | None = Field(None, description="Kept by tapyard.")
    expires_at: str | None = Field(None, description="Kept by tapyard.")
    refresh_at: str | None = Field(None, description="Kept by tapyard.")


class _ClientFields(_TokenFields):
    token_url: str = Field(
        description="The token endpoint; a path such as /oauth/token is taken relative to the API."
    )
    client_id: str = Field(description="The OAuth client id.")
    scope: str | None = Field(None, description="Scopes to ask for, separated by spaces.")
    auth_method: Literal["client_secret_basic", "client_secret_post"] = Field(
        "client_secret_basic", description="How the client authenticates at the token endpoint."
    )


class _TokenStrategy(AuthStrategy):
    """A strategy that exchanges its credential for access tokens (see the module docs)."""

    Options: ClassVar[type[_TokenFields]]
    #: the grant's name in messages
    grant: ClassVar[str] = ""

    def __init__(
        self,
        options: _TokenFields,
        store: TokenStore | None = None,
        *,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.store: TokenStore = (
            store if store is not None else MemoryTokenStore(stored_fields(options))
        )
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.RLock()
        self._token: Token | None = None
        self._loaded = False
        self._origin: str | None = None
        #: ``grants``: tokens obtained from the token endpoint; ``adopted``: tokens
        #: another thread or process had already obtained.
        self.stats = {"grants": 0, "adopted": 0}
        _register_secrets(*secret_values(options))

    @classmethod
    def from_credentials(cls, credentials: BaseModel) -> AuthStrategy:
        options = options_from(cls.Options, credentials, what=f"{cls.kind} credentials")
        store = getattr(credentials, "token_store", None)
        return cls(options, store if isinstance(store, TokenStore) else None)

    @property
    def name(self) -> str:
        """The credential's name, for messages."""
        return self.options.name or "(unnamed)"

    def _login_hint(self) -> str:
        if self.options.name:
            return f"run `tapyard creds login {self.options.name}` (or store a new refresh token)"
        return "store a new refresh token"

    # -- AuthStrategy ----------------------------------------------------------------

    def apply(self, request: httpx.Request) -> None:
        origin = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"
        request.headers["Authorization"] = self.current(origin).header()

    def refresh(self) -> bool:
        with self._lock:
            stale = self._token.access_token if self._token is not None else None
            return self._renew(stale).access_token != stale

    # -- the lifecycle ---------------------------------------------------------------

    def current(self, origin: str | None = None) -> Token:
        """A token fit to send now: the one held, the stored one, or a new one."""
        with self._lock:
            if origin and self._origin is None:
                self._origin = origin
            if not self._loaded:
                self._token = Token.from_fields(self.store.load())
                self._loaded = True
                if self._token is not None:
                    _register_secrets(self._token.access_token, self._token.refresh_token)
            token = self._token
            if token is not None and token.fresh(self._clock()):
                return token
            return self._renew(token.access_token if token is not None else None)

    def _renew(self, stale: str | None) -> Token:
        with self._lock, self.store.lock():
            fields = dict(self.store.load())
            stored = Token.from_fields(fields)
            if stored is not None:
                _register_secrets(stored.access_token, stored.refresh_token)
                if stored.access_token != stale and stored.fresh(self._clock()):
                    # Renewed meanwhile by another thread or process: use theirs.
                    self._token = stored
                    self.stats["adopted"] += 1
                    return stored
            answer = self._grant(fields)
            token = Token.from_response(answer, now=self._clock(), previous=stored)
            # Durable before the new access token is used, and before the rotated
            # refresh token could be needed again.
            self.store.save(token.to_fields())
            self._token = token
            self.stats["grants"] += 1
            return token

    def _grant(self, fields: Mapping[str, str]) -> Mapping[str, Any]:
        """Obtain a new token from the token endpoint (under the credential's lock)."""
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------------

    def _url(self, url: str, what: str) -> str:
        if urllib.parse.urlsplit(url).scheme:
            return url
        if self._origin is None:
            raise ConfigError(
                f"{what} {url!r} of credential {self.name!r} is relative to the API's address, "
                "which is known only during a run; give an absolute URL"
            )
        return urllib.parse.urljoin(self._origin + "/", url)

    def _session_and_client(self, **extra: Any) -> tuple[_Session, Any]:
        session = _Session(self.timeout)
        options = self.options
        assert isinstance(options, _ClientFields)
        secret = getattr(options, "client_secret", None)
        client = _client(
            session,
            client_id=options.client_id,
            client_secret=secret.get_secret_value() if isinstance(secret, SecretStr) else None,
            token_endpoint_auth_method=options.auth_method if secret else "none",
            scope=options.scope,
            **extra,
        )
        return session, client


class OAuth2ClientCredentialsAuth(_TokenStrategy):
    """OAuth 2.0 client credentials (RFC 6749 §4.4): the client's own id and secret
    buy access tokens, renewed before they expire and after a 401."""

    kind: ClassVar[str] = "oauth2_client_credentials"
    grant: ClassVar[str] = "client_credentials"

    class Options(_ClientFields):
        kind: Literal["oauth2_client_credentials"] = "oauth2_client_credentials"
        client_secret: SecretStr = Field(description="The OAuth client secret.")
        audience: str | None = Field(None, description="The API to ask a token for (Auth0 style).")

    options: Options

    def _grant(self, fields: Mapping[str, str]) -> Mapping[str, Any]:
        url = self._url(self.options.token_url, "token_url")
        session, client = self._session_and_client()
        extra = {"audience": self.options.audience} if self.options.audience else {}
        return _call_token_endpoint(
            session,
            url,
            self.grant,
            lambda: client.fetch_token(url, grant_type="client_credentials", **extra),
        )


class OAuth2RefreshTokenAuth(_TokenStrategy):
    """A refresh token (RFC 6749 §6) that buys access tokens; a rotated refresh token
    is saved before the new access token is used, and concurrent refreshes are
    serialized so a single-use refresh token is never spent twice."""

    kind: ClassVar[str] = "oauth2_refresh_token"
    grant: ClassVar[str] = "refresh_token"

    class Options(_ClientFields):
        kind: Literal["oauth2_refresh_token"] = "oauth2_refresh_token"
        client_secret: SecretStr | None = Field(
            None, description="The OAuth client secret (none for a public client)."
        )
        refresh_token: SecretStr = Field(description="The refresh token.")

    options: Options

    def _grant(self, fields: Mapping[str, str]) -> Mapping[str, Any]:
        refresh_token = fields.get("refresh_token")
        if not refresh_token:
            raise AuthenticationError(
                f"credential {self.name!r} holds no refresh token yet: {self._login_hint()}",
                status_code=401,
            )
        url = self._url(self.options.token_url, "token_url")
        session, client = self._session_and_client()
        hint = f"; the refresh token was revoked, expired or already used: {self._login_hint()}"
        return _call_token_endpoint(
            session,
            url,
            self.grant,
            lambda: client.refresh_token(url, refresh_token=refresh_token),
            hint,
        )


class OAuth2AuthorizationCodeAuth(OAuth2RefreshTokenAuth):
    """OAuth 2.0 authorization code with PKCE (RFC 6749 §4.1, RFC 7636, RFC 8252).

    :meth:`login` (``tapyard creds login NAME``) opens the browser at the
    authorization URL and catches the redirect on a 127.0.0.1 loopback listener,
    checking ``state``; the code is exchanged with the PKCE verifier. After that
    the tokens are renewed with the refresh token, rotation included.
    """

    kind: ClassVar[str] = "oauth2_authorization_code"
    grant: ClassVar[str] = "refresh_token"

    class Options(_ClientFields):
        kind: Literal["oauth2_authorization_code"] = "oauth2_authorization_code"
        authorize_url: str = Field(description="The authorization endpoint (opened in the browser).")
        client_secret: SecretStr | None = Field(
            None, description="The OAuth client secret (none for a public client)."
        )
        redirect_port: int = Field(
            0, ge=0, le=65535, description="Port of the 127.0.0.1 redirect listener (0: any free port)."
        )
        refresh_token: SecretStr | None = Field(None, description="Kept by tapyard.")

    options: Options  # type: ignore[assignment]

    def login(
        self,
        *,
        open_browser: Callable[[str], Any],
        announce: Callable[[str], Any] = lambda url: None,
        timeout: float = 300.0,
    ) -> Token:
        """Run the authorization code flow with PKCE and store the tokens.

        ``announce(url)`` shows the authorization URL, ``open_browser(url)`` opens
        it; the redirect is caught on ``http://127.0.0.1:PORT/callback``. Raises
        :class:`AuthenticationError` when the server refuses, the ``state`` does not
        match, or no redirect arrives within ``timeout`` seconds; nothing is stored then.
        """
        from authlib.common.security import generate_token

        options = self.options
        for url, what in ((options.authorize_url, "authorize_url"), (options.token_url, "token_url")):
            if not urllib.parse.urlsplit(url).scheme:
                raise ConfigError(f"{what} of credential {self.name!r} must be an absolute URL to log in")
        state = secrets.token_urlsafe(32)
        verifier = generate_token(64)
        with _Loopback(options.redirect_port, state) as listener:
            redirect_uri = f"http://127.0.0.1:{listener.port}/callback"
            session, client = self._session_and_client(
                redirect_uri=redirect_uri, code_challenge_method="S256"
            )
            url, _ = client.create_authorization_url(
                options.authorize_url, state=state, code_verifier=verifier
            )
            announce(url)
            open_browser(url)
            params = listener.wait(timeout)
        if params is None:
            raise AuthenticationError(
                f"no redirect reached {redirect_uri} within {timeout:g}s; nothing was stored",
                status_code=0,
            )
        if not secrets.compare_digest(params.get("state", ""), state):
            raise AuthenticationError(
                "the redirect carried the wrong state: refused (it did not come from this "
                "login); nothing was stored",
                status_code=0,
            )
        if params.get("error") or not params.get("code"):
            said = params.get("error_description", "")
            raise AuthenticationError(
                f"the authorization server refused: {params.get('error') or 'no code'}"
                + (f" ({said})" if said else "")
                + "; nothing was stored",
                status_code=0,
            )
        code = params["code"]
        token_url = options.token_url
        answer = _call_token_endpoint(
            session,
            token_url,
            "authorization_code",
            lambda: client.fetch_token(
                token_url,
                grant_type="authorization_code",
                code=code,
                code_verifier=verifier,
                redirect_uri=redirect_uri,
            ),
        )
        with self._lock, self.store.lock():
            token = Token.from_response(answer, now=self._clock())
            self.store.save(token.to_fields())
            self._token, self._loaded = token, True
            self.stats["grants"] += 1
        return token


class JwtBearerAuth(_TokenStrategy):
    """The JWT bearer grant (RFC 7523 §2.1), as Salesforce's JWT flow and Google
    service accounts use: an assertion signed with the credential's private key
    buys access tokens, renewed before they expire and after a 401."""

    kind: ClassVar[str] = "jwt_bearer"
    grant: ClassVar[str] = "jwt-bearer"

    class Options(_TokenFields):
        kind: Literal["jwt_bearer"] = "jwt_bearer"
        token_url: str = Field(description="The token endpoint.")
        issuer: str = Field(description="iss: the client id (Salesforce) or the service account email.")
        subject: str | None = Field(None, description="sub: the user to act as (Salesforce user name).")
        audience: str | None = Field(None, description="aud (default: the token URL).")
        private_key: SecretStr = Field(description="The PEM private key that signs the assertion.")
        key_id: str | None = Field(None, description="kid of the signing key.")
        algorithm: str = Field("RS256", description="The signing algorithm.")
        scope: str | None = Field(None, description="Scopes to ask for, separated by spaces.")
        assertion_lifetime_s: int = Field(300, ge=30, le=3600, description="Lifetime of each assertion.")

    options: Options

    def assertion(self, token_url: str) -> str:
        """A freshly signed assertion for ``token_url``."""
        from authlib.oauth2.rfc7523 import JWTBearerGrant
        from joserfc.errors import JoseError
        from joserfc.jwk import import_key

        options = self.options
        header: dict[str, str] = {"alg": options.algorithm}
        if options.key_id:
            header["kid"] = options.key_id
        key_type = _KEY_TYPES.get(options.algorithm[:2], "RSA")
        try:
            key = import_key(options.private_key.get_secret_value(), key_type)
            signed = JWTBearerGrant.sign(
                key,
                issuer=options.issuer,
                audience=options.audience or token_url,
                subject=options.subject,
                header=header,
                expires_in=options.assertion_lifetime_s,
            )
        except (ValueError, TypeError, JoseError) as exc:
            raise ConfigError(
                f"the private_key of credential {self.name!r} cannot sign a {options.algorithm} "
                f"assertion ({type(exc).__name__})"
            ) from None
        text = signed.decode("ascii") if isinstance(signed, bytes) else str(signed)
        _register_secrets(text)
        return text

    def _grant(self, fields: Mapping[str, str]) -> Mapping[str, Any]:
        url = self._url(self.options.token_url, "token_url")
        session = _Session(self.timeout)
        client = _client(session, scope=self.options.scope)
        assertion = self.assertion(url)
        return _call_token_endpoint(
            session,
            url,
            self.grant,
            lambda: client.fetch_token(
                url, grant_type=JWT_BEARER_GRANT, assertion=assertion, auth=_NoClientAuth()
            ),
        )


OAUTH_STRATEGIES: dict[str, type[AuthStrategy]] = {
    cls.kind: cls
    for cls in (
        OAuth2ClientCredentialsAuth,
        OAuth2RefreshTokenAuth,
        OAuth2AuthorizationCodeAuth,
        JwtBearerAuth,
    )
}


# --- the loopback redirect listener ---------------------------------------------------


class _Loopback:
    """A one-shot HTTP listener on 127.0.0.1 that catches the authorization redirect.

    The first request to ``/callback`` is the answer; a wrong ``state`` is
    answered 400 and ends the wait (as a refusal). Everything else is 404.
    """

    def __init__(self, port: int, state: str) -> None:
        import http.server  # only an interactive login needs it: not at import

        self.result: dict[str, str] | None = None
        self.done = threading.Event()
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the query string holds the authorization code."""

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                if parts.path != "/callback":
                    self._page(404, "Not found.")
                    return
                if listener.done.is_set():
                    self._page(409, "This login is already finished.")
                    return
                params = {k: v[0] for k, v in urllib.parse.parse_qs(parts.query).items()}
                ok = secrets.compare_digest(params.get("state", ""), state)
                if not ok:
                    self._page(400, "Refused: this redirect does not belong to the login under way.")
                elif params.get("error"):
                    self._page(400, "The authorization server refused; see the terminal.")
                else:
                    self._page(200, "Authorized. You can close this window and return to the terminal.")
                listener.result = params
                listener.done.set()

            def _page(self, status: int, text: str) -> None:
                body = f"<!doctype html><title>tapyard</title><p>{text}</p>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

        try:
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on 127.0.0.1:{port} for the login redirect: {exc.strerror}"
            ) from None
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def __enter__(self) -> _Loopback:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    def wait(self, timeout: float) -> dict[str, str] | None:
        """The redirect's query parameters, or None after ``timeout`` seconds."""
        self.done.wait(timeout)
        return self.result
