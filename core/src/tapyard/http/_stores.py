"""The limiter store of a run: the one it was handed, else the default one
(``TAPYARD_LIMITER_URL``'s Redis server, else the data directory's SQLite file).

Apart from ``_limiters`` so that the stores, the Redis one included, are all
below it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tapyard.http._limiters import LimiterStore, SqliteLimiterStore
from tapyard.http._redis import RedisLimiterStore

__all__ = ["default_limiter_store", "limiters_of"]

_FALLBACK: dict[Path | str, LimiterStore] = {}
_FALLBACK_LOCK = threading.Lock()


def default_limiter_store() -> LimiterStore:
    """The store of a run handed none, one object per place in this process.

    ``TAPYARD_LIMITER_URL=redis://HOST:6379/0`` (or ``rediss://``): a Redis
    server, shared by every worker of a fleet that points at it (the CLI, the
    scheduler and Celery workers alike). Otherwise the SQLite file of the data
    directory (``limits.db`` in ``$TAPYARD_HOME``): every process using that
    data directory shares a named credential's budget. Raises
    :class:`~tapyard.ConfigError` on a URL of another scheme.
    """
    url = os.environ.get("TAPYARD_LIMITER_URL", "").strip()
    if url:
        scheme = url.partition("://")[0].lower()
        if scheme not in ("redis", "rediss") or "://" not in url:
            from tapyard.base import ConfigError

            # the scheme only: a URL may carry a password
            shown = repr(scheme[:20]) if "://" in url else "a value with no scheme"
            raise ConfigError(
                f"TAPYARD_LIMITER_URL must be a redis:// or rediss:// URL (the rate-limit store "
                f"a fleet shares), not {shown}; unset it to use the data directory's SQLite file"
            )
        with _FALLBACK_LOCK:
            store = _FALLBACK.get(url)
            if store is None:
                store = _FALLBACK[url] = RedisLimiterStore(url)
            return store
    from tapyard_credentials import data_dir

    path = data_dir() / "limits.db"
    with _FALLBACK_LOCK:
        store = _FALLBACK.get(path)
        if store is None:
            store = _FALLBACK[path] = SqliteLimiterStore(path)
        return store


def limiters_of(context: object) -> LimiterStore:
    """The limiter store a run was handed (``context.limiters``), else :func:`default_limiter_store`."""
    store = getattr(context, "limiters", None)
    if store is not None:
        return store  # type: ignore[no-any-return]
    return default_limiter_store()
