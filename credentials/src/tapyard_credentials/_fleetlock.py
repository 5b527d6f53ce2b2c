"""Credential locks that bind processes on several machines: Redis or PostgreSQL.

A vault's own lock (:class:`~tapyard_credentials.LockTable`, file locks) binds the
threads and processes of one machine. Workers on several machines that share one
credential through a shared backend (AWS Secrets Manager, say) need a lock they
all see, or two of them refresh a rotating OAuth credential at once and the
second spends a refresh token the first already spent (``invalid_grant``, and
with most providers the whole token family revoked). Hand one of these to
:class:`~tapyard_credentials.Vault` as ``locks=`` (or set ``TAPYARD_LOCK_URL``
for the CLI) and :meth:`Vault.lock` takes it after the local one.

- :class:`RedisLocks` (``redis://``, ``rediss://``): ``SET key token NX PX lease``;
  while the lock is held a thread renews the lease (a compare-and-``PEXPIRE``
  script), and release deletes the key only if it still holds this holder's
  token, so a holder whose lease ran out can never free someone else's lock.
  A holder that dies stops renewing: its lock is free again after ``lease``
  seconds. Each acquisition gets a fencing token (an ``INCR`` counter) for stores
  that can check one.
- :class:`PostgresLocks` (``postgresql://``): a session-level advisory lock
  (``pg_try_advisory_lock``) on a connection of its own per held name; the
  server releases it when that connection ends, so a dead holder's lock is
  freed as soon as PostgreSQL notices the connection is gone.

Both are re-entrant per thread, like the local lock, and give up with
:class:`~tapyard_credentials.LockTimeoutError` after ``timeout`` seconds.
Their client libraries (``redis``, ``psycopg``) are imported only when used.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

from tapyard_credentials._exceptions import LockTimeoutError, VaultStorageError

__all__ = ["FleetLocks", "PostgresLocks", "RedisLocks", "locks_from_url"]

_POLL = 0.01

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class FleetLocks(Protocol):
    """Per-name exclusive locks shared by every process that reaches one server."""

    def lock(self, name: str, *, timeout: float | None = None) -> contextlib.AbstractContextManager[None]: ...

    def close(self) -> None: ...


def _key(prefix: str, name: str) -> str:
    # the key says nothing about the credential's name
    return prefix + hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]


class _Reentrant:
    """Per-thread re-entrancy around a non-re-entrant distributed lock: a subclass
    says how to hold ``name`` once (:meth:`_hold`)."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextlib.contextmanager
    def lock(self, name: str, *, timeout: float | None = None) -> Iterator[None]:
        """Hold ``name`` across machines for the ``with`` block (re-entrant per thread);
        :class:`LockTimeoutError` after ``timeout`` seconds (``None``: wait forever)."""
        depth = int(getattr(self._local, name, 0))
        if depth:
            setattr(self._local, name, depth + 1)
            try:
                yield
            finally:
                setattr(self._local, name, depth)
            return
        with self._hold(name, timeout):
            setattr(self._local, name, 1)
            try:
                yield
            finally:
                setattr(self._local, name, 0)

    def _hold(self, name: str, timeout: float | None) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError


class RedisLocks(_Reentrant):
    """Credential locks in Redis, with a renewed lease and a fencing token (see the module)."""

    def __init__(self, url: str, *, lease: float = 30.0, prefix: str = "tapyard:lock:") -> None:
        try:
            import redis
        except ImportError:
            raise VaultStorageError(
                "locks in Redis need the redis package: pip install redis"
            ) from None
        if lease <= 0:
            raise VaultStorageError("the lock lease must be more than 0 seconds")
        self.lease = lease
        self.prefix = prefix
        self._client: Any = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        super().__init__()
        #: the fencing token of the lock this thread holds, per name
        self.fencing: dict[str, int] = {}

    @contextlib.contextmanager
    def _hold(self, name: str, timeout: float | None) -> Iterator[None]:
        key = _key(self.prefix, name)
        token = secrets.token_hex(16)
        deadline = None if timeout is None else time.monotonic() + timeout
        lease_ms = int(self.lease * 1000)
        try:
            while not self._client.set(key, token, nx=True, px=lease_ms):
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        f"credential {name!r} stayed locked on another machine for more than {timeout:g} s"
                    )
                time.sleep(_POLL)
            self.fencing[name] = int(self._client.incr(key + ":fence"))
        except self._errors as exc:
            raise VaultStorageError(f"cannot reach the Redis lock server: {type(exc).__name__}") from None
        stop = threading.Event()
        renewer = threading.Thread(target=self._keep, args=(key, token, stop), daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(timeout=5)
            with contextlib.suppress(*self._errors):
                self._release(keys=[key], args=[token])

    def _keep(self, key: str, token: str, stop: threading.Event) -> None:
        """Renew the lease every third of it while the lock is held."""
        while not stop.wait(self.lease / 3.0):
            with contextlib.suppress(*self._errors):
                if not self._renew(keys=[key], args=[token, int(self.lease * 1000)]):
                    return  # lost (expired and taken): nothing left to renew

    def close(self) -> None:
        with contextlib.suppress(*self._errors):
            self._client.close()


class PostgresLocks(_Reentrant):
    """Credential locks as PostgreSQL advisory locks (see the module)."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise VaultStorageError(
                "locks in PostgreSQL need the psycopg package: pip install 'psycopg[binary]'"
            ) from None
        self._psycopg: Any = psycopg
        self.url = url
        super().__init__()

    @contextlib.contextmanager
    def _hold(self, name: str, timeout: float | None) -> Iterator[None]:
        key = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            conn = self._psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        except self._psycopg.Error as exc:
            raise VaultStorageError(f"cannot reach the PostgreSQL lock server: {type(exc).__name__}") from None
        try:
            while not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        f"credential {name!r} stayed locked on another machine for more than {timeout:g} s"
                    )
                time.sleep(_POLL)
            try:
                yield
            finally:
                with contextlib.suppress(self._psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        finally:
            conn.close()

    def close(self) -> None:
        return None


def locks_from_url(url: str | None) -> FleetLocks | None:
    """The fleet locks a URL names (``redis://``, ``rediss://``, ``postgresql://``), or ``None``."""
    if not url:
        return None
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        return RedisLocks(url)
    if scheme in ("postgresql", "postgres"):
        return PostgresLocks(url)
    raise VaultStorageError(
        f"unsupported lock server {scheme!r}: TAPYARD_LOCK_URL takes redis://, rediss:// or postgresql://"
    )
