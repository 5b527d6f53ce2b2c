"""Redaction scrubs every registered secret, its encodings and its prefixes from
text and log records."""

from __future__ import annotations

import base64
import io
import logging
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapyard_credentials import (
    RedactingFilter,
    Redactor,
    Vault,
    generate_key,
    install_log_redaction,
    redact,
    redactor,
)

SECRET = "s3cr3t/Pa$$word+with=odd&chars"


@pytest.fixture
def scrubber() -> Redactor:
    r = Redactor()
    r.register(SECRET)
    return r


def test_the_value_itself(scrubber: Redactor) -> None:
    assert scrubber.redact(f"login failed for {SECRET}!") == "login failed for ***!"
    assert scrubber.redact(f"{SECRET}{SECRET}") == "******"
    assert scrubber.redact("nothing to see") == "nothing to see"
    assert scrubber.redact("") == ""


@pytest.mark.parametrize(
    "form",
    [
        base64.b64encode(SECRET.encode()).decode(),
        base64.b64encode(SECRET.encode()).decode().rstrip("="),
        base64.urlsafe_b64encode(SECRET.encode()).decode(),
        urllib.parse.quote(SECRET, safe=""),
        urllib.parse.quote_plus(SECRET),
        urllib.parse.quote(SECRET, safe="").lower(),
    ],
)
def test_encoded_forms(scrubber: Redactor, form: str) -> None:
    assert form != SECRET
    out = scrubber.redact(f"GET /x?token={form}&page=2")
    assert form not in out and out.startswith("GET /x?token=***") and out.endswith("&page=2")


@pytest.mark.parametrize("user", ["a", "ab", "abc", "alice", "bob:"])
def test_secret_inside_a_basic_auth_header(user: str) -> None:
    password = "hunter2-is-not-a-good-password"
    r = Redactor()
    r.register(password)
    header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    out = r.redact(f"Authorization: {header}")
    assert "***" in out
    # What is left of the encoded string cannot carry more than the user name and two
    # partial characters of the password.
    leftover = out.removeprefix("Authorization: Basic ").replace("***", "")
    assert len(leftover) <= len(base64.b64encode(f"{user}:".encode())) + 4


def test_prefixes_of_six_or_more_characters(scrubber: Redactor) -> None:
    for cut in (6, 7, 12, len(SECRET) - 1):
        truncated = SECRET[:cut]
        out = scrubber.redact(f"invalid token '{truncated}...'")
        assert out == "invalid token '***...'", cut
    # Five characters are not enough to call it a secret.
    assert scrubber.redact(f"x {SECRET[:5]} y") == f"x {SECRET[:5]} y"
    # A prefix of an encoded form is caught too.
    encoded = base64.b64encode(SECRET.encode()).decode()
    assert scrubber.redact(f"blob {encoded[:10]}") == "blob ***"


def test_short_values_are_not_registered() -> None:
    r = Redactor()
    r.register("abc", "", None, "abcd", "abcde")
    assert len(r) == 2
    assert (
        r.redact("abc is fine, abcd is not, abcdef neither")
        == "abc is fine, *** is not, ***f neither"
    )


def test_overlapping_secrets_and_longest_match() -> None:
    r = Redactor()
    r.register("tokentoken", "tokentokentoken-long")
    assert r.redact("a tokentokentoken-long b") == "a *** b"
    assert r.redact("a tokentoken b") == "a *** b"
    assert r.redact("a tokentokentok b") == "a *** b"


def test_many_secrets_stay_fast() -> None:
    r = Redactor()
    values = [secrets.token_urlsafe(24) for _ in range(1000)]
    r.register(*values)
    text = "an ordinary log line with nothing secret in it at all " * 200
    r.redact(text)  # build the matcher once
    started = time.perf_counter()
    for _ in range(50):
        assert r.redact(text) == text
    assert (time.perf_counter() - started) / 50 < 0.05
    assert r.redact(f"x {values[500]} y {values[999][:8]}") == "x *** y ***"


def test_registration_is_thread_safe() -> None:
    r = Redactor()
    values = [secrets.token_hex(12) for _ in range(400)]
    errors: list[BaseException] = []

    def register(chunk: list[str]) -> None:
        try:
            for value in chunk:
                r.register(value)
                r.redact(f"check {value}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(values[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(r) == 400
    assert all(r.redact(v) == "***" for v in values)


def _logger(name: str, scrubber: Redactor) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter(scrubber))
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_logging_filter_redacts_messages_args_and_tracebacks(scrubber: Redactor) -> None:
    logger, stream = _logger("tapyard.test.redaction", scrubber)
    logger.info("token is %s", SECRET)
    logger.info(f"inline {SECRET}")
    logger.info("dict %(t)s", {"t": SECRET})
    logger.info("percent-encoded %s", urllib.parse.quote(SECRET, safe=""))
    try:
        raise ValueError(f"bad credential {SECRET[:9]}")
    except ValueError:
        logger.exception("failed")
    logger.info("broken format %s %s", SECRET)  # too few args: still redacted, never raised
    output = stream.getvalue()
    assert SECRET[:6] not in output
    assert "token is ***" in output and "inline ***" in output and "dict ***" in output
    assert "ValueError: bad credential ***" in output


def test_install_log_redaction_covers_propagated_records() -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    value = "propagated-" + secrets.token_hex(8)
    try:
        installed = install_log_redaction()
        assert install_log_redaction() is not None
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
        redactor.register(value)
        logging.getLogger("tapyard.some.child").warning("leaking %s", value)
        assert "leaking ***" in stream.getvalue() and value not in stream.getvalue()
    finally:
        root.removeHandler(handler)
        root.removeFilter(installed)
        root.setLevel(level)
        redactor.clear()


@pytest.fixture
def _clean_default_redactor() -> Iterator[None]:
    redactor.clear()
    yield
    redactor.clear()


@pytest.mark.usefixtures("_clean_default_redactor")
def test_secrets_from_the_vault_are_registered_automatically(tmp_path: Path) -> None:
    with Vault.open(tmp_path / "vault.db", key=generate_key()) as vault:
        vault.put("x", connector="acme", kind="api_key", fields={"api_key": "stored-value-123456"})
        redactor.clear()
        assert redact("stored-value-123456") == "stored-value-123456"
        vault.get("x", connector="acme")
        assert redact("got stored-value-123456") == "got ***"
