"""Cloud identities built with the clouds' own SDKs: boto3 sessions, azure-identity
credentials, google-auth credentials.

The SDKs are optional extras (``tapyard-credentials[aws]``, ``[azure]``, ``[gcp]``)
and are imported only inside these functions, never when this package is imported.
A missing SDK, or fields the SDK refuses, raise :class:`CloudCredentialError` with
a message that names the problem and never a value.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from tapyard_credentials._exceptions import CloudCredentialError

__all__ = [
    "aws_session",
    "aws_sign",
    "azure_credential",
    "gcp_access_token",
    "gcp_service_account_credentials",
]

_EXTRAS = {
    "boto3": "aws",
    "botocore": "aws",
    "azure.identity": "azure",
    "google.oauth2.service_account": "gcp",
    "google.auth.transport": "gcp",
    "httpx": "gcp",
}


def _sdk(module: str) -> Any:
    """Import a cloud SDK module on first use (the SDKs are optional extras)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = _EXTRAS.get(module, "aws")
        raise CloudCredentialError(
            f"the {module} package is not installed: pip install 'tapyard-credentials[{extra}]'"
        ) from None


def _plain(value: str | SecretStr | None) -> str | None:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


# --- AWS ------------------------------------------------------------------------------


def aws_session(
    *,
    access_key_id: str | None = None,
    secret_access_key: str | SecretStr | None = None,
    session_token: str | SecretStr | None = None,
    profile: str | None = None,
    region: str | None = None,
    role_arn: str | None = None,
    external_id: str | SecretStr | None = None,
    role_session_name: str = "tapyard",
    duration_seconds: int = 3600,
) -> Any:
    """A ``boto3.Session`` from access keys, a named profile, or neither (boto3's own
    chain), optionally assuming ``role_arn`` through STS with those as the source.

    Role sessions refresh themselves before their temporary keys expire (botocore's
    refreshable credentials), so a long run never holds stale keys.
    """
    boto3 = _sdk("boto3")
    botocore_exceptions = _sdk("botocore.exceptions")
    if bool(access_key_id) != bool(secret_access_key):
        raise CloudCredentialError(
            "aws credentials need both access_key_id and secret_access_key, or neither"
        )
    if profile and access_key_id:
        raise CloudCredentialError("aws credentials take access keys or a profile, not both")
    try:
        source = boto3.session.Session(
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=_plain(secret_access_key) or None,
            aws_session_token=_plain(session_token) or None,
            profile_name=profile or None,
            region_name=region or None,
        )
    except botocore_exceptions.ProfileNotFound:
        raise CloudCredentialError(f"aws profile {profile!r} is not configured") from None
    except botocore_exceptions.BotoCoreError as exc:
        raise CloudCredentialError(f"cannot build an aws session: {type(exc).__name__}") from None
    if not role_arn:
        return source
    return _assumed_role_session(
        source,
        role_arn=role_arn,
        external_id=_plain(external_id),
        role_session_name=role_session_name,
        duration_seconds=duration_seconds,
        region=region,
    )


def _assumed_role_session(
    source: Any,
    *,
    role_arn: str,
    external_id: str | None,
    role_session_name: str,
    duration_seconds: int,
    region: str | None,
) -> Any:
    boto3 = _sdk("boto3")
    botocore_credentials = _sdk("botocore.credentials")
    botocore_session = _sdk("botocore.session")
    botocore_exceptions = _sdk("botocore.exceptions")

    def fetch() -> dict[str, str]:
        params: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": role_session_name,
            "DurationSeconds": duration_seconds,
        }
        if external_id:
            params["ExternalId"] = external_id
        try:
            answer = source.client("sts").assume_role(**params)["Credentials"]
        except botocore_exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise CloudCredentialError(f"aws refused to assume role {role_arn}: {code}") from None
        except botocore_exceptions.BotoCoreError as exc:
            raise CloudCredentialError(
                f"cannot assume aws role {role_arn}: {type(exc).__name__}"
            ) from None
        expiry = answer["Expiration"]
        return {
            "access_key": answer["AccessKeyId"],
            "secret_key": answer["SecretAccessKey"],
            "token": answer["SessionToken"],
            "expiry_time": expiry.isoformat() if hasattr(expiry, "isoformat") else str(expiry),
        }

    refreshable = botocore_credentials.RefreshableCredentials.create_from_metadata(
        metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
    )
    core = botocore_session.get_session()
    core._credentials = refreshable  # botocore's documented way to plug in refreshable keys
    if region:
        core.set_config_variable("region", region)
    return boto3.session.Session(botocore_session=core)


def aws_sign(
    session: Any,
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    service: str,
    region: str,
) -> dict[str, str]:
    """The headers of an HTTP request signed with AWS Signature Version 4."""
    awsrequest = _sdk("botocore.awsrequest")
    auth = _sdk("botocore.auth")
    credentials = session.get_credentials()
    if credentials is None:
        raise CloudCredentialError("the aws session has no credentials to sign with")
    request = awsrequest.AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    auth.SigV4Auth(credentials.get_frozen_credentials(), service, region).add_auth(request)
    return {str(k): str(v) for k, v in request.headers.items()}


# --- Azure ----------------------------------------------------------------------------


def azure_credential(
    *,
    tenant_id: str,
    client_id: str,
    client_secret: str | SecretStr | None = None,
    certificate_pem: str | SecretStr | None = None,
    authority: str | None = None,
) -> Any:
    """An azure-identity credential for a service principal: a client secret
    (``ClientSecretCredential``) or a PEM certificate with its private key
    (``CertificateCredential``). Building it makes no network call."""
    identity = _sdk("azure.identity")
    secret, certificate = _plain(client_secret), _plain(certificate_pem)
    if bool(secret) == bool(certificate):
        raise CloudCredentialError(
            "azure credentials need exactly one of client_secret and certificate_pem"
        )
    options: dict[str, Any] = {}
    if authority:
        options["authority"] = authority
    try:
        if secret:
            return identity.ClientSecretCredential(tenant_id, client_id, secret, **options)
        assert certificate is not None
        return identity.CertificateCredential(
            tenant_id, client_id, certificate_data=certificate.encode("utf-8"), **options
        )
    except ValueError as exc:
        # azure-identity's messages name the argument (tenant id format, bad PEM), not its value.
        raise CloudCredentialError(f"azure refused the credential: {exc}") from None


# --- Google Cloud ---------------------------------------------------------------------


def gcp_service_account_credentials(
    service_account_json: str | SecretStr | Mapping[str, Any],
    *,
    scopes: Sequence[str] = ("https://www.googleapis.com/auth/cloud-platform",),
    subject: str | None = None,
) -> Any:
    """google-auth service account credentials from the key file's JSON (as text or
    parsed), with ``scopes``, impersonating ``subject`` (domain-wide delegation)."""
    service_account = _sdk("google.oauth2.service_account")
    if isinstance(service_account_json, Mapping):
        info = dict(service_account_json)
    else:
        try:
            info = json.loads(_plain(service_account_json) or "")
        except json.JSONDecodeError:
            raise CloudCredentialError(
                "service_account_json is not JSON: paste the whole key file"
            ) from None
    if not isinstance(info, dict) or info.get("type", "service_account") != "service_account":
        raise CloudCredentialError("service_account_json is not a service account key file")
    try:
        credentials = service_account.Credentials.from_service_account_info(
            info, scopes=list(scopes)
        )
    except (ValueError, KeyError) as exc:
        # google-auth names missing fields ("... missing fields client_email."), never values.
        found = re.search(r"missing fields? ([\w, ]+)", str(exc)) if isinstance(exc, ValueError) else None
        missing = exc.args[0] if isinstance(exc, KeyError) else found.group(1) if found else None
        what = f"lacks the field {missing}" if missing else "cannot be loaded (is private_key a PEM key?)"
        raise CloudCredentialError(f"the service account key {what}") from None
    return credentials.with_subject(subject) if subject else credentials


def gcp_access_token(credentials: Any, *, timeout: float = 30.0) -> tuple[str, dt.datetime | None]:
    """Refresh google-auth ``credentials`` (a JWT bearer grant at their token URI,
    through httpx) and return the access token and its expiry (naive UTC)."""
    transport = _sdk("google.auth.transport")
    exceptions = _sdk("google.auth.exceptions")
    httpx = _sdk("httpx")

    class _Response(transport.Response):  # type: ignore[misc, name-defined]
        def __init__(self, response: Any) -> None:
            self._response = response

        @property
        def status(self) -> int:
            return int(self._response.status_code)

        @property
        def headers(self) -> Any:
            return self._response.headers

        @property
        def data(self) -> bytes:
            return bytes(self._response.content)

    class _Request(transport.Request):  # type: ignore[misc, name-defined]
        def __call__(
            self,
            url: str,
            method: str = "GET",
            body: bytes | None = None,
            headers: Mapping[str, str] | None = None,
            timeout: float | None = None,
            **kwargs: Any,
        ) -> Any:
            try:
                with httpx.Client(timeout=timeout or _timeout) as client:
                    response = client.request(method, url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                raise exceptions.TransportError(type(exc).__name__) from None
            return _Response(response)

    _timeout = timeout
    try:
        credentials.refresh(_Request())
    except exceptions.RefreshError as exc:
        reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "refused"
        raise CloudCredentialError(f"google refused the service account: {reason}") from None
    except exceptions.TransportError as exc:
        raise CloudCredentialError(
            f"cannot reach the google token endpoint: {exc.args[0] if exc.args else 'error'}"
        ) from None
    return str(credentials.token), credentials.expiry
