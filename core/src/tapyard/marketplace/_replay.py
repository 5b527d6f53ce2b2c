"""The conformance kit's machinery: a run isolated from the user's machine, cassettes
replayed with failures injected, and the rows a replayed read landed."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tapyard.marketplace._target import Target

__all__ = [
    "RATE_LIMITED",
    "UNAVAILABLE",
    "Injector",
    "cassette_lacks",
    "first_gets",
    "isolated",
    "refusal",
    "replay",
    "table_rows",
]

# -- isolation -------------------------------------------------------------------------


@contextlib.contextmanager
def isolated(target: Target) -> Iterator[Path]:
    """Fake cloud credentials, a loopback-only network, a private TAPYARD_HOME, no installed
    plugin loaded, and the target's code first on the path; everything restored after."""
    import socket

    from tapyard.plugins import reset_plugin_manager
    from tapyard.testing import CLEARED_ENVIRONMENT, FAKE_ENVIRONMENT, loopback_only

    saved_env = dict(os.environ)
    saved_path = list(sys.path)
    saved_connect = socket.socket.connect
    scratch = Path(tempfile.mkdtemp(prefix="tapyard-kit-run-"))
    try:
        os.environ.update(FAKE_ENVIRONMENT)
        for name in CLEARED_ENVIRONMENT:
            os.environ.pop(name, None)
        os.environ.update(
            {"TAPYARD_HOME": str(scratch / "home"), "TAPYARD_LOAD_PLUGINS": "", "TAPYARD_QUIET": "1"}
        )
        os.environ.pop("TAPYARD_STRICT_PLUGINS", None)
        os.environ.pop("TAPYARD_RECORD", None)
        socket.socket.connect = loopback_only  # type: ignore[method-assign,assignment]
        sys.path.insert(0, str(target.import_root))
        _forget_stale_modules(target)
        reset_plugin_manager()
        yield scratch
    finally:
        reset_plugin_manager()
        socket.socket.connect = saved_connect  # type: ignore[method-assign]
        sys.path[:] = saved_path
        os.environ.clear()
        os.environ.update(saved_env)
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


def _forget_stale_modules(target: Target) -> None:
    """Drop already-imported copies of the target's packages that come from elsewhere,
    so that the kit checks the code it was pointed at."""
    for package in target.package_dirs():
        loaded = sys.modules.get(package.name)
        where = getattr(loaded, "__file__", None) if loaded is not None else None
        if where is None or Path(where).resolve().is_relative_to(package.resolve()):
            continue
        for name in [m for m in sys.modules if m == package.name or m.startswith(package.name + ".")]:
            del sys.modules[name]


# -- replay ----------------------------------------------------------------------------


RATE_LIMITED = {
    "status": {"code": 429, "message": "Too Many Requests"},
    "headers": {"Retry-After": ["0"], "Content-Type": ["application/json"]},
    "body": {"string": b'{"error": {"message": "rate limited (injected by the conformance kit)"}}'},
}
UNAVAILABLE = {
    "status": {"code": 503, "message": "Service Unavailable"},
    "headers": {"Retry-After": ["0"], "Content-Type": ["application/json"]},
    "body": {"string": b'{"error": {"message": "unavailable (injected by the conformance kit)"}}'},
}
_REFUSAL_MESSAGE = "invalid credentials (injected by the conformance kit)"


def refusal(recorded: dict[str, Any] | None) -> dict[str, Any]:
    """A 401 in the format the vendor answers that request in (the recorded response's
    content type): XML for XML services (AWS query and REST-XML APIs, Azure), JSON otherwise."""
    headers = {k.lower(): v for k, v in ((recorded or {}).get("headers") or {}).items()}
    content_type = str((headers.get("content-type") or [""])[0]).lower()
    if "xml" in content_type:
        body = (
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidClientTokenId</Code>"
            f"<Message>{_REFUSAL_MESSAGE}</Message><RequestId>tapyard-kit</RequestId></Error>"
        ).encode()
        kind = "application/xml"
    else:
        error = {"message": _REFUSAL_MESSAGE, "code": "invalid_api_key", "type": "invalid_request_error"}
        body = json.dumps({"error": error, "message": _REFUSAL_MESSAGE}).encode()
        kind = "application/json"
    return {
        "status": {"code": 401, "message": "Unauthorized"},
        "headers": {"Content-Type": [kind], "WWW-Authenticate": ['Bearer error="invalid_token"']},
        "body": {"string": body},
    }


#: chooses a response to give instead of the recorded one: (request, how many were answered
#: before it, the recorded response) -> a response, or None to play the recorded one
Injector = Callable[[Any, int, "dict[str, Any] | None"], "dict[str, Any] | None"]


@contextlib.contextmanager
def replay(
    cassette: Path, match_on: list[str] | None, inject: Injector | None = None, options: dict[str, Any] | None = None
) -> Iterator[list[str]]:
    """Replay ``cassette`` (answers may repeat), with ``inject`` choosing a response to give
    instead of the recorded one (by request and the count of requests answered so far). ``options``
    go to ``vcr.VCR`` (the conformance settings' ``vcr`` table). Yields the list of requests
    the cassette could not answer (filled as the block runs)."""
    import vcr
    import vcr.cassette

    from tapyard.testing import vcr_config

    config = {**vcr_config("none"), **(options or {})}
    if match_on:
        config["match_on"] = match_on
    original = vcr.cassette.Cassette.play_response
    can_play_original = vcr.cassette.Cassette.can_play_response_for
    answered = [0]
    misses: list[str] = []

    def play(self: Any, request: Any) -> Any:
        count = answered[0]
        answered[0] += 1
        recorded = original(self, request)
        if inject is not None:
            response = inject(request, count, recorded)
            if response is not None:
                import copy

                return copy.deepcopy(response)
        return recorded

    def can_play(self: Any, request: Any) -> bool:
        playable = bool(can_play_original(self, request))
        if not playable:
            misses.append(f"{getattr(request, 'method', '?')} {str(getattr(request, 'uri', '?')).split('?')[0]}")
        return playable

    with vcr.VCR(**config).use_cassette(str(cassette), allow_playback_repeats=True):
        vcr.cassette.Cassette.play_response = play
        vcr.cassette.Cassette.can_play_response_for = can_play
        try:
            yield misses
        finally:
            vcr.cassette.Cassette.play_response = original
            vcr.cassette.Cassette.can_play_response_for = can_play_original


def first_gets(codes: list[dict[str, Any]]) -> Injector:
    """Answer the first GET requests with ``codes`` in turn, then play the cassette."""
    left = list(codes)

    def inject(request: Any, count: int, recorded: dict[str, Any] | None) -> dict[str, Any] | None:
        if left and str(getattr(request, "method", "GET")).upper() == "GET":
            return left.pop(0)
        return None

    return inject


def table_rows(db: Path, table: str) -> list[tuple[Any, ...]] | None:
    if not db.exists():
        return None
    con = sqlite3.connect(db)
    try:
        columns = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]
        if not columns:
            return None
        kept = [c for c in columns if not c.startswith("_tapyard")]
        listed = ", ".join('"' + c.replace('"', '""') + '"' for c in kept)
        rows = con.execute(f'SELECT {listed} FROM "{table}"').fetchall()
        return sorted(rows, key=repr)
    finally:
        con.close()


def cassette_lacks(error: str, misses: list[str]) -> bool:
    """Whether a read failed because the cassette does not hold a request it sent (an SDK
    may wrap vcr's refusal in its own error, so the misses the replay saw count too)."""
    return bool(misses) or "CannotOverwriteExistingCassetteException" in error or "Can't play back this request" in error
