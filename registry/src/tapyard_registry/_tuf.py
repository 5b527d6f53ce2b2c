"""The registry's signed index: a TUF repository built with python-tuf's Metadata API.

Roles, as the TUF specification names them:

- ``root`` (registry key): which keys sign the top-level roles; consistent
  snapshots on, so every version of every role stays fetchable by its number.
- ``targets`` (registry key): lists no file itself; it delegates, per publisher
  namespace, the paths ``<package>/*`` of each package that namespace owns
  to that publisher's Ed25519 keys (terminating, threshold 1). A package name
  is bound to one namespace by this registry-signed role, so a publisher's
  key can never vouch for another publisher's package.
- ``<namespace>`` (publisher key): the delegated targets role; the publisher
  signs it on their own machine with each new file's length and SHA-256, and
  the registry only stores it after checking it extends the previous version.
- ``snapshot`` and ``timestamp`` (registry keys, online): the version of every
  targets role, and the current snapshot. Their short expiry is what defeats
  a freeze; their versions what defeats a rollback.

Every version of every role is kept in the ``tuf_metadata`` table and served
as ``N.<role>.json`` (``timestamp.json`` unversioned), as the ngclient expects.
The registry's own private keys are files in its data directory (0600).
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, SSlibKey
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from tapyard_registry._db import tuf_metadata

__all__ = ["Lifetimes", "Repository"]

_TOP = ("root", "targets", "snapshot", "timestamp")


class Lifetimes:
    """How long each registry-signed role stays valid (a client refuses an expired one)."""

    def __init__(self, *, root: timedelta = timedelta(days=365), targets: timedelta = timedelta(days=365),
                 snapshot: timedelta = timedelta(days=7), timestamp: timedelta = timedelta(days=1)) -> None:
        self.root, self.targets, self.snapshot, self.timestamp = root, targets, snapshot, timestamp

    def of(self, role: str) -> timedelta:
        return {"root": self.root, "targets": self.targets, "snapshot": self.snapshot}.get(role, self.timestamp)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _load_signer(path: Path) -> CryptoSigner:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        os.replace(path.with_suffix(".tmp"), path)
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    return CryptoSigner(private)


class Repository:
    """The TUF metadata of one registry, read from and written to its database.

    Writes are serialised by a lock (one registry process) and run inside the
    caller's transaction, so a publish's rows and its metadata commit together.
    """

    def __init__(self, engine: Engine, key_dir: Path, lifetimes: Lifetimes | None = None) -> None:
        self.engine = engine
        self.lifetimes = lifetimes or Lifetimes()
        self.signers = {role: _load_signer(key_dir / f"{role}.pem") for role in _TOP}
        self.lock = threading.RLock()
        self._serializer = JSONSerializer(compact=True)
        with self.engine.begin() as connection:
            self.exclusive(connection)
            if self.latest_version(connection, "root") == 0:
                self._initialise(connection)

    # -- storage -------------------------------------------------------------------------

    @staticmethod
    def exclusive(connection: Connection) -> None:
        """Serialise this write transaction with every other registry process on the same database.

        The lock in :attr:`lock` covers one process; on PostgreSQL several
        registry processes may share the index, and each change of the signed
        index reads the newest versions and writes the next ones. (SQLite
        serialises writers itself.)
        """
        if connection.dialect.name == "postgresql":
            from sqlalchemy import text

            connection.execute(text("SELECT pg_advisory_xact_lock(16016)"))

    def latest_version(self, connection: Connection, role: str) -> int:
        found = connection.execute(select(func.max(tuf_metadata.c.version)).where(tuf_metadata.c.role == role)).scalar()
        return int(found or 0)

    def read(self, connection: Connection, role: str, version: int | None = None) -> bytes | None:
        """The bytes of ``role`` at ``version`` (the newest when None), or None."""
        if version is None:
            version = self.latest_version(connection, role)
        row = connection.execute(
            select(tuf_metadata.c.data).where(tuf_metadata.c.role == role, tuf_metadata.c.version == version)
        ).first()
        return bytes(row[0]) if row else None

    def load(self, connection: Connection, role: str) -> Metadata[Any] | None:
        data = self.read(connection, role)
        return Metadata.from_bytes(data) if data is not None else None

    def _store(self, connection: Connection, role: str, md: Metadata[Any]) -> None:
        connection.execute(
            tuf_metadata.insert().values(role=role, version=md.signed.version, data=md.to_bytes(self._serializer))
        )

    def _sign_store(self, connection: Connection, role: str, md: Metadata[Any]) -> None:
        md.sign(self.signers[role])
        self._store(connection, role, md)

    # -- the top-level roles -------------------------------------------------------------

    def _initialise(self, connection: Connection) -> None:
        root = Root(expires=_now() + self.lifetimes.root, consistent_snapshot=True)
        for role in _TOP:
            root.add_key(self.signers[role].public_key, role)
        self._sign_store(connection, "root", Metadata(root))
        targets = Targets(expires=_now() + self.lifetimes.targets, delegations=Delegations(keys={}, roles={}))
        self._sign_store(connection, "targets", Metadata(targets))
        self._new_snapshot(connection, {})

    def _new_snapshot(self, connection: Connection, changed: dict[str, int]) -> None:
        """A new snapshot listing every targets role's newest version, and a new timestamp for it."""
        previous = self.load(connection, "snapshot")
        meta = dict(previous.signed.meta) if previous else {}
        meta["targets.json"] = MetaFile(version=self.latest_version(connection, "targets"))
        for role, version in changed.items():
            meta[f"{role}.json"] = MetaFile(version=version)
        version = previous.signed.version + 1 if previous else 1
        snapshot = Snapshot(version=version, expires=_now() + self.lifetimes.snapshot, meta=meta)
        self._sign_store(connection, "snapshot", Metadata(snapshot))
        self._new_timestamp(connection, version)

    def _new_timestamp(self, connection: Connection, snapshot_version: int) -> None:
        previous = self.load(connection, "timestamp")
        version = previous.signed.version + 1 if previous else 1
        timestamp = Timestamp(
            version=version, expires=_now() + self.lifetimes.timestamp, snapshot_meta=MetaFile(version=snapshot_version)
        )
        self._sign_store(connection, "timestamp", Metadata(timestamp))

    def fresh_timestamp(self) -> bytes:
        """The current ``timestamp.json``, re-signed first when half its lifetime (or the snapshot's) has passed."""
        with self.engine.connect() as connection:
            timestamp = self.read(connection, "timestamp")
        assert timestamp is not None
        md = Metadata[Timestamp].from_bytes(timestamp)
        if md.signed.expires - _now() > self.lifetimes.timestamp / 2 and not self._snapshot_stale():
            return timestamp
        with self.lock, self.engine.begin() as connection:
            self.exclusive(connection)
            current = self.load(connection, "timestamp")
            assert current is not None
            if current.signed.expires - _now() > self.lifetimes.timestamp / 2 and not self._snapshot_stale(connection):
                return self.read(connection, "timestamp") or b""
            if self._snapshot_stale(connection):
                self._new_snapshot(connection, {})
            else:
                self._new_timestamp(connection, current.signed.snapshot_meta.version)
            return self.read(connection, "timestamp") or b""

    def _snapshot_stale(self, connection: Connection | None = None) -> bool:
        if connection is None:
            with self.engine.connect() as own:
                return self._snapshot_stale(own)
        snapshot = self.load(connection, "snapshot")
        return snapshot is None or snapshot.signed.expires - _now() <= self.lifetimes.snapshot / 2

    # -- delegations ---------------------------------------------------------------------

    def set_delegation(self, connection: Connection, namespace: str, keys: list[SSlibKey], packages: list[str]) -> None:
        """Delegate ``<package>/*`` for each of ``packages`` to ``namespace``'s ``keys``; re-sign targets."""
        targets = self.load(connection, "targets")
        assert targets is not None
        delegations = targets.signed.delegations
        assert delegations is not None and delegations.roles is not None
        role = DelegatedRole(
            name=namespace,
            keyids=sorted(k.keyid for k in keys),
            threshold=1,
            terminating=True,
            paths=[f"{p}/*" for p in sorted(packages)],
        )
        if delegations.roles.get(namespace) == role and all(k.keyid in delegations.keys for k in keys):
            return
        delegations.roles[namespace] = role
        used = {keyid for r in delegations.roles.values() for keyid in r.keyids}
        delegations.keys = {**{k: v for k, v in delegations.keys.items() if k in used}, **{k.keyid: k for k in keys}}
        targets.signed.version += 1
        targets.signed.expires = _now() + self.lifetimes.targets
        self._sign_store(connection, "targets", targets)

    def delegator(self, connection: Connection) -> Metadata[Targets]:
        targets = self.load(connection, "targets")
        assert targets is not None
        return targets

    def store_delegated(self, connection: Connection, namespace: str, md: Metadata[Targets]) -> None:
        """Keep a publisher-signed role and publish a snapshot and timestamp that list it."""
        self._store(connection, namespace, md)
        self._new_snapshot(connection, {namespace: md.signed.version})

    def republish(self, connection: Connection) -> None:
        """A new snapshot and timestamp (after the top-level targets changed)."""
        self._new_snapshot(connection, {})

    def file(self, connection: Connection, name: str) -> bytes | None:
        """The bytes served for the metadata file ``name`` (``N.role.json`` or ``timestamp.json``)."""
        if name == "timestamp.json":
            return self.fresh_timestamp()
        version_text, _, rest = name.partition(".")
        role = rest.removesuffix(".json")
        if not version_text.isdigit() or not rest.endswith(".json") or not role or role == "timestamp":
            return None
        return self.read(connection, role, int(version_text))
