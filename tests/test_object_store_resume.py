"""Kill and move, for the object-store connectors (aws, gcp, azure), live against
their emulators (moto's server, fake-gcs-server, Azurite).

A sync of the object stream and the records stream is interrupted after a few
listing pages (a failure injected into the listing, so the point is exact);
then objects are added, changed and deleted on both sides of the saved
position, including the very object it names; the sync is resumed and run
once more. The destination must then hold every object and row of the source,
at its latest version: nothing lost, nothing stale. A resume after the
emulator was restarted (every saved continuation token forgotten) completes
the same way, and a saved token the store refuses restarts the listing with a
warning, never failing the stream.

Today's main lost objects here for good: the resumed listing skipped what sorted
before the saved position, and the committed cursor passed their timestamps.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tapyard
from tapyard.testing import azurite, fake_gcs_server, moto_server

pytestmark = pytest.mark.reliability

#: The listing pages a run reads before the injected failure.
PAGES_BEFORE_FAILURE = 3


def body(key: str, version: int) -> bytes:
    """Two JSON Lines rows per object; a later version is longer (so sizes show staleness)."""
    rows = [{"key": key, "line": n, "version": version, "pad": "x" * version} for n in (1, 2)]
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


# -- the three stores --------------------------------------------------------------------


@dataclass
class Store:
    """One emulator and what the test needs of it, through the vendor's own SDK."""

    connector: str
    module: str  # where the object-store source imports listing_pass
    objects: str  # the object stream, its key column
    key_column: str
    records: str
    start: Callable[..., contextlib.AbstractContextManager[str]]
    client: Callable[[str, str], Any]  # (endpoint, bucket) -> an SDK handle made ready
    put: Callable[[Any, str, bytes], None]
    delete: Callable[[Any, str], None]
    config: Callable[[str, str], dict[str, Any]]
    credentials: Callable[[str], Any] = lambda endpoint: None


def _aws_client(endpoint: str, bucket: str) -> Any:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    return (s3, bucket)


def _gcp_client(endpoint: str, bucket: str) -> Any:
    from google.api_core.exceptions import Conflict
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    gcs = storage.Client(project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint})
    with contextlib.suppress(Conflict):
        gcs.create_bucket(bucket)
    return gcs.bucket(bucket)


def _azure_client(endpoint: str, container: str) -> Any:
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    from tapyard.testing import azurite_connection_string as connection_string

    service = BlobServiceClient.from_connection_string(connection_string(endpoint))
    with contextlib.suppress(ResourceExistsError):
        service.create_container(container)
    return service.get_container_client(container)


def _azure_credentials(endpoint: str) -> Any:
    from tapyard.testing import azurite_connection_string as connection_string
    from tapyard_azure import AzureConnectionStringAuth

    return AzureConnectionStringAuth.Options(connection_string=connection_string(endpoint))


@contextlib.contextmanager
def started(store: Store, port: int | None = None) -> Iterator[str]:
    """The store's emulator on 127.0.0.1; the test skips when it is not installed (fails under CI)."""
    from tapyard.testing import EmulatorNotInstalled, service_missing

    try:
        with store.start(port) as endpoint:
            yield endpoint
    except EmulatorNotInstalled as exc:
        service_missing(str(exc))


STORES = {
    "aws": Store(
        connector="aws", module="tapyard.sources._objects", objects="s3_objects", key_column="key", records="s3_records",
        start=moto_server, client=_aws_client,
        put=lambda c, key, data: c[0].put_object(Bucket=c[1], Key=key, Body=data),
        delete=lambda c, key: c[0].delete_object(Bucket=c[1], Key=key),
        config=lambda endpoint, bucket: {"endpoint_url": endpoint, "bucket": bucket, "max_attempts": 2},
    ),
    "gcp": Store(
        connector="gcp", module="tapyard.sources._objects", objects="blobs", key_column="name", records="blob_records",
        start=fake_gcs_server, client=_gcp_client,
        put=lambda c, key, data: c.blob(key).upload_from_string(data),
        delete=lambda c, key: c.blob(key).delete(),
        config=lambda endpoint, bucket: {"endpoint_url": endpoint, "bucket": bucket, "retry_deadline_s": 5},
    ),
    "azure": Store(
        connector="azure", module="tapyard.sources._objects", objects="blobs", key_column="name", records="blob_records",
        start=azurite, client=_azure_client,
        put=lambda c, key, data: c.upload_blob(key, data, overwrite=True),
        delete=lambda c, key: c.delete_blob(key),
        config=lambda endpoint, container: {"container": container, "max_attempts": 2, "retry_backoff_s": 0.1},
        credentials=_azure_credentials,
    ),
}


@pytest.fixture(scope="module", params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Iterator[tuple[Store, str]]:
    """Each store's emulator, started once for this module."""
    chosen = STORES[request.param]
    with started(chosen) as endpoint:
        yield chosen, endpoint


# -- the run -------------------------------------------------------------------------------


class Source:
    """What the store holds, as the test made it: key -> version."""

    def __init__(self, store: Store, endpoint: str, bucket: str) -> None:
        self.store, self.endpoint, self.bucket = store, endpoint, bucket
        self.handle = store.client(endpoint, bucket)
        self.versions: dict[str, int] = {}
        self.deleted: set[str] = set()

    def put(self, key: str, version: int) -> None:
        self.store.put(self.handle, key, body(key, version))
        self.versions[key] = version

    def delete(self, key: str) -> None:
        self.store.delete(self.handle, key)
        del self.versions[key]
        self.deleted.add(key)


def sync(store: Store, endpoint: str, bucket: str, db: Path, *, full_refresh: bool = False) -> tapyard.SyncResult:
    config = {**store.config(endpoint, bucket), "prefix": "in/", "page_size": 2, "records_page_size": 1}
    return tapyard.sync(
        store.connector, config, to=f"sqlite:///{db}", streams=[store.objects, store.records],
        credentials=store.credentials(endpoint), concurrency=1, full_refresh=full_refresh,
    )


@contextlib.contextmanager
def failing_after(store: Store, pages: int) -> Iterator[None]:
    """Make every listing of the run fail after ``pages`` pages (the run is 'killed' there)."""
    import importlib

    module = importlib.import_module(store.module)
    real = module.listing_pass

    def listing_pass(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for n, part in enumerate(real(*args, **kwargs)):
            if n == pages:
                raise RuntimeError("injected failure")
            yield part

    module.listing_pass = listing_pass
    try:
        yield
    finally:
        module.listing_pass = real


def saved_positions(db: Path, store: Store) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        found = dict(conn.execute("SELECT stream, state FROM _tapyard_state").fetchall())
    return {name: (json.loads(found[name]).get("resume") or {}).get("params", {}).get("after")
            for name in (store.objects, store.records)}


def compare(db: Path, store: Store, source: Source) -> dict[str, Any]:
    """lost, stale, extra (live in the destination, gone from the source): of the
    object stream and of the rows stream; and the objects marked deleted."""
    with sqlite3.connect(db) as conn:
        objects = dict(conn.execute(
            f"SELECT {store.key_column}, size FROM {store.objects} WHERE _tapyard_deleted_at IS NULL").fetchall())
        marked = {k for (k,) in conn.execute(
            f"SELECT {store.key_column} FROM {store.objects} WHERE _tapyard_deleted_at IS NOT NULL").fetchall()}
        rows = {(k, n): json.loads(d) for k, n, d in conn.execute(
            f"SELECT source_key, source_line, data FROM {store.records}").fetchall()}
    expected_objects = {k: len(body(k, v)) for k, v in source.versions.items()}
    expected_rows = {(k, n): {"key": k, "line": n, "version": v, "pad": "x" * v}
                     for k, v in source.versions.items() for n in (1, 2)}

    def outcome(found: dict[Any, Any], expected: dict[Any, Any]) -> dict[str, list[Any]]:
        return {
            "lost": sorted(k for k in expected if k not in found),
            "stale": sorted(k for k in expected if k in found and found[k] != expected[k]),
            "extra": sorted(k for k in found if k not in expected),
        }

    return {"objects": outcome(objects, expected_objects), "rows": outcome(rows, expected_rows), "marked": marked}


CLEAN = {"lost": [], "stale": [], "extra": []}


def check_deletes_as_declared(db: Path, store: Store, source: Source) -> None:
    """Objects: nothing lost, stale or extra; every deleted one still in the table is marked
    (``deletes="listing"``). Rows: nothing lost or stale; the rows of deleted objects stay
    (``deletes="none"``) until a full refresh, which removes them."""
    found = compare(db, store, source)
    assert found["objects"] == CLEAN, found
    assert found["marked"] <= source.deleted and found["marked"], found
    assert found["rows"]["lost"] == [] and found["rows"]["stale"] == [], found
    assert {k for k, _ in found["rows"]["extra"]} <= source.deleted, found
    refreshed = sync(store, source.endpoint, source.bucket, db, full_refresh=True)
    assert refreshed.ok, [(s.name, s.error) for s in refreshed.streams]
    found = compare(db, store, source)
    assert found["objects"] == CLEAN and found["rows"] == CLEAN, found


def seeded(store: Store, endpoint: str) -> Source:
    source = Source(store, endpoint, "data" + uuid.uuid4().hex[:10])
    for i in range(12):
        source.put(f"in/k{i:02d}.jsonl", 1)
    store.put(source.handle, "out/elsewhere.jsonl", body("out/elsewhere.jsonl", 1))  # outside the prefix
    return source


def mutate(source: Source, position: str) -> None:
    """Add, change and delete on both sides of the saved ``position`` (a key), and change it."""
    time.sleep(1.1)  # stores stamp whole seconds: the changes land in a later one
    source.put("in/a00.jsonl", 1)  # new, sorting before the position
    source.put("in/z99.jsonl", 1)  # new, after it
    source.put("in/k01.jsonl", 2)  # changed, before
    source.put(position, 3)  # the object the saved position names
    source.put("in/k10.jsonl", 2)  # changed, after
    source.delete("in/k00.jsonl")  # deleted, before
    source.delete("in/k11.jsonl")  # deleted, after


def test_killed_then_moved_then_resumed_loses_nothing(store: tuple[Store, str], tmp_path: Path) -> None:
    chosen, endpoint = store
    db = tmp_path / "dest.db"
    source = seeded(chosen, endpoint)
    with failing_after(chosen, PAGES_BEFORE_FAILURE):
        killed = sync(chosen, endpoint, source.bucket, db)
    assert not killed.ok
    positions = saved_positions(db, chosen)
    position = positions[chosen.objects]
    assert position == "in/k05.jsonl", positions  # three pages of two keys
    assert positions[chosen.records] == position
    mutate(source, position)
    resumed = sync(chosen, endpoint, source.bucket, db)
    assert resumed.ok, [(s.name, s.error) for s in resumed.streams]
    again = sync(chosen, endpoint, source.bucket, db)
    assert again.ok, [(s.name, s.error) for s in again.streams]
    check_deletes_as_declared(db, chosen, source)


def test_resume_after_the_store_restarted(tmp_path: Path) -> None:
    """An interrupted sync, then the emulator restarted (its continuation tokens forgotten,
    its objects put back by the test), then a resume: it completes, and nothing is lost."""
    for name in sorted(STORES):
        chosen = STORES[name]
        db = tmp_path / f"{name}.db"
        from tapyard.testing import free_port

        port = free_port()
        with started(chosen, port) as endpoint:
            source = seeded(chosen, endpoint)
            with failing_after(chosen, PAGES_BEFORE_FAILURE):
                assert not sync(chosen, endpoint, source.bucket, db).ok
            assert saved_positions(db, chosen)[chosen.objects] == "in/k05.jsonl"
        with started(chosen, port) as endpoint:
            again = Source(chosen, endpoint, source.bucket)
            for key, version in source.versions.items():
                again.put(key, version)
            resumed = sync(chosen, endpoint, source.bucket, db)
            assert resumed.ok, (name, [(s.name, s.error) for s in resumed.streams])
            outcome = compare(db, chosen, again)
            assert outcome["objects"] == CLEAN and outcome["rows"] == CLEAN, (name, outcome)


def test_a_refused_continuation_token_restarts_the_listing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Azure resumes with the saved continuation token (Blob storage cannot list from a
    name). A token the service refuses (HTTP 400, as for an expired or foreign marker)
    restarts the listing from the first blob with a warning, skipping the blobs already
    read; the stream completes and nothing is lost."""
    chosen = STORES["azure"]
    with started(chosen) as endpoint:
        db = tmp_path / "dest.db"
        source = seeded(chosen, endpoint)
        with failing_after(chosen, PAGES_BEFORE_FAILURE):
            assert not sync(chosen, endpoint, source.bucket, db).ok
        # The service forgot the markers it gave (a restarted or foreign service):
        # the saved ones become tokens it refuses.
        expired = "2!96!expired-marker"
        with sqlite3.connect(db) as conn:
            for stream, text in conn.execute("SELECT stream, state FROM _tapyard_state").fetchall():
                state = json.loads(text)
                assert state["resume"]["params"]["token"] == "in/k05.jsonl"  # Azurite's markers are names
                state["resume"]["params"]["token"] = expired
                conn.execute("UPDATE _tapyard_state SET state = ? WHERE stream = ?", (json.dumps(state), stream))

        from azure.core.exceptions import HttpResponseError
        from azure.storage.blob import ContainerClient

        real = ContainerClient.list_blobs
        refused: list[str] = []

        def list_blobs(self: Any, *args: Any, **kwargs: Any) -> Any:
            pager = real(self, *args, **kwargs)
            by_page = pager.by_page

            def pages(continuation_token: str | None = None) -> Any:
                if continuation_token == expired:
                    refused.append(continuation_token)
                    error = HttpResponseError(message="OutOfRangeInput: the marker is not valid")
                    error.status_code = 400
                    raise error
                return by_page(continuation_token=continuation_token)

            pager.by_page = pages
            return pager

        monkeypatch.setattr(ContainerClient, "list_blobs", list_blobs)
        with caplog.at_level(logging.WARNING, logger="tapyard.files"):
            resumed = sync(chosen, endpoint, source.bucket, db)
        assert resumed.ok, [(s.name, s.error) for s in resumed.streams]
        assert refused
        assert any("refused the saved listing position" in r.getMessage() for r in caplog.records)
        found = compare(db, chosen, source)
        assert found["objects"] == CLEAN and found["rows"] == CLEAN, found


# -- SIGKILL of the CLI, several times, the store moving between runs ---------------------


def saved_state(db: Path, stream: str) -> dict[str, Any]:
    if not db.exists():
        return {}
    with sqlite3.connect(db) as conn, contextlib.suppress(sqlite3.OperationalError):
        row = conn.execute("SELECT state FROM _tapyard_state WHERE stream = ?", (stream,)).fetchone()
        return json.loads(row[0]) if row else {}
    return {}


@pytest.mark.parametrize("name", ["aws", "gcp"])  # the CLI needs no vault for these two
def test_sigkill_of_the_cli_with_the_store_moving(name: str, tmp_path: Path) -> None:
    """Three rounds of: a CLI sync killed with SIGKILL at a random point, then objects
    added, changed and deleted around the saved position (and the object it names);
    then a sync to the end and one more: nothing lost, nothing stale."""
    import random
    import signal
    import subprocess
    import sys

    chosen = STORES[name]
    rng = random.Random(20261205)
    db = tmp_path / "dest.db"
    with started(chosen) as endpoint:
        source = Source(chosen, endpoint, "data" + uuid.uuid4().hex[:10])
        for i in range(30):
            source.put(f"in/k{i:02d}.jsonl", 1)
        config = {**chosen.config(endpoint, source.bucket), "prefix": "in/", "page_size": 2,
                  "records_page_size": 1, "requests_per_second": 25}
        (tmp_path / "config.json").write_text(json.dumps(config))
        command = [sys.executable, "-m", "tapyard", "sync", name, "-c", str(tmp_path / "config.json"),
                   "--to", f"sqlite:///{db}", "-s", f"{chosen.objects},{chosen.records}", "--concurrency", "2"]
        killed = mid_pass = 0
        for round_ in range(3):
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            # Into the pass (a position saved), then a random while further.
            deadline = time.monotonic() + 60
            while process.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(sqlite3.Error):
                    if saved_state(db, chosen.records).get("resume"):
                        break
                time.sleep(0.05)
            time.sleep(rng.uniform(0, 0.8))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                killed += 1
            process.wait(30)
            position = (saved_state(db, chosen.objects).get("resume") or {}).get("params", {}).get("after")
            mid_pass += position is not None
            keys = sorted(source.versions)
            at = position if position in source.versions else rng.choice(keys)
            before = [k for k in keys if k < at] or keys[:1]
            after = [k for k in keys if k > at] or keys[-1:]
            time.sleep(1.1)  # whole-second stamps: the changes land in a later second
            source.put(f"in/a{round_}.jsonl", 1)  # new, before every position
            source.put(f"in/z{round_}.jsonl", 1)  # new, after
            source.put(at, source.versions[at] + 1)  # the object the position names
            source.put(rng.choice(before), 5)
            source.put(rng.choice(after), 6)
            for doomed in {rng.choice(before[1:] or before), rng.choice(after[:-1] or after)} - {at}:
                source.delete(doomed)
        assert killed >= 2 and mid_pass >= 1, (killed, mid_pass, "the syncs ended before the kill: slow them down")
        for _ in range(2):
            finished = subprocess.run(command, capture_output=True, timeout=300)
            assert finished.returncode == 0, finished.stderr.decode()[-2000:]
        check_deletes_as_declared(db, chosen, source)


# -- the listing pass alone, on an in-memory store: a change behind the position mid-pass ----


class MemoryStore:
    """A store listing by key that seeks (``after``) and stamps with a clock the test moves."""

    def __init__(self) -> None:
        import datetime as dt

        self.now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
        self.objects: dict[str, Any] = {}
        self.on_list: Callable[[int], None] = lambda n: None
        self.lists = 0

    def put(self, key: str) -> None:
        import datetime as dt

        self.now += dt.timedelta(seconds=1)
        self.objects[key] = self.now

    def list_page(self, *, size: int, token: str | None, after: str | None) -> Any:
        from tapyard.files import ListingPage, StoredObject

        self.lists += 1
        self.on_list(self.lists)
        start = token if token is not None else after
        keys = sorted(k for k in self.objects if start is None or k > start)
        page = keys[:size]
        return ListingPage([StoredObject(k, self.objects[k]) for k in page], page[-1] if len(keys) > size else None)

    def date(self) -> dict[str, str]:
        import email.utils

        return {"Date": email.utils.format_datetime(self.now, usegmt=True)}


def memory_connector(store: MemoryStore) -> tapyard.Connector:
    from pydantic import BaseModel

    from tapyard.files import ServerClock, listing_pass

    class Row(BaseModel):
        key: str
        last_modified: str

    stream = tapyard.Stream(name="objects", schema_model=Row, primary_key=("key",), cursor_field="last_modified")

    class MemorySource(tapyard.Source):
        def __init__(self) -> None:
            self.clock = ServerClock()

        def streams(self) -> list[tapyard.Stream]:
            return [stream]

        def read(self, stream: tapyard.Stream, state: tapyard.StreamState, partition: Any) -> Iterator[tapyard.Page]:
            def list_page(**kwargs: Any) -> Any:
                page = store.list_page(**kwargs)
                self.clock.observe(store.date())
                return page

            for part in listing_pass(stream.name, state, list_page, size=2, clock=self.clock, seeks=True):
                records = [{"key": o.key, "last_modified": o.last_modified.isoformat()} for o in part.objects]
                yield tapyard.Page(records, resume=part.resume, cursor_limit=part.cursor_limit)

    class MemoryConnector(tapyard.Connector):
        name = "memory-store"

        def streams(self, config: Any) -> list[tapyard.Stream]:
            return [stream]

        def open(self, config: Any, context: Any) -> Any:
            return contextlib.nullcontext(MemorySource())

    return MemoryConnector()


def test_an_object_changed_behind_the_position_during_a_pass_is_read_by_the_next(tmp_path: Path) -> None:
    """While a pass reads its third page, an object it already passed changes (and is
    stamped later than every object the pass still reads). The pass cannot see it, so
    it must not commit a cursor past it: the next pass reads it. On today's main the
    pass committed the highest stamp it saw, and the change was never read."""
    store = MemoryStore()
    for i in range(8):
        store.put(f"k{i}")
    connector = memory_connector(store)
    db = tmp_path / "memory.db"

    def change_behind(n: int) -> None:
        if n == 3:
            store.put("k0")  # behind the position, stamped now
            store.put("k7")  # ahead of it: the pass will see this stamp, later than k0's

    store.on_list = change_behind
    first = tapyard.sync(connector, {}, to=f"sqlite:///{db}", concurrency=1)
    assert first.ok and first.records == 8
    with sqlite3.connect(db) as conn:
        k0 = conn.execute("SELECT last_modified FROM objects WHERE key = 'k0'").fetchone()[0]
    assert k0 != store.objects["k0"].isoformat()  # the pass read k0 before it changed
    store.on_list = lambda n: None
    second = tapyard.sync(connector, {}, to=f"sqlite:///{db}", concurrency=1)
    assert second.ok
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT key, last_modified FROM objects").fetchall())
    assert rows == {k: v.isoformat() for k, v in store.objects.items()}


def test_the_server_clock_reads_the_stores_date_and_stays_behind_it() -> None:
    """The time a pass began comes from the store's Date header (its objects are stamped
    by its clock, not this machine's), moved back by the time the answer took and a
    margin; without a readable Date, this machine's clock stands in."""
    import datetime as dt

    from tapyard.files import CLOCK_MARGIN_S, ServerClock

    clock = ServerClock()
    sent = time.monotonic()
    clock.observe({"date": "Tue, 01 Dec 2026 10:00:00 GMT"})  # a store an hour behind this machine
    began = clock.before(sent)
    store_time = dt.datetime(2026, 12, 1, 10, 0, 0, tzinfo=dt.UTC)
    assert store_time - dt.timedelta(seconds=CLOCK_MARGIN_S + 1) <= began <= store_time - dt.timedelta(seconds=CLOCK_MARGIN_S)
    later = time.monotonic() + 10  # sent after the last answer: that Date does not bound it
    assert clock.before(later) > dt.datetime.now(dt.UTC) - dt.timedelta(seconds=CLOCK_MARGIN_S + 2)
    fresh = ServerClock()
    for unreadable in ({"Date": "not a date"}, {"X-Other": "1"}, {"DATE": ""}):
        fresh.observe(unreadable)
    now = dt.datetime.now(dt.UTC)
    assert now - dt.timedelta(seconds=CLOCK_MARGIN_S + 2) <= fresh.before(time.monotonic()) <= now
