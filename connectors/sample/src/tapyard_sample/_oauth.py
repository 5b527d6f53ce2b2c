"""A real OAuth 2.0 authorization server on 127.0.0.1, built from authlib's
framework-agnostic server classes, for the sample connector and for tests.

Grants (``POST /oauth/token``):

- ``client_credentials``;
- ``authorization_code`` with PKCE: ``GET /oauth/authorize`` approves at once (as
  the user ``sample-user``) and redirects with a code; only ``S256`` challenges
  are accepted, a challenge is required, and the token endpoint checks the
  verifier (a wrong or missing one is refused);
- ``refresh_token`` with rotation: each use issues a new refresh token and
  revokes the old one, so a second use of a refresh token is ``invalid_grant``;
- ``urn:ietf:params:oauth:grant-type:jwt-bearer`` (RFC 7523): assertions signed
  with a client's registered public key (``iss`` names the client; ``aud`` must
  be the token URL).

Access tokens expire after ``access_token_ttl`` seconds. :meth:`validate` tells
a resource server whether a bearer token is one this server issued and still
valid. Every token request is processed under one lock, so two concurrent uses
of one refresh token cannot both succeed. :attr:`stats` counts what happened
(``invalid_grant`` included).

Loopback redirect URIs (``http://127.0.0.1/...``) match on any port (RFC 8252 §7.3).
"""

from __future__ import annotations

import http.server
import secrets
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7523 import JWTBearerGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from joserfc.jwk import import_key

from tapyard_credentials import redactor
from tapyard_sample._serving import BackgroundServer

__all__ = ["LocalAuthorizationServer", "OAuthClient"]

USER = "sample-user"
JWT_BEARER = JWTBearerGrant.GRANT_TYPE


@dataclass
class OAuthClient(ClientMixin):  # type: ignore[misc]
    """A client registered at the server.

    ``client_secret=None`` makes a public client (PKCE only). ``jwt_issuer`` and
    ``public_key_pem`` register it for the JWT bearer grant (``iss`` must equal
    ``jwt_issuer``, the assertion must verify with the key).
    """

    client_id: str
    client_secret: str | None = None
    redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = (
        "client_credentials",
        "authorization_code",
        "refresh_token",
    )
    scope: str = ""
    jwt_issuer: str | None = None
    public_key_pem: str | None = None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        if not self.scope:
            return scope
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return any(_same_redirect(redirect_uri, known) for known in self.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and secrets.compare_digest(
            self.client_secret.encode(), client_secret.encode()
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.client_secret is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


def _same_redirect(given: str, known: str) -> bool:
    a, b = urllib.parse.urlsplit(given), urllib.parse.urlsplit(known)
    if a.hostname in ("127.0.0.1", "::1") and b.hostname == a.hostname:
        # RFC 8252 §7.3: a loopback redirect may use any port.
        return (a.scheme, a.path) == (b.scheme, b.path)
    return given == known


@dataclass
class _Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class _Issued(TokenMixin):  # type: ignore[misc]
    access_token: str
    client_id: str
    scope: str
    user: str | None
    issued_at: float
    expires_at: float
    refresh_token: str | None = None
    refresh_revoked: bool = False
    revoked: bool = False

    def check_client(self, client: OAuthClient) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, int(self.expires_at - time.time()))

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked


class _Headers(dict[str, str]):
    """Case-insensitive header lookup, as authlib expects of ``request.headers``."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        super().__init__((k.lower(), v) for k, v in items)

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._data: dict[str, str] = {}
        self._datalist: dict[str, list[str]] = {}
        for key, value in pairs:
            self._data.setdefault(key, value)
            self._datalist.setdefault(key, []).append(value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._datalist


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, method: str, uri: str, headers: _Headers, body: bytes) -> None:
        super().__init__(method, uri, None, headers)
        query = urllib.parse.parse_qsl(urllib.parse.urlsplit(uri).query, keep_blank_values=True)
        form = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        self._args = dict(query)
        self._form = dict(form)
        self.payload = _Payload(query + form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, owner: LocalAuthorizationServer) -> None:
        super().__init__()
        self.owner = owner

    def query_client(self, client_id: str) -> OAuthClient | None:
        return self.owner.clients.get(client_id)

    def save_token(self, token: Mapping[str, Any], request: Any) -> None:
        self.owner._save(token, request)

    def create_oauth2_request(self, request: Any) -> Any:
        return request

    def create_json_request(self, request: Any) -> Any:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, Any]:
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signals: nothing listens."""


class _PKCE(CodeChallenge):  # type: ignore[misc]
    """PKCE for every client, S256 only."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        if not grant.request.payload.data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'")
        super().validate_code_challenge(grant, redirect_uri)


class LocalAuthorizationServer(BackgroundServer):
    """The authorization server (see the module docs), served on 127.0.0.1 by
    :meth:`start` or mounted in another server through :meth:`handle`.

    ``access_token_ttl`` is the access tokens' lifetime in seconds;
    ``refresh_token_ttl`` the refresh tokens'. JWT bearer assertions must name the
    token URL as ``aud``, or one of ``audiences`` (google-auth, for one, always
    names Google's own token endpoint).
    """

    def __init__(
        self,
        clients: Iterable[OAuthClient] = (),
        *,
        access_token_ttl: float = 3600,
        refresh_token_ttl: float = 86400,
        code_ttl: float = 300,
        audiences: Iterable[str] = (),
    ) -> None:
        self.clients: dict[str, OAuthClient] = {c.client_id: c for c in clients}
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.code_ttl = code_ttl
        self.audiences = tuple(audiences)
        self.stats: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _Issued] = {}
        self._refresh: dict[str, _Issued] = {}
        self._base_url: str | None = None
        self._server = self._build()

    # -- configuration ---------------------------------------------------------------

    def add_client(self, client: OAuthClient) -> OAuthClient:
        with self._lock:
            self.clients[client.client_id] = client
        return client

    def _build(self) -> _Server:
        owner = self
        server = _Server(self)

        def expires_in(client: Any, grant_type: str) -> int:
            return max(1, round(owner.access_token_ttl))

        def minted(prefix: str, size: int) -> Any:
            def make(**_: Any) -> str:
                token = prefix + secrets.token_urlsafe(size)
                # The server runs inside the client's process (the CLI's, a test's),
                # and authlib logs tokens at debug level as it issues them: make
                # them known to the process's redactor before anything can log them.
                redactor.register(token)
                return token

            return make

        server.register_token_generator(
            "default", BearerTokenGenerator(minted("at_", 24), minted("rt_", 32), expires_in)
        )

        class ClientCredentials(grants.ClientCredentialsGrant):  # type: ignore[misc]
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

        class AuthorizationCode(grants.AuthorizationCodeGrant):  # type: ignore[misc]
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

            def save_authorization_code(self, code: str, request: Any) -> None:
                data = request.payload.data
                owner._codes[code] = _Code(
                    code=code,
                    client_id=request.client.client_id,
                    redirect_uri=request.payload.redirect_uri or "",
                    scope=request.scope or "",
                    user=request.user,
                    code_challenge=data.get("code_challenge"),
                    code_challenge_method=data.get("code_challenge_method"),
                    expires_at=time.time() + owner.code_ttl,
                )

            def query_authorization_code(self, code: str, client: OAuthClient) -> _Code | None:
                found = owner._codes.get(code)
                if found is None or found.client_id != client.client_id:
                    return None
                return found if time.time() < found.expires_at else None

            def delete_authorization_code(self, authorization_code: _Code) -> None:
                owner._codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: _Code) -> str:
                return authorization_code.user

        class RefreshToken(grants.RefreshTokenGrant):  # type: ignore[misc]
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
            INCLUDE_NEW_REFRESH_TOKEN = True

            def authenticate_refresh_token(self, refresh_token: str) -> _Issued | None:
                found = owner._refresh.get(refresh_token)
                if found is None or found.refresh_revoked:
                    return None
                if time.time() >= found.issued_at + owner.refresh_token_ttl:
                    return None
                return found

            def authenticate_user(self, credential: _Issued) -> str | None:
                return credential.user or USER

            def revoke_old_credential(self, refresh_token: _Issued) -> None:
                refresh_token.refresh_revoked = True

        class JwtBearer(JWTBearerGrant):  # type: ignore[misc]
            def resolve_issuer_client(self, issuer: str) -> OAuthClient | None:
                return next(
                    (c for c in owner.clients.values() if c.jwt_issuer == issuer and c.public_key_pem),
                    None,
                )

            def resolve_client_public_key(self, client: OAuthClient) -> Any:
                return import_key(client.public_key_pem or "", "RSA")

            def authenticate_user(self, subject: str) -> str:
                return subject

            def has_granted_permission(self, client: OAuthClient, user: str) -> bool:
                return True

            def get_audiences(self) -> list[str]:
                own = [owner.token_url] if owner._base_url else []
                return own + list(owner.audiences)

        server.register_grant(ClientCredentials)
        server.register_grant(AuthorizationCode, [_PKCE(required=True)])
        server.register_grant(RefreshToken)
        server.register_grant(JwtBearer)
        return server

    def _save(self, token: Mapping[str, Any], request: Any) -> None:
        client = request.client
        issued = _Issued(
            access_token=str(token["access_token"]),
            client_id=client.client_id,
            scope=str(token.get("scope", "")),
            user=request.user if isinstance(request.user, str) else None,
            issued_at=time.time(),
            expires_at=time.time() + float(token.get("expires_in", self.access_token_ttl)),
            refresh_token=token.get("refresh_token"),
        )
        self._access[issued.access_token] = issued
        if issued.refresh_token:
            self._refresh[issued.refresh_token] = issued

    # -- the endpoints ---------------------------------------------------------------

    def handle(
        self, method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> tuple[int, bytes, list[tuple[str, str]]] | None:
        """Answer a request for ``/oauth/token`` or ``/oauth/authorize``: status, JSON
        body and headers; None for any other path."""
        import json

        path = urllib.parse.urlsplit(url).path
        if path not in ("/oauth/token", "/oauth/authorize"):
            return None
        request = _Request(method, url, _Headers(headers), body)
        with self._lock:
            if path == "/oauth/token":
                if method != "POST":
                    return 405, b'{"error": "invalid_request"}', [("Allow", "POST")]
                status, payload, extra = self._server.create_token_response(request)
                grant = request.payload.data.get("grant_type", "?")
                outcome = payload.get("error", "ok") if isinstance(payload, dict) else "ok"
                self.stats[f"{grant}:{outcome}"] += 1
                if outcome != "ok":
                    self.stats[outcome] += 1
            else:
                status, payload, extra = self._authorize(request)
        out_headers = [(str(k), str(v)) for k, v in (extra or [])]
        if isinstance(payload, (dict, list)):
            data = json.dumps(payload).encode()
            if not any(k.lower() == "content-type" for k, _ in out_headers):
                out_headers.append(("Content-Type", "application/json"))
        else:
            data = (payload or "").encode() if isinstance(payload, str) else bytes(payload or b"")
        return status, data, out_headers

    def _authorize(self, request: _Request) -> tuple[int, Any, Any]:
        try:
            grant = self._server.get_consent_grant(request, end_user=USER)
        except OAuth2Error as error:
            self.stats[f"authorize:{error.error}"] += 1
            status, body, headers = error()
            return status, dict(body), headers
        self.stats["authorize:ok"] += 1
        response: tuple[int, Any, Any] = self._server.create_authorization_response(request, grant_user=USER, grant=grant)
        return response

    def validate(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header holds a live bearer token of this server."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return False
        token = authorization[7:].strip()
        with self._lock:
            found = self._access.get(token)
            return found is not None and not found.revoked and not found.is_expired()

    def revoke_all_access_tokens(self) -> None:
        """Revoke every access token issued so far (refresh tokens stay valid)."""
        with self._lock:
            for issued in self._access.values():
                issued.revoked = True

    # -- serving on its own ------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the server (set by :meth:`start` or :meth:`mount`)."""
        if self._base_url is None:
            raise RuntimeError("the authorization server is not running")
        return self._base_url

    @property
    def token_url(self) -> str:
        return self.base_url + "/oauth/token"

    @property
    def authorize_url(self) -> str:
        return self.base_url + "/oauth/authorize"

    def mount(self, base_url: str) -> None:
        """Say where another server serves :meth:`handle` (for ``aud`` checks)."""
        self._base_url = base_url.rstrip("/")

    def start(self) -> LocalAuthorizationServer:
        """Serve on a free port of 127.0.0.1 in a daemon thread; return ``self``."""
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: query strings hold codes."""

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                answer = owner.handle(
                    self.command, owner.base_url + self.path, self.headers.items(), body
                )
                status, data, headers = answer or (404, b'{"error": "not_found"}', [])
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self._base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._serve(httpd)
        return self
