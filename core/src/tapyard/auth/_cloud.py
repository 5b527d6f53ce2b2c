"""Cloud auth strategies: AWS, Azure and Google Cloud identities built with the
clouds' own SDKs from a stored credential.

The core imports no vendor SDK: the SDK objects are built by
``tapyard_credentials`` (``aws_session``, ``azure_credential``,
``gcp_service_account_credentials``), which imports boto3, azure-identity or
google-auth only when asked (the ``aws``, ``azure`` and ``gcp`` extras).

An SDK-based connector asks its strategy for the SDK object (:meth:`AwsAuth.session`,
:meth:`AzureAuth.credential`, :meth:`GcpAuth.credentials`) and hands it to the SDK.
A REST connector lets the HTTP engine call :meth:`apply`: AWS signs the request
with Signature Version 4, Azure and Google send a bearer token they renew
before it expires and after a 401.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, Field, SecretStr

from tapyard.auth._strategies import options_from
from tapyard.base import AuthStrategy, ConfigError, Credentials, secret_values

__all__ = ["CLOUD_STRATEGIES", "AwsAuth", "AzureAuth", "GcpAuth"]


def _register(*values: str | None) -> None:
    from tapyard_credentials import redactor

    redactor.register(*values)


def _cloud(call: Callable[[], Any]) -> Any:
    """Run a tapyard_credentials cloud call; its errors become one-line config errors."""
    from tapyard_credentials import CloudCredentialError

    try:
        return call()
    except CloudCredentialError as exc:
        raise ConfigError(str(exc)) from exc


class _Cloud(AuthStrategy):
    Options: ClassVar[type[Credentials]]

    def __init__(self, options: Credentials | None = None, **fields: Any) -> None:
        if options is None:
            options = options_from(self.Options, {"kind": self.kind, **fields}, what=f"{self.kind} credentials")
        self.options = options
        self._lock = threading.RLock()
        _register(*secret_values(options))

    @classmethod
    def from_credentials(cls, credentials: BaseModel) -> AuthStrategy:
        return cls(options_from(cls.Options, credentials, what=f"{cls.kind} credentials"))


class AwsAuth(_Cloud):
    """An AWS identity: a boto3 session from access keys, a named profile, or boto3's
    own chain, optionally assuming a role through STS. :meth:`apply` signs REST
    requests with Signature Version 4 when ``service`` and ``region`` are set."""

    kind: ClassVar[str] = "aws"

    class Options(Credentials):
        kind: Literal["aws"] = "aws"
        access_key_id: str | None = Field(None, description="AWS access key id.")
        secret_access_key: SecretStr | None = Field(None, description="AWS secret access key.")
        session_token: SecretStr | None = Field(None, description="Session token of temporary keys.")
        profile: str | None = Field(None, description="A named profile instead of keys.")
        region: str | None = Field(None, description="The AWS region.")
        role_arn: str | None = Field(None, description="A role to assume with these credentials.")
        external_id: SecretStr | None = Field(None, description="The external id the role requires.")
        role_session_name: str = Field("tapyard", description="Name of the assumed-role session.")
        service: str | None = Field(None, description="Service name for SigV4 signing (REST APIs).")

    options: Options

    def __init__(self, options: Credentials | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._session: Any = None

    def session(self) -> Any:
        """The ``boto3.Session`` (built once; assumed-role keys refresh themselves)."""
        with self._lock:
            if self._session is None:
                from tapyard_credentials import aws_session

                o = self.options
                self._session = _cloud(
                    lambda: aws_session(
                        access_key_id=o.access_key_id,
                        secret_access_key=o.secret_access_key,
                        session_token=o.session_token,
                        profile=o.profile,
                        region=o.region,
                        role_arn=o.role_arn,
                        external_id=o.external_id,
                        role_session_name=o.role_session_name,
                    )
                )
            return self._session

    def apply(self, request: httpx.Request) -> None:
        o = self.options
        if not (o.service and o.region):
            named = f" {o.name!r}" if o.name else ""
            raise ConfigError(
                f"aws credentials{named} sign HTTP requests only when 'service' and 'region' "
                "are set; SDK connectors use the strategy's session() instead"
            )
        from tapyard_credentials import aws_sign

        session = self.session()
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("authorization", "connection")
        }
        signed = _cloud(
            lambda: aws_sign(
                session,
                method=request.method,
                url=str(request.url),
                headers=headers,
                body=request.content,
                service=str(o.service),
                region=str(o.region),
            )
        )
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-SHA256"):
            if name in signed:
                request.headers[name] = signed[name]


class _BearerFromSdk(_Cloud):
    """A bearer token from an SDK credential, cached until a minute before it expires."""

    def __init__(self, options: Credentials | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._token: str | None = None
        self._expires: float | None = None

    def _fetch(self) -> tuple[str, float | None]:
        raise NotImplementedError

    def _current(self, force: bool = False) -> str:
        with self._lock:
            now = time.time()
            if force or self._token is None or (self._expires is not None and now >= self._expires - 60):
                token, expires = self._fetch()
                _register(token)
                self._token, self._expires = token, expires
            assert self._token is not None
            return self._token

    def apply(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = "Bearer " + self._current()

    def refresh(self) -> bool:
        with self._lock:
            before = self._token
            return self._current(force=True) != before


class AzureAuth(_BearerFromSdk):
    """An Azure service principal as an azure-identity credential (client secret or
    certificate); :meth:`apply` sends a bearer token for ``scope``."""

    kind: ClassVar[str] = "azure"

    class Options(Credentials):
        kind: Literal["azure"] = "azure"
        tenant_id: str = Field(description="The Azure AD (Entra ID) tenant.")
        client_id: str = Field(description="The application (client) id.")
        client_secret: SecretStr | None = Field(None, description="The client secret.")
        certificate_pem: SecretStr | None = Field(
            None, description="A PEM certificate with its private key, instead of a secret."
        )
        authority: str | None = Field(None, description="The authority host (sovereign clouds).")
        scope: str = Field(
            "https://management.azure.com/.default", description="The scope tokens are asked for."
        )

    options: Options

    def __init__(self, options: Credentials | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._credential: Any = None

    def credential(self) -> Any:
        """The azure-identity credential (built once, without a network call)."""
        with self._lock:
            if self._credential is None:
                from tapyard_credentials import azure_credential

                o = self.options
                self._credential = _cloud(
                    lambda: azure_credential(
                        tenant_id=o.tenant_id,
                        client_id=o.client_id,
                        client_secret=o.client_secret,
                        certificate_pem=o.certificate_pem,
                        authority=o.authority,
                    )
                )
            return self._credential

    def _fetch(self) -> tuple[str, float | None]:
        from tapyard.base import AuthenticationError

        try:
            answer = self.credential().get_token(self.options.scope)
        except ConfigError:
            raise
        except Exception as exc:
            # azure-identity's errors carry the service's text; keep the type only.
            raise AuthenticationError(
                f"azure refused a token for {self.options.scope}: {type(exc).__name__}",
                status_code=401,
            ) from None
        return str(answer.token), float(answer.expires_on)


class GcpAuth(_BearerFromSdk):
    """A Google Cloud service account as google-auth credentials; :meth:`apply` sends
    the access token google-auth obtains with the JWT bearer grant."""

    kind: ClassVar[str] = "gcp"

    class Options(Credentials):
        kind: Literal["gcp"] = "gcp"
        service_account_json: SecretStr = Field(description="The service account key file (JSON).")
        scopes: str = Field(
            "https://www.googleapis.com/auth/cloud-platform",
            description="Scopes, separated by spaces.",
        )
        subject: str | None = Field(None, description="A user to impersonate (domain-wide delegation).")

    options: Options

    def __init__(self, options: Credentials | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._credentials: Any = None

    def credentials(self) -> Any:
        """The google-auth service account credentials (built once, offline)."""
        with self._lock:
            if self._credentials is None:
                from tapyard_credentials import gcp_service_account_credentials

                o = self.options
                self._credentials = _cloud(
                    lambda: gcp_service_account_credentials(
                        o.service_account_json, scopes=o.scopes.split(), subject=o.subject
                    )
                )
            return self._credentials

    def _fetch(self) -> tuple[str, float | None]:
        from tapyard_credentials import gcp_access_token

        token, expiry = _cloud(lambda: gcp_access_token(self.credentials()))
        expires = expiry.replace(tzinfo=dt.UTC).timestamp() if expiry is not None else None
        return token, expires


CLOUD_STRATEGIES: dict[str, type[AuthStrategy]] = {cls.kind: cls for cls in (AwsAuth, AzureAuth, GcpAuth)}
