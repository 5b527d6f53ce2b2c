"""A :class:`SecretBackend` over AWS Secrets Manager (the ``aws`` extra: boto3).

Each credential is one secret named ``<prefix><name>``:

- its **SecretString** is a JSON document with the fields *and* the metadata that
  access control relies on (connector, kind, allowed connectors), so editing the
  secret's description or tags cannot widen who may use it;
- its **Description** repeats the metadata without values (field names,
  timestamps), so :meth:`list` and :meth:`info` never read a secret value;
- its tag ``tapyard-last-used`` holds the last read, so a read does not create a
  secret version.

How the interface fits a remote store (and where it does not):

- **Protection at rest** is the store's: Secrets Manager encrypts with its KMS key
  (``kms_key_id``, default the account's ``aws/secretsmanager`` key). There is no
  vault key, so ``rotate_key`` refuses: rotate the KMS key in AWS.
- **Atomicity**: each write is one API call per secret version; ``update_fields``
  is a read-modify-write serialized by the credential's lock. Secrets Manager has
  no compare-and-set, so that lock binds only the processes of *one machine* (a
  lock directory on local disk). Processes on several machines that refresh one
  OAuth credential need a distributed lock around it; none is provided here.
- **The audit log** is kept in a local SQLite file (append-only by triggers),
  since Secrets Manager has no place for one; CloudTrail also records every API call.
- ``rm`` deletes without a recovery window, so the name can be reused at once.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from pydantic import SecretStr

from tapyard_credentials._backend import SecretBackend, info_for_put
from tapyard_credentials._cloud import _sdk
from tapyard_credentials._exceptions import (
    CredentialValidationError,
    VaultCorruptError,
    VaultStorageError,
)
from tapyard_credentials._lock import LockTable
from tapyard_credentials._models import AuditEntry, AuditEvent, Credential, CredentialInfo

__all__ = ["AwsSecretsManagerBackend"]

_FORMAT = "tapyard/1"
_LAST_USED_TAG = "tapyard-last-used"
# The characters Secrets Manager allows in a secret name.
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
_AUDIT_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, "
    "actor TEXT NOT NULL, action TEXT NOT NULL, name TEXT, connector TEXT, outcome TEXT NOT NULL, "
    "os_user TEXT NOT NULL, pid INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_by_name ON audit (name, id)",
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
)


class _AuditFile:
    """An append-only audit log in a local SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise VaultStorageError(
                f"cannot open the audit log {self.path}: {type(exc).__name__}"
            ) from None
        try:
            for statement in _AUDIT_SCHEMA:
                conn.execute(statement)
            yield conn
        except sqlite3.Error as exc:
            raise VaultStorageError(
                f"cannot use the audit log {self.path}: {type(exc).__name__}"
            ) from None
        finally:
            conn.close()

    def append(self, event: AuditEvent) -> None:
        with self._lock, self._connect() as conn:
            conn.execute(
                "INSERT INTO audit (at, actor, action, name, connector, outcome, os_user, pid) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.at.isoformat(),
                    event.actor,
                    event.action,
                    event.name,
                    event.connector,
                    event.outcome,
                    event.user,
                    event.pid,
                ),
            )

    def read(self, limit: int, name: str | None) -> builtins.list[AuditEntry]:
        columns = "id, at, actor, action, name, connector, outcome, os_user, pid"
        with self._lock, self._connect() as conn:
            if name is None:
                rows = conn.execute(
                    f"SELECT {columns} FROM audit ORDER BY id DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {columns} FROM audit WHERE name = ? ORDER BY id DESC LIMIT ?",
                    (name, limit),
                ).fetchall()
        return [
            AuditEntry(
                id=row[0],
                at=datetime.fromisoformat(row[1]),
                actor=row[2],
                action=row[3],
                name=row[4],
                connector=row[5],
                outcome=row[6],
                user=row[7],
                pid=row[8],
            )
            for row in rows
        ]


class AwsSecretsManagerBackend(SecretBackend):
    """Credentials as secrets in AWS Secrets Manager (see the module documentation).

    ``session`` is a ``boto3.Session`` (default: boto3's own credential chain in
    ``region``); ``prefix`` namespaces the secrets; ``state_dir`` holds the local
    audit log and lock files (default: a folder per region and prefix under the
    tapyard data directory).
    """

    def __init__(
        self,
        *,
        region: str | None = None,
        prefix: str = "tapyard/",
        session: Any = None,
        endpoint_url: str | None = None,
        kms_key_id: str | None = None,
        state_dir: Path | None = None,
    ) -> None:
        boto3 = _sdk("boto3")
        self._errors_mod = _sdk("botocore.exceptions")
        if prefix and not _SECRET_NAME.fullmatch(prefix):
            raise CredentialValidationError(
                "the secret name prefix may hold only letters, digits and /_+=.@-"
            )
        self.prefix = prefix
        self.kms_key_id = kms_key_id
        session = session or boto3.session.Session(region_name=region)
        try:
            self._client = session.client("secretsmanager", endpoint_url=endpoint_url)
        except self._errors_mod.BotoCoreError as exc:
            raise VaultStorageError(
                f"cannot reach AWS Secrets Manager: {type(exc).__name__} (set a region?)"
            ) from None
        self.region = str(self._client.meta.region_name)
        if state_dir is None:
            from tapyard_credentials import data_dir

            tag = hashlib.sha256(f"{self.region}|{prefix}".encode()).hexdigest()[:16]
            state_dir = data_dir() / f"aws-secretsmanager-{tag}"
        self._audit = _AuditFile(state_dir / "audit.db")
        self._locks = LockTable(state_dir / "locks")

    # --- helpers ----------------------------------------------------------------------

    @property
    def location(self) -> str:
        return f"aws-secretsmanager://{self.region}/{self.prefix}"

    def _secret_id(self, name: str) -> str:
        secret_id = self.prefix + name
        if not _SECRET_NAME.fullmatch(secret_id):
            raise CredentialValidationError(
                f"credential name {name!r} cannot be an AWS secret name: use letters, digits "
                "and /_+=.@-"
            )
        return secret_id

    def _code(self, exc: Exception) -> str:
        response = getattr(exc, "response", None) or {}
        return str(response.get("Error", {}).get("Code", type(exc).__name__))

    def _fail(self, exc: Exception, doing: str) -> NoReturn:
        """Raise the vault's error for an SDK error (its code only, never its text)."""
        if isinstance(exc, self._errors_mod.ClientError):
            raise VaultStorageError(
                f"AWS Secrets Manager refused to {doing}: {self._code(exc)}"
            ) from None
        if isinstance(exc, self._errors_mod.BotoCoreError):
            raise VaultStorageError(
                f"cannot reach AWS Secrets Manager to {doing}: {type(exc).__name__}"
            ) from None
        raise exc

    @contextlib.contextmanager
    def _calling(self, doing: str) -> Iterator[None]:
        try:
            yield
        except (self._errors_mod.ClientError, self._errors_mod.BotoCoreError) as exc:
            self._fail(exc, doing)

    def _not_found(self, exc: Exception) -> bool:
        return isinstance(exc, self._errors_mod.ClientError) and self._code(exc) in (
            "ResourceNotFoundException",
        )

    @staticmethod
    def _description(info: CredentialInfo) -> str:
        return json.dumps(
            {
                "format": _FORMAT,
                "connector": info.connector,
                "kind": info.kind,
                "allowed_connectors": list(info.allowed_connectors),
                "field_names": list(info.field_names),
                "created_at": info.created_at.isoformat(),
                "updated_at": info.updated_at.isoformat(),
            },
            sort_keys=True,
        )

    def _info_from(
        self, name: str, description: str | None, tags: Sequence[Mapping[str, str]] | None
    ) -> CredentialInfo | None:
        try:
            meta = json.loads(description or "")
        except json.JSONDecodeError:
            return None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            return None
        last_used = next(
            (t.get("Value") for t in tags or () if t.get("Key") == _LAST_USED_TAG), None
        )
        try:
            return CredentialInfo(
                name=name,
                connector=meta["connector"],
                kind=meta["kind"],
                field_names=tuple(meta["field_names"]),
                allowed_connectors=tuple(meta["allowed_connectors"]),
                created_at=datetime.fromisoformat(meta["created_at"]),
                updated_at=datetime.fromisoformat(meta["updated_at"]),
                last_used_at=datetime.fromisoformat(last_used) if last_used else None,
            )
        except (KeyError, TypeError, ValueError):
            raise VaultCorruptError(
                f"the description of AWS secret {self.prefix + name} is not tapyard's"
            ) from None

    def _read(self, name: str) -> tuple[CredentialInfo, dict[str, str]] | None:
        secret_id = self._secret_id(name)
        try:
            described = self._client.describe_secret(SecretId=secret_id)
            value = self._client.get_secret_value(SecretId=secret_id)
        except Exception as exc:
            if self._not_found(exc):
                return None
            self._fail(exc, f"read {secret_id}")
        info = self._info_from(name, described.get("Description"), described.get("Tags"))
        try:
            document = json.loads(value.get("SecretString") or "")
            fields = document["fields"]
            if document.get("format") != _FORMAT or not isinstance(fields, dict):
                raise ValueError("format")
            if not all(isinstance(v, str) for v in fields.values()):
                raise ValueError("fields")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise VaultCorruptError(f"AWS secret {secret_id} does not hold a tapyard credential") from None
        if info is None:
            raise VaultCorruptError(f"AWS secret {secret_id} has no tapyard description")
        # Access control comes from the encrypted document, never from the description.
        try:
            info = info.model_copy(
                update={
                    "connector": str(document["connector"]),
                    "kind": str(document["kind"]),
                    "allowed_connectors": tuple(str(c) for c in document["allowed_connectors"]),
                    "field_names": tuple(sorted(fields)),
                }
            )
        except (KeyError, TypeError):
            raise VaultCorruptError(f"AWS secret {secret_id} does not hold a tapyard credential") from None
        return info, fields

    def _write(self, info: CredentialInfo, fields: Mapping[str, str], *, create: bool) -> None:
        secret_id = self._secret_id(info.name)
        document = json.dumps(
            {
                "format": _FORMAT,
                "connector": info.connector,
                "kind": info.kind,
                "allowed_connectors": list(info.allowed_connectors),
                "fields": dict(fields),
            },
            sort_keys=True,
        )
        with self._calling(f"write {secret_id}"):
            if create:
                params: dict[str, Any] = {
                    "Name": secret_id,
                    "SecretString": document,
                    "Description": self._description(info),
                }
                if self.kms_key_id:
                    params["KmsKeyId"] = self.kms_key_id
                self._client.create_secret(**params)
            else:
                self._client.put_secret_value(SecretId=secret_id, SecretString=document)
                self._client.update_secret(SecretId=secret_id, Description=self._description(info))

    # --- SecretBackend -----------------------------------------------------------------

    def get(self, name: str) -> Credential | None:
        found = self._read(name)
        if found is None:
            return None
        info, fields = found
        return Credential(**info.model_dump(), fields={k: SecretStr(v) for k, v in fields.items()})

    def info(self, name: str) -> CredentialInfo | None:
        secret_id = self._secret_id(name)
        try:
            described = self._client.describe_secret(SecretId=secret_id)
        except Exception as exc:
            if self._not_found(exc):
                return None
            self._fail(exc, f"describe {secret_id}")
        return self._info_from(name, described.get("Description"), described.get("Tags"))

    def list(self) -> builtins.list[CredentialInfo]:
        found: builtins.list[CredentialInfo] = []
        with self._calling("list secrets"):
            paginator = self._client.get_paginator("list_secrets")
            filters = [{"Key": "name", "Values": [self.prefix]}] if self.prefix else []
            for page in paginator.paginate(Filters=filters):
                for secret in page.get("SecretList", []):
                    secret_name = str(secret.get("Name", ""))
                    if not secret_name.startswith(self.prefix):
                        continue
                    info = self._info_from(
                        secret_name[len(self.prefix) :],
                        secret.get("Description"),
                        secret.get("Tags"),
                    )
                    if info is not None:
                        found.append(info)
        return sorted(found, key=lambda i: i.name)

    def put(
        self,
        name: str,
        *,
        connector: str,
        kind: str,
        fields: Mapping[str, str],
        allowed_connectors: Sequence[str],
        at: datetime,
        audit: AuditEvent,
    ) -> CredentialInfo:
        with self.lock(name):
            previous = self.info(name)
            info = info_for_put(
                previous, name, connector=connector, kind=kind, fields=fields,
                allowed_connectors=allowed_connectors, at=at,
            )
            self._write(info, fields, create=previous is None)
        self._audit.append(audit)
        return info

    def update_fields(
        self, name: str, fields: Mapping[str, str], *, at: datetime, audit: AuditEvent
    ) -> CredentialInfo | None:
        with self.lock(name):
            found = self._read(name)
            if found is None:
                return None
            old, current = found
            merged = {**current, **fields}
            info = old.model_copy(update={"field_names": tuple(sorted(merged)), "updated_at": at})
            self._write(info, merged, create=False)
        self._audit.append(audit)
        return info

    def delete(self, name: str, *, audit: AuditEvent) -> bool:
        secret_id = self._secret_id(name)
        with self.lock(name):
            # Deleting an absent secret is not an error everywhere (moto, some
            # endpoints): ask first, so that a miss is always reported as one.
            if self.info(name) is None:
                return False
            try:
                self._client.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
            except Exception as exc:
                if self._not_found(exc):
                    return False
                self._fail(exc, f"delete {secret_id}")
        self._audit.append(audit)
        return True

    def mark_used(self, name: str, *, at: datetime, audit: AuditEvent) -> None:
        secret_id = self._secret_id(name)
        with self._calling(f"tag {secret_id}"):
            self._client.tag_resource(
                SecretId=secret_id,
                Tags=[{"Key": _LAST_USED_TAG, "Value": at.astimezone(UTC).isoformat()}],
            )
        self._audit.append(audit)

    def record(self, event: AuditEvent) -> None:
        self._audit.append(event)

    def audit(self, *, limit: int, name: str | None = None) -> builtins.list[AuditEntry]:
        return self._audit.read(limit, name)

    def lock(self, name: str, *, timeout: float | None = None) -> AbstractContextManager[None]:
        return self._locks.lock(name, timeout=timeout)
