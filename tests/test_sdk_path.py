"""The SDK-call path: every exchange of an SDK connector goes through the run's limiter,
circuit breaker, retries and counters; a throttle is paced by the shared limiter."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tapyard
from tapyard.http import SdkEngine, SdkReply
from tapyard.http._ratelimit import RateLimiter
from tapyard.testing import ThrottlingProxy
from tests.test_object_store_resume import STORES, Store, started
from tests.test_ratelimit import FakeTime, max_in_window


def engine(clock: FakeTime, limiter: RateLimiter | None = None, **policy: Any) -> SdkEngine:
    return SdkEngine(
        policy=tapyard.HttpPolicy(**policy), limiter=limiter, sleep=clock.sleep, clock=clock.clock, rng=random.Random(1)
    )


def replies(*answers: SdkReply) -> tuple[Any, Any]:
    """``send`` and ``read`` for a script of replies (a failed one raises its error)."""
    script = list(answers)
    sent: list[SdkReply] = []

    def send() -> SdkReply:
        reply = script.pop(0)
        sent.append(reply)
        if reply.error is not None:
            raise reply.error
        return reply

    def read(result: SdkReply | None, error: BaseException | None) -> SdkReply:
        return sent[-1]

    return send, read


def test_a_throttle_is_retried_after_the_limiter_holds_everyone_and_is_counted() -> None:
    clock = FakeTime()
    limiter = RateLimiter(clock=clock.clock, sleep=clock.sleep)
    sdk, other = engine(clock, limiter), engine(clock, limiter)
    held: list[float] = []

    def sleep(seconds: float) -> None:
        # while this worker waits to retry, any other worker of the credential
        # (another engine on the same limiter) would wait as long
        held.append(other.limiter.wait_time() if other.limiter else -1)
        clock.sleep(seconds)

    sdk._sleep = sleep
    send, read = replies(
        SdkReply.of(503, {"Retry-After": "2"}, throttled=True, code="SlowDown"), SdkReply.of(200, size=10)
    )
    assert sdk.exchange(send, read, method="GET", url="http://s3.test/b?list-type=2&X-Amz-Signature=abc").status == 200
    stats = sdk.stats.as_dict()
    assert stats["requests"] == 2 and stats["retries"] == 1 and stats["throttled"] == 1 and stats["bytes"] == 10
    assert stats["wait_ms"] >= 2000
    assert clock.sleeps == [2.0] and held == [pytest.approx(2.0)]
    assert sdk.breaker.failures == 0  # the success closed it again


def test_a_retry_after_past_the_cap_fails_at_once_in_one_line() -> None:
    clock = FakeTime()
    sdk = engine(clock, RateLimiter(clock=clock.clock, sleep=clock.sleep), max_retry_after=60)
    send, read = replies(SdkReply.of(429, {"Retry-After": "86400"}))
    with pytest.raises(tapyard.RetryAfterTooLongError) as caught:
        sdk.exchange(send, read, method="GET", url="https://x.test/v1/items?api_key=sk_live_secret")
    message = str(caught.value)
    assert message == (
        "GET https://x.test/v1/items answered 429 and asked to wait 86400s before retrying, more than the "
        "60s cap; raise HttpPolicy.max_retry_after to wait that long"
    )
    assert clock.sleeps == []


def test_the_vendors_no_is_not_retried_and_its_yes_is() -> None:
    clock = FakeTime()
    sdk = engine(clock)
    send, read = replies(SdkReply.of(500, retry=False))
    assert sdk.exchange(send, read, method="GET", url="http://x.test/").status == 500
    assert sdk.stats.as_dict()["retries"] == 0
    send, read = replies(SdkReply.of(409, retry=True), SdkReply.of(200))
    assert sdk.exchange(send, read, method="GET", url="http://x.test/").status == 200


def test_connection_failures_are_retried_then_raised_for_the_sdk_to_map() -> None:
    clock = FakeTime()
    sdk = engine(clock, max_attempts=3)
    lost = ConnectionError("refused")
    send, read = replies(*(SdkReply.failed(lost) for _ in range(3)))
    with pytest.raises(ConnectionError):
        sdk.exchange(send, read, method="GET", url="http://x.test/")
    stats = sdk.stats.as_dict()
    assert stats["requests"] == 3 and stats["transport_errors"] == 3 and stats["retries"] == 2


def test_the_circuit_opens_after_failures_in_a_row() -> None:
    clock = FakeTime()
    sdk = engine(clock, max_attempts=2, circuit_threshold=4)
    for _ in range(2):
        send, read = replies(SdkReply.of(503), SdkReply.of(503))
        sdk.exchange(send, read, method="GET", url="http://x.test/")
    send, read = replies(SdkReply.of(200))
    with pytest.raises(tapyard.CircuitOpenError, match="open after 4 consecutive failures"):
        sdk.exchange(send, read, method="GET", url="http://x.test/")


def test_a_request_deadline_stops_the_retries() -> None:
    clock = FakeTime()
    sdk = engine(clock, request_deadline=5, backoff_base=10, backoff_max=10)
    send, read = replies(*(SdkReply.of(503) for _ in range(6)))
    with pytest.raises(tapyard.DeadlineExceededError, match="within the 5s request deadline"):
        sdk.exchange(send, read, method="GET", url="http://x.test/")


def test_a_reply_is_what_rate_limit_hooks_read() -> None:
    """A plugin's tapyard_rate_limit_learn reads status_code and headers, case-insensitively."""
    reply = SdkReply.of(200, {"Sforce-Limit-Info": "api-usage=10/100"})
    assert reply.status_code == 200 and reply.headers.get("sforce-limit-info") == "api-usage=10/100"


# -- the object stores, live through a proxy that injects the vendor's throttle --------------

THROTTLES: dict[str, tuple[int, dict[str, str], bytes]] = {
    "aws": (503, {"Content-Type": "application/xml", "Retry-After": "1"},
            b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
            b"<Message>Please reduce your request rate.</Message></Error>"),
    "azure": (503, {"Content-Type": "application/xml", "x-ms-error-code": "ServerBusy", "Retry-After": "1"},
              b"<?xml version='1.0' encoding='utf-8'?><Error><Code>ServerBusy</Code>"
              b"<Message>The server is busy.</Message></Error>"),
    "gcp": (429, {"Content-Type": "application/json", "Retry-After": "1"},
            json.dumps({"error": {"code": 429, "message": "rate limited",
                                  "errors": [{"reason": "rateLimitExceeded"}]}}).encode()),
}


@pytest.fixture(scope="module", params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Iterator[tuple[Store, str]]:
    chosen = STORES[request.param]
    with started(chosen) as endpoint:
        yield chosen, endpoint


def seeded(store: Store, endpoint: str, objects: int) -> str:
    bucket = f"b{uuid.uuid4().hex[:12]}"
    handle = store.client(endpoint, bucket)
    for n in range(objects):
        store.put(handle, f"k{n:03d}.jsonl", b'{"n": %d}\n' % n)
    return bucket


def via(store: Store, proxy: ThrottlingProxy, bucket: str) -> tuple[dict[str, Any], Any]:
    """The config and credentials of a run through ``proxy``."""
    if store.connector == "azure":
        from tapyard.testing import AZURITE_ACCOUNT

        upstream = f"{proxy.url}/{AZURITE_ACCOUNT}"
        return store.config(upstream, bucket), store.credentials(upstream)
    return store.config(proxy.url, bucket), store.credentials(proxy.url)


def test_a_throttle_injected_into_an_object_store_is_paced_and_counted(
    store: tuple[Store, str], tmp_path: Path
) -> None:
    """The vendor's own throttle (SlowDown, ServerBusy, rateLimitExceeded) with a
    Retry-After of 1 s: the limiter holds every request back for it, the run
    retries and finishes, and the summary counts it."""
    chosen, endpoint = store
    bucket = seeded(chosen, endpoint, 3)
    with ThrottlingProxy(endpoint, THROTTLES[chosen.connector], inject=(2,)) as proxy:
        config, credentials = via(chosen, proxy, bucket)
        result = tapyard.sync(
            chosen.connector, config, credentials=credentials, to=f"sqlite:///{tmp_path / 'o.db'}",
            streams=[chosen.objects, chosen.records], concurrency=1,
        )
    assert result.ok, [s.error for s in result.streams]
    assert {s.name: s.records for s in result.streams} == {chosen.objects: 3, chosen.records: 3}
    assert result.http["throttled"] == 1 and result.http["retries"] >= 1
    assert proxy.after_throttle() >= 0.95
    assert result.http["wait_ms"] >= 950


def assert_under(proxy: ThrottlingProxy, rate: float) -> None:
    """What the emulator saw stays under ``rate`` per second (with a burst of 1)."""
    arrivals = [a.at for a in proxy.arrivals]
    assert len(arrivals) >= 7
    assert max_in_window(arrivals, 1.0) <= rate + 1
    assert max_in_window(arrivals, 2.0) <= 2 * rate + 1
    assert (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) <= rate * 1.05


@pytest.mark.parametrize("how", ["sync", "config"])
def test_a_rate_set_for_the_run_reaches_an_object_store(store: tuple[Store, str], tmp_path: Path, how: str) -> None:
    """A ``rate_limit`` key in the config and ``sync(rate_limit=...)`` pace the SDK's
    requests: what the emulator sees stays under the rate."""
    chosen, endpoint = store
    bucket = seeded(chosen, endpoint, 8)
    with ThrottlingProxy(endpoint, THROTTLES[chosen.connector], inject=()) as proxy:
        config, credentials = via(chosen, proxy, bucket)
        config["page_size"] = 1
        options: dict[str, Any] = {}
        if how == "config":
            config["rate_limit"] = {"rate": 5, "burst": 1}
        else:
            options["rate_limit"] = {"rate": 5, "burst": 1}
        result = tapyard.sync(chosen.connector, config, credentials=credentials, to=f"sqlite:///{tmp_path / 'r.db'}",
                              streams=[chosen.objects], concurrency=1, **options)
        assert result.ok, [s.error for s in result.streams]
    assert_under(proxy, 5)


def test_the_rate_flag_of_tapyard_sync_reaches_an_sdk_connector(moto_endpoint: str, tmp_path: Path) -> None:
    """``tapyard sync aws --rate 4``: moto sees no more than 4 requests a second."""
    from tapyard.cli import main

    chosen = STORES["aws"]
    bucket = seeded(chosen, moto_endpoint, 8)
    with ThrottlingProxy(moto_endpoint, THROTTLES["aws"], inject=()) as proxy:
        config = {**chosen.config(proxy.url, bucket), "page_size": 1}
        code = main(["sync", "aws", "--rate", "4", "--streams", "s3_objects", "-c", json.dumps(config),
                     "--to", f"sqlite:///{tmp_path / 'c.db'}"])
    assert code == 0
    assert_under(proxy, 4)


def test_no_sdk_connector_fakes_an_httpx_response() -> None:
    """The SDK connectors read their SDK's replies themselves (SdkReply), and build
    no limiter of their own: the run's store hands it."""
    root = Path(__file__).resolve().parents[1] / "connectors"
    for vendor in ("aws", "azure", "gcp", "stripe", "salesforce"):
        for path in (root / vendor / "src").rglob("*.py"):
            text = path.read_text()
            assert "httpx.Response(" not in text, path
            assert "RateLimiter(" not in text, path

