"""The registry's operations: publishers, tokens, keys, the publish gate, yanking, listing.

Every method that changes something runs in one database transaction with
the TUF metadata it implies, under the repository's lock, so a refused or
failed publish leaves nothing behind: no row, no artifact, no metadata.

Errors are :class:`Refused` with an HTTP status and a one-line message that
says what is wrong and what to do; the JSON API returns them as
``{"error": message}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from securesystemslib.signer import SSlibKey
from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from tuf.api.metadata import Metadata, Targets

from tapyard.base import PLUGIN_API_VERSION
from tapyard.marketplace._listing import SearchIndex, connector_summaries
from tapyard.marketplace._wheel import WheelInfo, WheelRefused, inspect_wheel, normalize
from tapyard_registry._db import packages, publisher_keys, publishers, releases, tokens
from tapyard_registry._names import confusable_with
from tapyard_registry._storage import ArtifactStore
from tapyard_registry._tuf import Repository

__all__ = ["SCOPES", "KitResult", "Publisher", "Refused", "Registry"]

#: What a token may be allowed to do.
SCOPES = ("publish", "yank", "keys", "tokens")
_NAMESPACE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,37}[a-z0-9])?$")
_RESERVED = {"root", "targets", "snapshot", "timestamp", "api", "admin", "static", "tuf"}


class Refused(Exception):
    """A request the registry turns down; ``status`` is its HTTP status, the message is one safe line."""

    def __init__(self, status: int, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.report = report


@dataclass(frozen=True)
class Publisher:
    id: int
    namespace: str
    scopes: frozenset[str]
    token_id: str


@dataclass(frozen=True)
class KitResult:
    """What the conformance kit said about an artifact."""

    passed: bool
    score: float | None
    support_level: str | None
    report: str
    details: Any = None


def _now() -> datetime:
    return datetime.now(UTC)


def _digest(secret: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: no dictionary to attack.
    return hashlib.sha256(secret.encode()).hexdigest()


def _public_key(value: Any) -> SSlibKey:
    """A publisher's Ed25519 public key, from a TUF key object or a PEM text."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        if isinstance(value, dict):
            key = SSlibKey.from_dict("", dict(value))
            key = SSlibKey(key.keyid, key.keytype, key.scheme, key.keyval)
            public = key.to_dict()
            loaded = SSlibKey.from_dict(_keyid(public), public)
        else:
            crypto = serialization.load_pem_public_key(str(value).encode())
            if not isinstance(crypto, Ed25519PublicKey):
                raise ValueError
            loaded = SSlibKey.from_crypto(crypto)
    except Exception:
        raise Refused(400, "public_key must be an Ed25519 public key (PEM, or a TUF key object)") from None
    if loaded.keytype != "ed25519":
        raise Refused(400, "public_key must be an Ed25519 key")
    return loaded


def _keyid(key_dict: dict[str, Any]) -> str:
    from securesystemslib.formats import encode_canonical

    canonical = encode_canonical(key_dict)
    assert isinstance(canonical, str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class _Bucket:
    """Writes allowed per caller: ``rate`` per minute with a burst of ``rate``."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.state: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def take(self, who: str) -> float:
        """0 when the write may go ahead, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        with self.lock:
            now = time.monotonic()
            tokens_left, at = self.state.get(who, (float(self.rate), now))
            tokens_left = min(float(self.rate), tokens_left + (now - at) * self.rate / 60)
            if tokens_left < 1:
                self.state[who] = (tokens_left, now)
                return (1 - tokens_left) * 60 / self.rate
            self.state[who] = (tokens_left - 1, now)
            return 0.0


_Listing = tuple[list[Mapping[str, Any]], SearchIndex, list[bytes]]

#: Seconds a listing is served before it is read again (changes made through this process show at once).
LISTING_TTL = 30.0


class Registry:
    """One registry: its database, artifact store, TUF repository and publish gate."""

    def __init__(
        self,
        repository: Repository,
        store: ArtifactStore,
        *,
        kit: Callable[[Path], KitResult] | None = None,
        writes_per_minute: int = 60,
        max_upload: int | None = None,
    ) -> None:
        from tapyard.marketplace._wheel import MAX_WHEEL_BYTES

        self.repo = repository
        self.engine = repository.engine
        self.store = store
        self.kit = kit
        self.max_upload = max_upload or MAX_WHEEL_BYTES
        self.writes = _Bucket(writes_per_minute)
        self._listing: tuple[_Listing, float] | None = None
        self._listing_lock = threading.Lock()

    # -- rate limits and auth --------------------------------------------------------

    def throttle(self, who: str) -> None:
        wait = self.writes.take(who)
        if wait:
            raise Refused(429, f"too many writes; retry in {max(1, round(wait))} s", report={"retry_after": max(1, round(wait))})

    def authenticate(self, header: str | None, scope: str) -> Publisher:
        """The publisher a bearer token belongs to, if the token is valid, unrevoked and has ``scope``."""
        if not header or not header.lower().startswith("bearer "):
            raise Refused(401, "this needs a publisher token: pass --token or set TAPYARD_REGISTRY_TOKEN")
        raw = header[7:].strip()
        token_id, _, secret = raw.removeprefix("tyr_").partition(".")
        with self.engine.connect() as connection:
            row = connection.execute(select(tokens).where(tokens.c.id == token_id)).first() if secret else None
            if row is None or not hmac.compare_digest(row.digest, _digest(secret)):
                raise Refused(401, "the token is not valid; create a new one with `tapyard registry token`")
            if row.revoked_at is not None:
                raise Refused(401, "the token was revoked; create a new one with `tapyard registry token`")
            scopes = frozenset(row.scopes.split(","))
            if scope not in scopes:
                raise Refused(403, f"the token may not {scope}; make a token with the {scope!r} scope")
            namespace = connection.execute(select(publishers.c.namespace).where(publishers.c.id == row.publisher_id)).scalar_one()
        self.throttle(f"token:{token_id}")
        return Publisher(row.publisher_id, namespace, scopes, token_id)

    def _new_token(self, connection: Connection, publisher_id: int, scopes: list[str], description: str) -> tuple[str, str]:
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        connection.execute(
            tokens.insert().values(
                id=token_id, publisher_id=publisher_id, digest=_digest(secret), scopes=",".join(scopes),
                description=description[:200], created_at=_now(),
            )
        )
        return token_id, f"tyr_{token_id}.{secret}"

    # -- publishers ------------------------------------------------------------------

    def register(self, namespace: str, public_key: Any, display_name: str = "") -> dict[str, Any]:
        """A new publisher owning ``namespace``, with one key and a token of every scope."""
        if not isinstance(namespace, str) or not _NAMESPACE.match(namespace) or namespace in _RESERVED:
            raise Refused(400, "namespace must be 1-39 lowercase letters, digits and inner hyphens, and not a reserved word")
        key = _public_key(public_key)
        with self.repo.lock, self.engine.begin() as connection:
            self.repo.exclusive(connection)
            if connection.execute(select(publishers.c.id).where(publishers.c.namespace == namespace)).first():
                raise Refused(409, f"the namespace {namespace!r} is taken; choose another")
            if connection.execute(select(publisher_keys.c.keyid).where(publisher_keys.c.keyid == key.keyid)).first():
                raise Refused(409, "that key is already registered to a publisher; make a new key")
            publisher_id = connection.execute(
                publishers.insert().values(namespace=namespace, display_name=(display_name or namespace)[:200],
                                           verified=False, created_at=_now())
            ).inserted_primary_key[0]  # type: ignore[index]
            connection.execute(
                publisher_keys.insert().values(keyid=key.keyid, publisher_id=publisher_id,
                                               public_key=json.dumps(key.to_dict()), created_at=_now())
            )
            token_id, token = self._new_token(connection, publisher_id, list(SCOPES), "made at registration")
            self.repo.set_delegation(connection, namespace, [key], [])
            self.repo.republish(connection)
        return {"namespace": namespace, "keyid": key.keyid, "token": token, "token_id": token_id, "scopes": list(SCOPES)}

    def _keys(self, connection: Connection, publisher_id: int) -> list[SSlibKey]:
        rows = connection.execute(
            select(publisher_keys).where(publisher_keys.c.publisher_id == publisher_id, publisher_keys.c.revoked_at.is_(None))
        ).all()
        return [SSlibKey.from_dict(r.keyid, json.loads(r.public_key)) for r in rows]

    def _owned(self, connection: Connection, publisher_id: int) -> list[str]:
        return list(connection.execute(select(packages.c.name).where(packages.c.publisher_id == publisher_id)).scalars())

    def add_key(self, who: Publisher, public_key: Any) -> dict[str, Any]:
        key = _public_key(public_key)
        with self.repo.lock, self.engine.begin() as connection:
            self.repo.exclusive(connection)
            if connection.execute(select(publisher_keys.c.keyid).where(publisher_keys.c.keyid == key.keyid)).first():
                raise Refused(409, "that key is already registered")
            connection.execute(
                publisher_keys.insert().values(keyid=key.keyid, publisher_id=who.id,
                                               public_key=json.dumps(key.to_dict()), created_at=_now())
            )
            self.repo.set_delegation(connection, who.namespace, self._keys(connection, who.id), self._owned(connection, who.id))
            self.repo.republish(connection)
        return {"keyid": key.keyid}

    def revoke_key(self, who: Publisher, keyid: str) -> dict[str, Any]:
        with self.repo.lock, self.engine.begin() as connection:
            self.repo.exclusive(connection)
            keys = self._keys(connection, who.id)
            if keyid not in {k.keyid for k in keys}:
                raise Refused(404, "no such key of yours")
            if len(keys) == 1:
                raise Refused(409, "that is your only key; add a new one before revoking it")
            connection.execute(update(publisher_keys).where(publisher_keys.c.keyid == keyid).values(revoked_at=_now()))
            self.repo.set_delegation(connection, who.namespace, self._keys(connection, who.id), self._owned(connection, who.id))
            self.repo.republish(connection)
        return {"revoked": keyid}

    def create_token(self, who: Publisher, scopes: Any, description: str = "") -> dict[str, Any]:
        if not isinstance(scopes, list) or not scopes or any(s not in SCOPES for s in scopes):
            raise Refused(400, f"scopes must be a list drawn from {', '.join(SCOPES)}")
        with self.engine.begin() as connection:
            token_id, token = self._new_token(connection, who.id, sorted(set(scopes)), str(description))
        return {"token_id": token_id, "token": token, "scopes": sorted(set(scopes))}

    def list_tokens(self, who: Publisher) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(tokens).where(tokens.c.publisher_id == who.id).order_by(tokens.c.created_at)).all()
        return [
            {"token_id": r.id, "scopes": r.scopes.split(","), "description": r.description,
             "created_at": r.created_at.isoformat(), "revoked": r.revoked_at is not None}
            for r in rows
        ]

    def revoke_token(self, who: Publisher, token_id: str) -> dict[str, Any]:
        with self.engine.begin() as connection:
            done = connection.execute(
                update(tokens).where(tokens.c.id == token_id, tokens.c.publisher_id == who.id, tokens.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
            if not done.rowcount:
                raise Refused(404, "no such unrevoked token of yours")
        return {"revoked": token_id}

    def delegated_role(self, namespace: str) -> bytes | None:
        with self.engine.connect() as connection:
            return self.repo.read(connection, namespace)

    # -- the publish gate --------------------------------------------------------------

    def publish(self, who: Publisher, filename: str, data: bytes, role_bytes: bytes, source: bytes | None = None) -> dict[str, Any]:
        """Run the gate on an upload; list it, or raise :class:`Refused` having changed nothing."""
        if "publish" not in who.scopes:
            raise Refused(403, "the token may not publish; make a token with the 'publish' scope")
        if len(data) > self.max_upload:
            raise Refused(413, f"the wheel is larger than the {self.max_upload} bytes this registry accepts")
        try:
            wheel = inspect_wheel(Path(Path(filename).name), data=data)
        except WheelRefused as exc:
            raise Refused(422, f"refused: {exc}") from None
        manifest = self._check_manifest(wheel, who)
        name = wheel.distribution
        path = f"{name}/{wheel.filename}"
        role = self._parse_role(role_bytes)
        with self.engine.connect() as connection:
            self._check_name(connection, who, name)
            self._check_version(connection, name, wheel.version)
            self._check_role(connection, who, role, path, data)
        kit = self._run_kit(wheel, data, source)
        with self.repo.lock, self.engine.begin() as connection:
            self.repo.exclusive(connection)
            # checked again under the lock: another publish may have won the race meanwhile
            self._check_name(connection, who, name)
            self._check_version(connection, name, wheel.version)
            self._check_role(connection, who, role, path, data)
            owned = self._owned(connection, who.id)
            if name not in owned:
                connection.execute(packages.insert().values(name=name, display_name=wheel.metadata["name"],
                                                            publisher_id=who.id, created_at=_now()))
                self.repo.set_delegation(connection, who.namespace, self._keys(connection, who.id), [*owned, name])
            connection.execute(
                releases.insert().values(
                    package=name, version=wheel.version, filename=wheel.filename, sha256=wheel.sha256, size=wheel.size,
                    requires_core=wheel.requires_core, summary=wheel.metadata.get("summary", ""), manifest=manifest,
                    metadata=wheel.metadata, kit_score=kit.score if kit else None,
                    support_level=kit.support_level if kit else None, kit_passed_at=_now() if kit else None,
                    kit_report=kit.report if kit else "", yanked=False, yank_reason="", created_at=_now(),
                )
            )
            self.store.put(path, data)
            try:
                self.repo.store_delegated(connection, who.namespace, role)
            except Exception:
                self.store.delete(path)
                raise
        self._listing = None
        return {
            "name": name, "version": wheel.version, "path": path, "sha256": wheel.sha256,
            "score": kit.score if kit else None, "support_level": kit.support_level if kit else None,
        }

    def _check_manifest(self, wheel: WheelInfo, who: Publisher) -> dict[str, Any]:
        manifest = wheel.manifest
        where = f"{wheel.package}/tapyard-manifest.toml"
        try:
            _validate_manifest(wheel)
        except Refused:
            raise
        except Exception as exc:
            raise Refused(422, f"refused: {str(exc)[:300]}") from None
        if manifest.get("plugin_api") != PLUGIN_API_VERSION:
            raise Refused(422, f"refused: {where} says plugin_api {manifest.get('plugin_api')!r}; this registry lists plugin_api {PLUGIN_API_VERSION}")
        publisher = manifest.get("publisher")
        if publisher != who.namespace:
            raise Refused(
                403,
                f"refused: the manifest names the publisher {str(publisher)[:40]!r}, but this token publishes into "
                f"{who.namespace!r}; a publisher publishes only into its own namespace",
            )
        if wheel.requires_core is None:
            raise Refused(422, "refused: the package does not say which core versions it supports; add e.g. 'tapyard>=0.1,<0.2' to its dependencies")
        if not connector_summaries(manifest):
            raise Refused(422, f"refused: {where} describes no connector; add a [[connector]] table")
        for table in manifest.get("connector", []):
            for key, meta_key in (("license", "license"), ("homepage", "homepage")):
                if table.get(key) and wheel.metadata.get(meta_key) and table[key] != wheel.metadata[meta_key]:
                    raise Refused(422, f"refused: {where} says {key} {table[key]!r} but the package metadata says {wheel.metadata[meta_key]!r}")
            if table.get("core") and wheel.requires_core and _spec(table["core"]) != _spec(wheel.requires_core):
                raise Refused(422, f"refused: {where} says core {table['core']!r} but the package requires tapyard{wheel.requires_core}")
        return dict(manifest)

    def _parse_role(self, role_bytes: bytes) -> Metadata[Targets]:
        try:
            md = Metadata[Targets].from_bytes(role_bytes)
        except Exception:
            raise Refused(400, "the signed targets metadata is missing or malformed; publish with `tapyard publish`") from None
        if md.signed.type != "targets":
            raise Refused(400, "the signed metadata must be a targets role")
        return md

    def _check_name(self, connection: Connection, who: Publisher, name: str) -> None:
        owner = connection.execute(select(packages.c.publisher_id).where(packages.c.name == name)).scalar()
        if owner is not None and owner != who.id:
            raise Refused(403, f"refused: {name!r} belongs to another publisher's namespace")
        if owner is None:
            others = connection.execute(select(packages.c.name).where(packages.c.publisher_id != who.id)).scalars()
            clash = confusable_with(name, others)
            if clash:
                raise Refused(409, f"refused: the name {name!r} is confusable with {clash!r}, which another publisher owns; choose a distinct name")

    def _check_version(self, connection: Connection, name: str, version: str) -> None:
        if connection.execute(select(releases.c.id).where(releases.c.package == name, releases.c.version == version)).first():
            raise Refused(409, f"refused: {name} {version} is already published; versions are immutable, bump the version")

    def _check_role(self, connection: Connection, who: Publisher, role: Metadata[Targets], path: str, data: bytes) -> None:
        delegator = self.repo.delegator(connection)
        keys = self._keys(connection, who.id)
        owned = self._owned(connection, who.id)
        name = path.split("/")[0]
        if name not in owned:
            # the delegation that will cover this new package, for the signature check below
            delegator = Metadata[Targets].from_bytes(delegator.to_bytes())
            assert delegator.signed.delegations is not None and delegator.signed.delegations.roles is not None
            for key in keys:
                delegator.signed.delegations.keys[key.keyid] = key
        try:
            delegator.verify_delegate(who.namespace, role)
        except Exception:
            raise Refused(
                403, "refused: the publisher signature does not verify with a key registered to this namespace; "
                "sign with your registered key (tapyard registry key) or register this key"
            ) from None
        previous_bytes = self.repo.read(connection, who.namespace)
        previous = Metadata[Targets].from_bytes(previous_bytes).signed.targets if previous_bytes else {}
        expected_version = Metadata[Targets].from_bytes(previous_bytes).signed.version + 1 if previous_bytes else 1
        if role.signed.version != expected_version:
            raise Refused(409, f"refused: the signed metadata is version {role.signed.version}, expected {expected_version}; publish again (another publish came first)")
        if role.signed.expires <= _now() + timedelta(days=1):
            raise Refused(400, "refused: the signed metadata expires within a day; sign it with a longer expiry")
        if role.signed.delegations is not None:
            raise Refused(400, "refused: a publisher's metadata may not delegate further")
        added = {p: t for p, t in role.signed.targets.items() if p not in previous}
        kept = {p: t for p, t in role.signed.targets.items() if p in previous}
        if set(added) != {path} or kept != previous:
            raise Refused(400, f"refused: the signed metadata must list exactly the earlier files plus {path}")
        try:
            added[path].verify_length_and_hashes(data)
        except Exception:
            raise Refused(400, "refused: the signed checksum does not match the uploaded wheel") from None

    def _run_kit(self, wheel: WheelInfo, data: bytes, source: bytes | None) -> KitResult | None:
        if self.kit is None:
            return None
        import tempfile

        from tapyard_registry._kit import check_source

        if source is None:
            raise Refused(422, "refused: the registry runs the conformance kit on the project's source (its cassettes); "
                               "publish from the project folder, or pass --source with a .whl")
        if len(source) > self.max_upload:
            raise Refused(413, f"the source archive is larger than the {self.max_upload} bytes this registry accepts")
        with tempfile.TemporaryDirectory(prefix="tapyard-kit-") as scratch:
            stem = f"{wheel.distribution.replace('-', '_')}-{wheel.version}"
            target = Path(scratch) / f"{stem}.tar.gz"
            target.write_bytes(source)
            problem = check_source(target, data, wheel.package)
            if problem:
                raise Refused(422, f"refused: {problem}")
            result = self.kit(target)
        if not result.passed:
            raise Refused(422, f"refused: the conformance kit failed: {result.report.splitlines()[0] if result.report else 'no report'}", report=result.details or result.report)
        return result

    # -- yanking ---------------------------------------------------------------------

    def yank(self, who: Publisher, name: str, version: str, yanked: bool, reason: str = "") -> dict[str, Any]:
        if "yank" not in who.scopes:
            raise Refused(403, "the token may not yank; make a token with the 'yank' scope")
        name = normalize(name)
        with self.engine.begin() as connection:
            owner = connection.execute(select(packages.c.publisher_id).where(packages.c.name == name)).scalar()
            if owner is None:
                raise Refused(404, f"no package named {name!r}")
            if owner != who.id:
                raise Refused(403, f"{name!r} belongs to another publisher")
            done = connection.execute(
                update(releases).where(releases.c.package == name, releases.c.version == version)
                .values(yanked=yanked, yank_reason=str(reason)[:200] if yanked else "")
            )
            if not done.rowcount:
                raise Refused(404, f"{name} has no version {version}")
        self._listing = None
        return {"name": name, "version": version, "yanked": yanked}

    # -- reading ---------------------------------------------------------------------

    def package(self, name: str) -> dict[str, Any] | None:
        """A package with every release, newest first, or None."""
        name = normalize(name)
        with self.engine.connect() as connection:
            row = connection.execute(
                select(packages, publishers.c.namespace, publishers.c.verified, publishers.c.display_name.label("publisher_name"))
                .join(publishers, publishers.c.id == packages.c.publisher_id).where(packages.c.name == name)
            ).first()
            if row is None:
                return None
            rels = connection.execute(select(releases).where(releases.c.package == name)).all()
        return _package_document(row, rels)

    def listing(self) -> _Listing:
        """Every package's summary, their search index and each one as JSON.

        Built again after a write through this process at once, and at most
        :data:`LISTING_TTL` seconds after a change made elsewhere (another
        registry process on the same database, an operator's command).
        """
        cached = self._listing
        if cached is not None:
            return cached[0]
        return self.rebuild_listing(wait=True) or self.listing()

    def listing_stale(self) -> bool:
        cached = self._listing
        return cached is None or time.monotonic() - cached[1] > LISTING_TTL

    def rebuild_listing(self, *, wait: bool = False) -> _Listing | None:
        """Read the listing again and swap it in; without ``wait``, None when a rebuild is already under way."""
        if not self._listing_lock.acquire(blocking=wait):
            return None
        try:
            if wait and self._listing is not None and not self.listing_stale():
                return self._listing[0]
            import gc

            gc.unfreeze()
            with self.engine.connect() as connection:
                rows = connection.execute(
                    select(packages, publishers.c.namespace, publishers.c.verified, publishers.c.display_name.label("publisher_name"))
                    .join(publishers, publishers.c.id == packages.c.publisher_id).order_by(packages.c.name)
                ).all()
                by_package: dict[str, list[Any]] = {}
                for rel in connection.execute(select(releases)).all():
                    by_package.setdefault(rel.package, []).append(rel)
            summaries = []
            for row in rows:
                document = _package_document(row, by_package.get(row.name, []))
                if document["summary_release"] is not None:
                    summaries.append(document["summary_release"])
            index = SearchIndex(summaries)
            listing = (index.summaries, index, [orjson.dumps(s) for s in index.summaries])
            self._listing = (listing, time.monotonic())
            # The index is hundreds of thousands of long-lived objects: left to the collector,
            # every full collection walks them all (tens of ms, a search's whole budget).
            gc.collect()
            gc.freeze()
            return listing
        finally:
            self._listing_lock.release()

    def search(self, query: str, filters: dict[str, str], limit: int = 50) -> dict[str, Any]:
        _summaries, index, _encoded = self.listing()
        positions, total = index.search(query, filters, limit)
        return {"query": query, "filters": filters, "total": total, "results": [index.summaries[i] for i in positions]}

    def search_json(self, query: str, filters: dict[str, str], limit: int = 50) -> bytes:
        """:meth:`search` as the JSON the API sends, from documents serialised once per listing."""
        _summaries, index, encoded = self.listing()
        positions, total = index.search(query, filters, limit)
        head = orjson.dumps({"query": query, "filters": filters, "total": total})[:-1]
        return head + b',"results":[' + b",".join(encoded[i] for i in positions) + b"]}"


def _spec(text: str) -> str:
    from packaging.specifiers import SpecifierSet

    return str(SpecifierSet(text.removeprefix("tapyard").strip()))


def _validate_manifest(wheel: WheelInfo) -> None:
    """The manifest model's own validation (the one the author kit and the engine use)."""
    from tapyard.base.manifest import parse_manifest_text

    parse_manifest_text(wheel.manifest_text, f"{wheel.package}/tapyard-manifest.toml")


def _release_document(rel: Any) -> dict[str, Any]:
    return {
        "version": rel.version,
        "filename": rel.filename,
        "path": f"{rel.package}/{rel.filename}",
        "sha256": rel.sha256,
        "size": rel.size,
        "requires_core": rel.requires_core,
        "yanked": bool(rel.yanked),
        "yank_reason": rel.yank_reason,
        "score": rel.kit_score,
        "support_level": rel.support_level,
        "kit_passed_at": rel.kit_passed_at.isoformat() if rel.kit_passed_at else None,
        "published_at": rel.created_at.isoformat() if rel.created_at else None,
    }


def _package_document(row: Any, rels: Sequence[Any]) -> dict[str, Any]:
    from packaging.version import InvalidVersion, Version

    def key(rel: Any) -> Any:
        try:
            return Version(rel.version)
        except InvalidVersion:
            return Version("0")

    ordered = sorted(rels, key=key, reverse=True)
    current = next((r for r in ordered if not r.yanked), None)
    summary = None
    if current is not None:
        summary = {
            "name": row.name,
            "display_name": row.display_name,
            "publisher": row.namespace,
            "publisher_name": row.publisher_name,
            "verified": bool(row.verified),
            "version": current.version,
            "summary": current.summary,
            "requires_core": current.requires_core,
            "score": current.kit_score,
            "support_level": current.support_level or "none",
            "kit_passed_at": current.kit_passed_at.isoformat() if current.kit_passed_at else None,
            "updated": current.created_at.isoformat() if current.created_at else None,
            "license": (current.metadata or {}).get("license", ""),
            "homepage": (current.metadata or {}).get("homepage", ""),
            "connectors": connector_summaries(current.manifest or {}),
        }
    return {
        "name": row.name,
        "display_name": row.display_name,
        "publisher": row.namespace,
        "publisher_name": row.publisher_name,
        "verified": bool(row.verified),
        "releases": [_release_document(r) for r in ordered],
        "summary_release": summary,
    }
