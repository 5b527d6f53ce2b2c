"""Exclusive per-name locks shared by threads and processes.

Each name maps to a lock file ``<directory>/<sha256(name)[:32]>.lock`` (the file
name says nothing about the credential) held with ``flock`` (``msvcrt.locking``
on Windows), plus a re-entrant thread lock so threads of one process queue up
in memory and a thread may take a lock it already holds. The OS releases a file
lock when its process dies, so a killed holder never leaves a lock behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tapyard_credentials._exceptions import LockTimeoutError, VaultStorageError

__all__ = ["LockTable"]

_POLL = 0.005


class _Held:
    __slots__ = ("depth", "fd", "thread_lock")

    def __init__(self) -> None:
        self.thread_lock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


def _try_lock_file(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _lock_file(fd: int, deadline: float | None) -> bool:
    if deadline is None and sys.platform != "win32":
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    while not _try_lock_file(fd):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
    return True


def _unlock_file(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


class LockTable:
    """Exclusive, re-entrant, per-name locks across the threads and processes that
    share ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._guard = threading.Lock()
        self._held: dict[str, _Held] = {}

    def path_for(self, name: str) -> Path:
        """The lock file that stands for ``name``."""
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]
        return self.directory / f"{digest}.lock"

    @contextlib.contextmanager
    def lock(self, name: str, *, timeout: float | None = None) -> Iterator[None]:
        """Hold ``name``'s lock for the ``with`` block.

        Blocks until no other thread or process holds it, or raises
        :class:`LockTimeoutError` after ``timeout`` seconds (``None``: wait forever).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._guard:
            held = self._held.setdefault(name, _Held())
        acquired = held.thread_lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))
        if not acquired:
            raise LockTimeoutError(f"credential {name!r} stayed locked for more than {timeout:g} s")
        try:
            if held.depth == 0:
                held.fd = self._open(name)
                if not _lock_file(held.fd, deadline):
                    os.close(held.fd)
                    held.fd = None
                    raise LockTimeoutError(
                        f"credential {name!r} stayed locked by another process for more than {timeout:g} s"
                    )
            held.depth += 1
            try:
                yield
            finally:
                held.depth -= 1
                if held.depth == 0 and held.fd is not None:
                    fd, held.fd = held.fd, None
                    try:
                        _unlock_file(fd)
                    finally:
                        os.close(fd)
        finally:
            held.thread_lock.release()

    def _open(self, name: str) -> int:
        path = self.path_for(name)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise VaultStorageError(
                f"cannot create the lock file {path}: {exc.strerror or type(exc).__name__}"
            ) from None
