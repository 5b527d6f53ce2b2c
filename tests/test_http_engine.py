"""The HTTP engine against a real local server: retries, limits, redirects, errors."""

from __future__ import annotations

import email.utils
import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tapyard.base._exceptions import (
    AuthenticationError,
    CircuitOpenError,
    DeadlineExceededError,
    HTTPError,
    HTTPStatusError,
    ResponseError,
    RetryAfterTooLongError,
    TransportError,
)
from tapyard.base._model import AuthStrategy
from tapyard.http._engine import HttpEngine, HttpPolicy, HttpStats, redact_url
from tapyard.http._ratelimit import RateLimiter
from tests.scripted_server import Received, Reply, ScriptedServer

#: tiny backoff so that real sleeps (where a test does not record them) stay short
FAST = HttpPolicy(backoff_base=0.001, backoff_max=0.002)


class Sleeps(list[float]):
    """An injectable ``sleep`` that records durations instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class Bearer(AuthStrategy):
    """Adds ``Authorization: Bearer <token>``; ``refresh`` swaps in the next token, if any."""

    kind = "bearer"

    def __init__(self, token: str = "t0k3n-1", *fresh: str) -> None:
        self.token = token
        self.fresh = list(fresh)
        self.refreshes = 0

    def apply(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = f"Bearer {self.token}"

    def refresh(self) -> bool:
        self.refreshes += 1
        if not self.fresh:
            return False
        self.token = self.fresh.pop(0)
        return True


class SpyLimiter(RateLimiter):
    def __init__(self) -> None:
        super().__init__(None)
        self.acquired = 0
        self.learned: list[dict[str, str]] = []
        self.penalties: list[float] = []
        self.events: list[str] = []

    def acquire(self) -> float:
        self.acquired += 1
        self.events.append("acquire")
        return 0.0

    def sent(self) -> None:
        self.events.append("sent")

    def learn(self, headers: Any, status: int | None = None) -> None:
        self.learned.append(dict(headers))
        self.events.append("learn")

    def penalize(self, seconds: float) -> None:
        self.penalties.append(seconds)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as srv:
        yield srv


@pytest.fixture
def other() -> Iterator[ScriptedServer]:
    """A second server: another origin (another port)."""
    with ScriptedServer() as srv:
        yield srv


def engine(server: ScriptedServer, **kwargs: Any) -> HttpEngine:
    kwargs.setdefault("policy", FAST)
    return HttpEngine(server.url, **kwargs)


# Retry-After and 429


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2", 2.0), ("0.25", 0.25), ("0", 0.0)],
)
def test_429_retry_after_seconds_is_honoured(
    server: ScriptedServer, value: str, expected: float
) -> None:
    server.script("/x", Reply(429, {"Retry-After": value}), Reply.json({"ok": True}))
    sleeps = Sleeps()
    limiter = SpyLimiter()
    with engine(server, sleep=sleeps, limiter=limiter) as http:
        body, response = http.get_json("/x")
    assert body == {"ok": True}
    assert response.status_code == 200
    assert sleeps == [expected]
    assert limiter.penalties == [expected]
    assert http.stats.as_dict()["throttled"] == 1


def test_429_retry_after_http_date_is_honoured(server: ScriptedServer) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.script("/x", Reply(429, {"Retry-After": when}), Reply.json([1]))
    sleeps = Sleeps()
    with engine(server, sleep=sleeps) as http:
        assert http.get_json("/x")[0] == [1]
    assert len(sleeps) == 1
    assert 28.0 <= sleeps[0] <= 31.0


def test_503_retry_after_is_honoured_too(server: ScriptedServer) -> None:
    server.script("/x", Reply(503, {"Retry-After": "1.5"}), Reply.json({}))
    sleeps = Sleeps()
    with engine(server, sleep=sleeps) as http:
        http.get_json("/x")
    assert sleeps == [1.5]


def test_retry_after_over_the_cap_fails_at_once(server: ScriptedServer) -> None:
    server.always("/x", Reply(429, {"Retry-After": "3600"}))
    sleeps = Sleeps()
    policy = HttpPolicy(max_retry_after=120)
    with (
        engine(server, sleep=sleeps, policy=policy) as http,
        pytest.raises(RetryAfterTooLongError) as caught,
    ):
        http.get_json("/x")
    message = str(caught.value)
    assert "3600s" in message and "120s cap" in message and "max_retry_after" in message
    assert sleeps == []
    assert len(server.requests) == 1


def test_429_without_retry_after_backs_off_and_post_is_retried(server: ScriptedServer) -> None:
    server.script("/x", Reply(429), Reply.json({"id": 1}, status=201))
    sleeps = Sleeps()
    with engine(server, sleep=sleeps) as http:
        response = http.request("POST", "/x", json={"a": 1})
    assert response.status_code == 201
    assert len(sleeps) == 1
    assert [r.body for r in server.requests] == [b'{"a":1}'] * 2


# 5xx storms


def test_503_storm_exhausts_the_attempts(server: ScriptedServer) -> None:
    server.always("/v1/x", Reply(503))
    sleeps = Sleeps()
    with engine(server, sleep=sleeps) as http, pytest.raises(HTTPStatusError) as caught:
        http.get_json("/v1/x")
    error = caught.value
    assert error.status_code == 503
    assert error.attempts == 6
    assert str(error) == (
        f"GET {server.url}/v1/x failed: 503 Service Unavailable on all 6 attempts; "
        "the vendor API is failing, try again later"
    )
    assert len(server.requests) == 6
    assert len(sleeps) == 5
    assert http.stats.as_dict()["server_errors"] == 6


def test_503_storm_recovers_when_a_later_attempt_succeeds(server: ScriptedServer) -> None:
    server.script("/x", Reply(503), Reply(502), Reply(500), Reply.json({"ok": 1}))
    sleeps = Sleeps()
    with engine(server, sleep=sleeps) as http:
        assert http.get_json("/x")[0] == {"ok": 1}
    assert len(sleeps) == 3
    stats = http.stats.as_dict()
    assert stats["requests"] == 4
    assert stats["retries"] == 3
    assert stats["server_errors"] == 3


def test_post_is_not_retried_on_a_5xx(server: ScriptedServer) -> None:
    server.always("/x", Reply(503))
    with (
        engine(server, sleep=Sleeps()) as http,
        pytest.raises(HTTPStatusError, match="not retried, since POST is not idempotent"),
    ):
        http.request("POST", "/x", content=b"payload")
    assert len(server.requests) == 1


def test_full_jitter_backoff_stays_within_bounds(server: ScriptedServer) -> None:
    server.always("/x", Reply(500))
    sleeps = Sleeps()
    policy = HttpPolicy(backoff_base=0.5, backoff_max=3.0, max_attempts=8)
    with (
        engine(server, sleep=sleeps, policy=policy, rng=random.Random(7)) as http,
        pytest.raises(HTTPStatusError),
    ):
        http.request("GET", "/x")
    caps = [min(3.0, 0.5 * 2**k) for k in range(7)]
    assert caps == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0]
    assert len(sleeps) == 7
    assert all(0.0 <= slept <= cap for slept, cap in zip(sleeps, caps, strict=True))
    assert len(set(sleeps)) == 7  # jittered, not a fixed schedule


def test_backoff_upper_bounds_are_exponential(server: ScriptedServer) -> None:
    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    server.always("/x", Reply(504))
    sleeps = Sleeps()
    policy = HttpPolicy(backoff_base=0.5, backoff_max=30.0)
    with (
        engine(server, sleep=sleeps, policy=policy, rng=Top()) as http,
        pytest.raises(HTTPStatusError),
    ):
        http.request("GET", "/x")
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]


# Transport failures


def test_connection_reset_then_success(server: ScriptedServer) -> None:
    server.script("/x", Reply(reset=True), Reply.json({"ok": True}))
    sleeps = Sleeps()
    with engine(server, sleep=sleeps) as http:
        assert http.get_json("/x")[0] == {"ok": True}
    assert len(sleeps) == 1
    assert http.stats.as_dict()["transport_errors"] == 1


def test_connection_reset_on_every_attempt(server: ScriptedServer) -> None:
    server.always("/x", Reply(reset=True))
    with (
        engine(server, sleep=Sleeps()) as http,
        pytest.raises(TransportError, match=r"on all 6 attempts; check the network") as caught,
    ):
        http.get_json("/x")
    assert isinstance(caught.value.__cause__, httpx.TransportError)
    assert caught.value.attempts == 6


def closed_port() -> int:
    """A loopback port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_connect_errors_are_retried_even_for_post() -> None:
    port = closed_port()
    sleeps = Sleeps()
    policy = HttpPolicy(max_attempts=3)
    with (
        HttpEngine(f"http://127.0.0.1:{port}", policy=policy, sleep=sleeps) as http,
        pytest.raises(TransportError, match=r"ConnectError.*on all 3 attempts") as caught,
    ):
        http.request("POST", "/x", json={})
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert len(sleeps) == 2


# Bodies: malformed JSON, HTML, size cap, deadline


def test_malformed_json_then_success(server: ScriptedServer) -> None:
    server.script(
        "/x", Reply(200, {"Content-Type": "application/json"}, b'{"a": '), Reply.json([1])
    )
    sleeps = Sleeps()
    with engine(server, sleep=sleeps) as http:
        assert http.get_json("/x")[0] == [1]
    assert len(sleeps) == 1


def test_malformed_json_forever(server: ScriptedServer) -> None:
    server.always("/x", Reply(200, {"Content-Type": "application/json"}, b'{"a": '))
    with (
        engine(server, sleep=Sleeps()) as http,
        pytest.raises(ResponseError, match=r"returned malformed JSON .* after 6 attempts$"),
    ):
        http.get_json("/x")
    assert len(server.requests) == 6


def test_html_page_with_status_200_is_retried_then_fails(server: ScriptedServer) -> None:
    page = "<!doctype html><html><head><title>Service Unavailable</title></head><body>down</body></html>"
    server.always("/v1/x", Reply.html(page))
    with engine(server, sleep=Sleeps()) as http, pytest.raises(ResponseError) as caught:
        http.get_json("/v1/x")
    assert str(caught.value) == (
        f"GET {server.url}/v1/x returned an HTML page ('Service Unavailable') "
        "instead of JSON after 6 attempts"
    )


def test_html_sniffed_from_the_body_without_content_type(server: ScriptedServer) -> None:
    server.script("/x", Reply(200, (), b"  <html>maintenance</html>"), Reply.json({"ok": 1}))
    with engine(server, sleep=Sleeps()) as http:
        assert http.get_json("/x")[0] == {"ok": 1}


def test_html_502_page(server: ScriptedServer) -> None:
    server.always("/x", Reply.html("<html><title>502 Bad Gateway</title></html>", status=502))
    with engine(server, sleep=Sleeps()) as http, pytest.raises(HTTPStatusError) as caught:
        http.get_json("/x")
    assert caught.value.status_code == 502
    assert str(caught.value).startswith(
        f"GET {server.url}/x failed: 502 Bad Gateway (an HTML page ('502 Bad Gateway')) on all 6"
    )


def test_declared_content_length_over_the_cap_fails_fast(server: ScriptedServer) -> None:
    server.always("/x", Reply.json({"pad": "x" * 5000}))
    policy = HttpPolicy(max_page_bytes=1000)
    with (
        engine(server, policy=policy, sleep=Sleeps()) as http,
        pytest.raises(ResponseError, match=r"declares 50\d\d bytes, over the 1000-byte cap"),
    ):
        http.get_json("/x")
    assert len(server.requests) == 1


def test_chunked_body_over_the_cap_is_cut_off(server: ScriptedServer) -> None:
    server.always(
        "/x",
        Reply(
            200,
            {"Content-Type": "application/json"},
            b"[" + b"1," * 5000 + b"1]",
            chunked=True,
            drip=0,
            drip_bytes=512,
        ),
    )
    policy = HttpPolicy(max_page_bytes=1000)
    with (
        engine(server, policy=policy, sleep=Sleeps()) as http,
        pytest.raises(ResponseError, match="sent more than 1000 bytes, over the 1000-byte cap"),
    ):
        http.get_json("/x")
    assert len(server.requests) == 1


def test_a_body_within_the_cap_is_read(server: ScriptedServer) -> None:
    server.always("/x", Reply(200, {"Content-Type": "application/json"}, b"[1,2,3]", chunked=True))
    with engine(server, policy=HttpPolicy(max_page_bytes=7)) as http:
        assert http.get_json("/x")[0] == [1, 2, 3]


def test_deadline_stops_a_dripping_server(server: ScriptedServer) -> None:
    # 100 bytes, one every 50 ms: five seconds in all.
    server.always("/x", Reply.json("x" * 98, drip=0.05))
    policy = HttpPolicy(request_deadline=0.5)
    started = time.monotonic()
    with (
        engine(server, policy=policy, sleep=Sleeps()) as http,
        pytest.raises(DeadlineExceededError, match=r"within the 0.5s request deadline"),
    ):
        http.get_json("/x")
    assert time.monotonic() - started < 1.5
    assert len(server.requests) == 1


def test_deadline_caps_the_wait_for_a_silent_server(server: ScriptedServer) -> None:
    server.always("/x", Reply.json({}, delay=3))
    policy = HttpPolicy(request_deadline=0.3)
    started = time.monotonic()
    with (
        engine(server, policy=policy, sleep=Sleeps()) as http,
        pytest.raises(DeadlineExceededError) as caught,
    ):
        http.get_json("/x")
    assert time.monotonic() - started < 1.5
    assert isinstance(caught.value.__cause__, httpx.TimeoutException)


def test_read_timeout_is_retried(server: ScriptedServer) -> None:
    server.script("/x", Reply.json({}, delay=0.5), Reply.json({"ok": 1}))
    policy = HttpPolicy(read_timeout=0.1, backoff_base=0.001)
    with engine(server, policy=policy, sleep=Sleeps()) as http:
        assert http.get_json("/x")[0] == {"ok": 1}
    assert http.stats.as_dict()["transport_errors"] == 1


# Client errors and authentication


def test_4xx_is_not_retried_and_quotes_the_error_message(server: ScriptedServer) -> None:
    server.always("/x", Reply.json({"message": "no such customer", "code": 17}, status=404))
    sleeps = Sleeps()
    with engine(server, sleep=sleeps) as http, pytest.raises(HTTPStatusError) as caught:
        http.get_json("/x")
    assert caught.value.status_code == 404
    assert str(caught.value) == f"GET {server.url}/x failed: 404 Not Found: no such customer"
    assert sleeps == [] and len(server.requests) == 1


def test_4xx_excerpt_is_short_and_redacted(server: ScriptedServer) -> None:
    body = "bad key s3cr3t-key-value see https://h.example/doc?key=s3cr3t-key-value " + "x" * 500
    server.always("/x", Reply(400, {"Content-Type": "text/plain"}, body))
    with (
        engine(server, headers={"X-Api-Key": "s3cr3t-key-value"}) as http,
        pytest.raises(HTTPStatusError) as caught,
    ):
        http.request("GET", "/x", params={"token": "abc123secret"})
    message = str(caught.value)
    assert "s3cr3t" not in message and "abc123secret" not in message and "?" not in message
    assert "bad key [redacted] see https://h.example/doc" in message
    assert len(message.partition("400 Bad Request: ")[2]) <= 200


def test_error_messages_never_contain_the_query_string(server: ScriptedServer) -> None:
    server.always("/x", Reply(503))
    with engine(server, sleep=Sleeps()) as http, pytest.raises(HTTPStatusError) as caught:
        http.get_json(f"{server.url}/x?api_key=SECRET", params={"sig": "SIG"})
    assert "SECRET" not in str(caught.value) and "SIG" not in str(caught.value)
    assert caught.value.url == f"{server.url}/x"
    assert server.requests[0].query == {"api_key": ["SECRET"], "sig": ["SIG"]}


def test_401_refresh_then_success(server: ScriptedServer) -> None:
    server.script("/x", Reply(401), Reply.json({"ok": 1}))
    auth = Bearer("old-token", "new-token")
    with engine(server, auth=auth) as http:
        assert http.get_json("/x")[0] == {"ok": 1}
    assert [r.headers["authorization"] for r in server.requests] == [
        "Bearer old-token",
        "Bearer new-token",
    ]
    assert auth.refreshes == 1


def test_401_without_a_refresh_fails(server: ScriptedServer) -> None:
    server.always("/x", Reply(401))
    auth = Bearer("old-token")
    with engine(server, auth=auth) as http, pytest.raises(AuthenticationError) as caught:
        http.get_json("/x")
    assert (
        str(caught.value)
        == f"GET {server.url}/x was refused: 401 Unauthorized; check the credentials"
    )
    assert caught.value.status_code == 401
    assert auth.refreshes == 1 and len(server.requests) == 1


def test_401_again_after_a_refresh_fails(server: ScriptedServer) -> None:
    server.always("/x", Reply(401))
    auth = Bearer("a-token", "b-token", "c-token")
    with engine(server, auth=auth) as http, pytest.raises(AuthenticationError):
        http.get_json("/x")
    assert auth.refreshes == 1 and len(server.requests) == 2


def test_403_is_an_authentication_error(server: ScriptedServer) -> None:
    server.always("/x", Reply.json({"error": "insufficient scope"}, status=403))
    with (
        engine(server, auth=Bearer()) as http,
        pytest.raises(AuthenticationError, match=r"403 Forbidden.*insufficient scope"),
    ):
        http.get_json("/x")
    assert len(server.requests) == 1


# Redirects and credentials


def test_credentials_are_not_sent_across_origins(
    server: ScriptedServer, other: ScriptedServer
) -> None:
    server.script("/start", Reply.redirect(f"{other.url}/land?x=1"))
    other.script("/land", Reply.json({"landed": True}))
    headers = {"X-Api-Key": "k-123", "Cookie": "session=abc", "X-Trace": "keep-me"}
    with engine(server, auth=Bearer(), headers=headers) as http:
        body, response = http.get_json("/start", headers={"X-Auth-Token": "tok-9"})
    assert body == {"landed": True}
    assert response.url == httpx.URL(f"{other.url}/land?x=1")
    first = server.requests[0].headers
    assert first["authorization"] == "Bearer t0k3n-1"
    assert first["x-api-key"] == "k-123" and first["cookie"] == "session=abc"
    landed = other.requests[0].headers
    for name in ("authorization", "x-api-key", "cookie", "x-auth-token", "proxy-authorization"):
        assert name not in landed
    assert landed["x-trace"] == "keep-me"


def test_credentials_are_sent_on_a_same_origin_redirect(server: ScriptedServer) -> None:
    server.script("/start", Reply.redirect("/next", status=301))
    server.script("/next", Reply.json({"ok": 1}))
    with engine(server, auth=Bearer(), headers={"X-Api-Key": "k-123"}) as http:
        assert http.get_json("/start")[0] == {"ok": 1}
    hop = server.requests_for("/next")[0].headers
    assert hop["authorization"] == "Bearer t0k3n-1" and hop["x-api-key"] == "k-123"


def test_auth_comes_back_when_a_redirect_returns_to_the_origin(
    server: ScriptedServer, other: ScriptedServer
) -> None:
    server.script("/a", Reply.redirect(f"{other.url}/b", status=307))
    other.script("/b", Reply.redirect(f"{server.url}/c", status=308))
    server.script("/c", Reply.json([]))
    with engine(server, auth=Bearer()) as http:
        http.get_json("/a")
    assert "authorization" not in other.requests[0].headers
    assert server.requests_for("/c")[0].headers["authorization"] == "Bearer t0k3n-1"


def test_303_turns_a_post_into_a_get(server: ScriptedServer) -> None:
    server.script("/submit", Reply.redirect("/result", status=303))
    server.script("/result", Reply.json({"done": True}))
    with engine(server) as http:
        response = http.request("POST", "/submit", json={"a": 1})
    assert response.json() == {"done": True}
    result = server.requests_for("/result")[0]
    assert result.method == "GET" and result.body == b""
    assert "content-type" not in result.headers


def test_307_keeps_the_method_and_body(server: ScriptedServer) -> None:
    server.script("/submit", Reply.redirect("/again", status=307))
    server.script("/again", Reply.json({}, status=201))
    with engine(server) as http:
        http.request("PUT", "/submit", content=b"payload")
    again = server.requests_for("/again")[0]
    assert again.method == "PUT" and again.body == b"payload"


def test_too_many_redirects(server: ScriptedServer) -> None:
    server.always("/loop", Reply.redirect("/loop"))
    with (
        engine(server, policy=HttpPolicy(max_redirects=3)) as http,
        pytest.raises(HTTPStatusError, match="more than 3 redirects"),
    ):
        http.get_json("/loop")
    assert len(server.requests) == 4


# Circuit breaker, limiter, hooks, stats, pooling


def test_circuit_opens_after_repeated_failures_across_requests(server: ScriptedServer) -> None:
    server.always("/x", Reply(503))
    policy = HttpPolicy(max_attempts=1, circuit_threshold=3, circuit_cooldown=60)
    with engine(server, policy=policy, sleep=Sleeps()) as http:
        for _ in range(3):
            with pytest.raises(HTTPStatusError):
                http.get_json("/x")
        with pytest.raises(
            CircuitOpenError,
            match=r"3 consecutive failures \(the last: GET http://127.0.0.1:\d+/x failed: 503 Service Unavailable\); not retrying for 60",
        ):
            http.get_json("/x")
    assert len(server.requests) == 3


def test_circuit_opens_within_one_request_and_a_success_resets_it(server: ScriptedServer) -> None:
    server.script("/x", Reply(500), Reply(500), Reply.json({}), Reply(500), Reply(500), Reply(500))
    policy = HttpPolicy(circuit_threshold=3, backoff_base=0.001)
    with engine(server, policy=policy, sleep=Sleeps()) as http:
        http.get_json("/x")  # two failures, then a success resets the count
        with pytest.raises(CircuitOpenError):
            http.get_json("/x")
    assert len(server.requests) == 6


def test_limiter_and_on_response_see_every_request(server: ScriptedServer) -> None:
    server.script("/x", Reply(503), Reply.redirect("/y"))
    server.script("/y", Reply.json({}, headers={"RateLimit-Remaining": "5"}))
    limiter = SpyLimiter()
    seen: list[int] = []
    with engine(
        server, limiter=limiter, on_response=lambda r: seen.append(r.status_code), sleep=Sleeps()
    ) as http:
        http.get_json("/x")
    assert limiter.acquired == 3
    assert len(limiter.learned) == 3 and limiter.learned[-1]["ratelimit-remaining"] == "5"
    assert seen == [503, 302, 200]
    # The send is reported from the wire (httpcore's trace), then once more
    # after it, harmlessly, in case the request never got that far.
    assert limiter.events == ["acquire", "sent", "sent", "learn"] * 3


def test_the_limiter_is_asked_on_the_wire_and_only_for_requests_that_go_out() -> None:
    """With httpx's own transport the grant comes from httpcore's trace hook, once the
    connection is open: a request that cannot connect spends no token."""
    port = closed_port()
    limiter = SpyLimiter()
    policy = HttpPolicy(max_attempts=2)
    with (
        HttpEngine(f"http://127.0.0.1:{port}", policy=policy, sleep=Sleeps(), limiter=limiter) as http,
        pytest.raises(TransportError),
    ):
        http.get_json("/x")
    assert limiter.acquired == 0


def test_a_transport_without_tracing_is_paced_before_the_send() -> None:
    limiter = SpyLimiter()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True}))
    with HttpEngine("http://api.test", limiter=limiter, transport=transport) as http:
        http.get_json("/x")
        http.get_json("/y")
    assert limiter.acquired == 2
    # No send is reported: the end of a round trip is not the moment a request went out.
    assert limiter.events == ["acquire", "learn"] * 2


def test_stats_count_every_kind_of_work(server: ScriptedServer) -> None:
    server.script(
        "/x",
        Reply(429, {"Retry-After": "0"}),
        Reply(500),
        Reply(reset=True),
        Reply.json({"n": 1}),
    )
    with engine(server, sleep=Sleeps()) as http:
        _, response = http.get_json("/x")
    stats = http.stats.as_dict()
    assert stats.pop("wait_ms") >= 0  # the backoff's (fake) sleeps before the retries
    assert stats == {
        "requests": 4,
        "retries": 3,
        "throttled": 1,
        "server_errors": 1,
        "transport_errors": 1,
        "bytes": len(response.content),
    }


def test_stats_are_a_snapshot() -> None:
    stats = HttpStats()
    stats.add("requests")
    snapshot = stats.as_dict()
    stats.add("requests", 2)
    assert snapshot["requests"] == 1 and stats.requests == 3


def test_one_client_reuses_its_connection(server: ScriptedServer) -> None:
    server.always("/x", Reply.json({"ok": 1}))
    with engine(server) as http:
        for _ in range(5):
            http.get_json("/x", params={"page": "1"})
        http.request("POST", "/x", json={})
    assert len(server.requests) == 6
    assert server.connections == 1


def test_relative_and_absolute_urls_and_user_agent(server: ScriptedServer) -> None:
    server.always("/api/v1/x", Reply.json({}))
    with HttpEngine(f"{server.url}/api/", policy=FAST) as http:
        http.get_json("v1/x", params={"a": "1"})
        http.get_json(f"{server.url}/api/v1/x")
    first, second = server.requests
    assert first.path == second.path == "/api/v1/x"
    assert first.query == {"a": ["1"]}
    assert first.headers["user-agent"] == "tapyard"


def test_the_engine_is_thread_safe(server: ScriptedServer) -> None:
    import concurrent.futures

    def answer(received: Received) -> Reply:
        return Reply.json({"n": int(received.query["n"][0])})

    server.always("/x", answer)
    with engine(server) as http, concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: http.get_json("/x", params={"n": n})[0]["n"], range(40)))
    assert results == list(range(40))
    assert http.stats.as_dict()["requests"] == 40
    assert server.connections <= 10


# redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@Example.com:8443/a/b?api_key=1#frag", "https://example.com:8443/a/b"),
        ("http://h/p?token=x", "http://h/p"),
        ("http://h", "http://h/"),
        ("http://[::1]:8080/x?y", "http://[::1]:8080/x"),
        ("/relative/path?q=1", "/relative/path"),
        (httpx.URL("https://a.b/c?d=e"), "https://a.b/c"),
    ],
)
def test_redact_url(url: str | httpx.URL, expected: str) -> None:
    assert redact_url(url) == expected


def test_policy_forbids_unknown_fields() -> None:
    with pytest.raises(ValueError, match="extra"):
        HttpPolicy(retries=3)  # type: ignore[call-arg]


# Odd cases


def test_no_content_gives_no_body(server: ScriptedServer) -> None:
    server.always("/x", Reply(204))
    with engine(server) as http:
        body, response = http.get_json("/x")
    assert body is None and response.status_code == 204


def test_an_undecodable_body_is_retried_then_fails(server: ScriptedServer) -> None:
    server.always(
        "/x",
        Reply(200, {"Content-Encoding": "gzip", "Content-Type": "application/json"}, b"not gzip"),
    )
    with (
        engine(server, sleep=Sleeps()) as http,
        pytest.raises(ResponseError, match=r"cannot be decoded .* after 6 attempts"),
    ):
        http.get_json("/x")


def test_an_unsupported_scheme_is_not_retried() -> None:
    with (
        HttpEngine(policy=FAST, sleep=Sleeps()) as http,
        pytest.raises(
            TransportError,
            match=r"^GET ftp://files.example/x failed: UnsupportedProtocol .*not retried$",
        ),
    ):
        http.request("GET", "ftp://user:pw@files.example/x?key=1")


def test_an_invalid_url_is_an_http_error() -> None:
    with (
        HttpEngine(policy=FAST) as http,
        pytest.raises(HTTPError, match=r"^GET http://a/x: not a valid URL") as caught,
    ):
        http.request("GET", "http://a:notaport/x?key=s3cret")
    assert "s3cret" not in str(caught.value)


def test_auth_goes_only_to_the_base_url_origin(
    server: ScriptedServer, other: ScriptedServer
) -> None:
    other.always("/cdn", Reply.json({}))
    server.always("/own", Reply.json({}))
    with engine(server, auth=Bearer()) as http:
        http.get_json(f"{other.url}/cdn")
        http.get_json(f"{server.url}/own")
    assert "authorization" not in other.requests[0].headers
    assert server.requests[0].headers["authorization"] == "Bearer t0k3n-1"


def test_without_a_base_url_auth_goes_to_the_first_origin(server: ScriptedServer) -> None:
    server.always("/x", Reply.json({}))
    with HttpEngine(auth=Bearer(), policy=FAST) as http:
        http.get_json(f"{server.url}/x")
    assert server.requests[0].headers["authorization"] == "Bearer t0k3n-1"


def test_circuit_half_opens_after_the_cooldown(server: ScriptedServer) -> None:
    now = [0.0]
    server.script("/x", Reply(503), Reply(503), Reply.json({"ok": 1}))
    policy = HttpPolicy(max_attempts=1, circuit_threshold=2, circuit_cooldown=30)
    with engine(server, policy=policy, clock=lambda: now[0]) as http:
        for _ in range(2):
            with pytest.raises(HTTPStatusError):
                http.get_json("/x")
        with pytest.raises(CircuitOpenError):
            http.get_json("/x")
        now[0] += 30.0
        assert http.get_json("/x")[0] == {"ok": 1}  # the trial
        assert http.breaker.state == "closed"


@pytest.mark.parametrize("paced", [False, True])
def test_a_read_response_is_freed_without_the_garbage_collector(server: ScriptedServer, paced: bool) -> None:
    """httpx's response and the stream it reads refer to each other: left so, every
    page's body would wait for the collector (tens of megabytes in a long sync with
    the collector raised). The engine breaks the cycle once the body is read."""
    import gc

    server.always("/x", Reply.json({"data": ["x" * 1000] * 50}))
    gc.collect()
    gc.disable()
    try:
        with engine(server, limiter=RateLimiter(rate=1000, burst=1000) if paced else None) as http:
            for _ in range(20):
                body, response = http.get_json("/x")
                assert len(body["data"]) == 50 and response.status_code == 200
            del body, response
            alive = [o for o in gc.get_objects() if isinstance(o, httpx.Response)]
        assert alive == []
    finally:
        gc.enable()
