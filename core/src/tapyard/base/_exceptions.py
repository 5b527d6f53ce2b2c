"""The tapyard exception tree.

Every error tapyard raises on purpose derives from :class:`TapyardError`. The
CLI prints ``str(error)`` on one line and exits non-zero; ``--debug`` adds the
traceback. Messages marked *safe* below never contain a secret value: URLs in
them carry no query string and no user info, and response bodies are quoted
only as a short, redacted excerpt.

    TapyardError
    ├── ConfigError                 bad configuration or command-line input
    ├── ConnectorNotFoundError      no installed connector has that name
    ├── StreamNotFoundError         the connector has no stream of that name
    ├── PluginError                 a plugin failed to load or broke a contract
    │   └── PermissionDeniedError   a connector did what its manifest does not declare
    ├── SchemaError                 a stream schema cannot be built or exported
    ├── DestinationError            the destination cannot be opened or written
    ├── StateError                  the saved sync state cannot be read
    │   └── ResumeRejectedError     the vendor refused a saved resume point
    └── HTTPError                   talking to the vendor API failed
        ├── TransportError          connection refused/reset, timeouts (after retries)
        ├── HTTPStatusError         a non-retryable status, or retries exhausted
        │   └── AuthenticationError 401/403 that no refresh could fix
        ├── ResponseError           malformed JSON, an HTML page, a page too large
        ├── DeadlineExceededError   an attempt outlived its total deadline
        ├── RetryAfterTooLongError  the server asked to wait longer than the cap
        └── CircuitOpenError        too many consecutive failures: the run stops

All messages are safe to show users. Wherever one is shown, it goes through
:func:`safe_line` first: bounded, and escaped so that nothing in it (a key of a
hand-written config, a server's text) can move a terminal's cursor.
"""

from __future__ import annotations

import re

__all__ = [
    "AuthenticationError",
    "CircuitOpenError",
    "ConfigError",
    "ConnectorNotFoundError",
    "DeadlineExceededError",
    "DestinationError",
    "HTTPError",
    "HTTPStatusError",
    "PermissionDeniedError",
    "PluginError",
    "ResponseError",
    "ResumeRejectedError",
    "RetryAfterTooLongError",
    "SchemaError",
    "StateError",
    "StreamNotFoundError",
    "TapyardError",
    "TransportError",
]


class TapyardError(Exception):
    """Base of every error tapyard raises on purpose. Its message is safe to show."""


#: the longest error line shown, and the longest run without a space kept whole in it
LINE_LIMIT = 1000
_RUN_LIMIT = 200
_LONG_RUN = re.compile(r"\S{" + str(_RUN_LIMIT + 1) + ",}")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def safe_line(text: str, limit: int = LINE_LIMIT) -> str:
    """``text`` as one line that is safe to print: a run of more than 200
    characters without a space (a pasted key, a token, a URL) keeps its ends and
    says how long it was, the whole keeps its head and tail within ``limit``
    characters, and every character a terminal would not print as itself (ESC
    and the other control characters, newlines, bidirectional overrides,
    zero-width and other format characters, lone surrogates) is written as its
    escape (``\\x1b``, ``\\n``, ``\\u202e``)."""
    if len(text) > _RUN_LIMIT:
        text = _LONG_RUN.sub(_shortened, text)
    if len(text) > limit:
        text = _cut(text, limit)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else _escaped(c) for c in text)
        if len(text) > limit:
            text = _cut(text, limit)
    return text


def quoted(text: str, limit: int = 80) -> str:
    """``text`` bounded to ``limit`` characters and escaped as :func:`safe_line`
    does, to quote inside a message."""
    return safe_line(text if len(text) <= limit else text[: limit - 3] + "...", limit)


def _shortened(match: re.Match[str]) -> str:
    run = match.group(0)
    return f"{run[:120]}...[{len(run):,} characters]...{run[-40:]}"


def _cut(text: str, limit: int) -> str:
    tail = limit // 3
    return f"{text[: limit - tail - 5]} ... {text[-tail:]}"


def _escaped(char: str) -> str:
    known = _ESCAPES.get(char)
    if known is not None:
        return known
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class ConfigError(TapyardError):
    """Configuration or command-line input is malformed or fails validation. Safe."""


class ConnectorNotFoundError(TapyardError):
    """No installed (and allowed) connector has the requested name. Safe."""


class StreamNotFoundError(TapyardError):
    """A requested stream does not exist in the connector. Safe."""


class PluginError(TapyardError):
    """A plugin could not be loaded, or returned something that breaks a hook's contract. Safe."""


class PermissionDeniedError(PluginError):
    """A connector asked for what its manifest does not declare (a host, a credential
    kind): refused before anything left the machine. Safe: names the host or kind
    and the manifest, never a URL's path, query or any secret."""


class SchemaError(TapyardError):
    """A stream schema could not be built, mapped or exported. Safe."""


class DestinationError(TapyardError):
    """The destination cannot be opened, created or written. Safe: URLs lose their passwords."""


class StateError(TapyardError):
    """Saved sync state is unreadable or does not fit the stream. Safe."""


class ResumeRejectedError(StateError):
    """The vendor refused a saved resume point (an expired page token, one from a
    restarted service). Raised by a source before it yields a page; the sync
    engine then restarts that stream's pass from its committed cursor, with a
    warning. Safe."""


class HTTPError(TapyardError):
    """Talking to the vendor API failed. Safe: URLs lose query strings and user info.

    ``method`` and ``url`` name the request (redacted); ``attempts`` counts the tries made.
    """

    def __init__(self, message: str, *, method: str = "", url: str = "", attempts: int = 0) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.attempts = attempts


class TransportError(HTTPError):
    """The connection failed (refused, reset, timed out) on every attempt. Safe."""


class HTTPStatusError(HTTPError):
    """The server answered a status that is not retried, or kept answering a retried one. Safe.

    ``status_code`` holds the last status seen.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str = "",
        url: str = "",
        attempts: int = 0,
    ) -> None:
        super().__init__(message, method=method, url=url, attempts=attempts)
        self.status_code = status_code


class AuthenticationError(HTTPStatusError):
    """The server refused the credentials (401/403) and no refresh fixed it. Safe."""


class ResponseError(HTTPError):
    """The response could not be used: malformed JSON, an HTML page, or over the size cap. Safe."""


class DeadlineExceededError(HTTPError):
    """One attempt ran past its total deadline (a server that drips bytes); not retried. Safe."""


class RetryAfterTooLongError(HTTPError):
    """The server asked to wait (Retry-After) longer than the configured cap. Safe."""


class CircuitOpenError(HTTPError):
    """The circuit breaker is open after repeated failures: requests stop until it cools down. Safe."""
