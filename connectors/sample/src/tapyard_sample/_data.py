"""The deterministic data set behind the sample connector.

A :class:`Dataset` holds three streams of ``records_per_stream`` entities each:

* ``customers`` and ``orders`` are mutable: every entity is created once, then
  changed 0 to 3 times, and about 5% are soft-deleted (``deleted`` becomes
  ``True``). Their cursor field is ``updated_at``.
* ``events`` are append-only and never change. Their cursor field is
  ``created_at``.

Everything happens on a fixed timeline: entity ``i`` of each stream is created
at a time spread evenly over ``[T0, T0 + 30 days)`` and strictly increasing
with ``i``; every later change falls before ``T_END = T0 + 60 days``. After
``T_END`` nothing changes, so ``visible(stream, None)`` and
``visible(stream, T_END)`` are the same listing.

Each entity is computed from its own random streams, keyed by
``(seed, stream, index)``, so one entity never depends on another, its fields
do not depend on ``records_per_stream`` (only its timestamps do), and the same
seed gives the same data on every platform and Python version (the generator
draws from BLAKE2b digests, not from :mod:`random`, whose helpers may change).

Timestamps are ISO-8601 UTC strings with exactly six fractional digits and a
``Z`` (``2024-01-03T04:05:06.123456Z``); that fixed format sorts
lexicographically in time order. Within one stream every timestamp a record
can carry is unique, so a client that resumes with a strict ``cursor > last``
never skips a record that shared its cursor value.
"""

from __future__ import annotations

import bisect
import gc
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import Any, ClassVar, TypeVar

__all__ = ["T0", "T_END", "Dataset", "format_timestamp", "parse_timestamp"]

_T = TypeVar("_T")

T0 = datetime(2024, 1, 1, tzinfo=UTC)
"""When the first entity of every stream is created."""

T_END = T0 + timedelta(days=60)
"""No record is created, changed or deleted after this instant."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_DAY_US = 86_400_000_000
_T0_US = (T0 - _EPOCH) // _US
_END_US = (T_END - _EPOCH) // _US
_CREATION_SPAN_US = 30 * _DAY_US
_CHANGE_SPAN_US = _END_US - _T0_US

# A mutable entity has at most five versions: creation, three updates, deletion.
_SLOTS = 5
_MAX_RECORDS = 10_000_000
_MAX_UPDATES = 3
_DELETE_RATE = 0.05

_CURSOR_FIELDS = {"customers": "updated_at", "orders": "updated_at", "events": "created_at"}
_ID_PREFIXES = {"customers": "cus_", "orders": "ord_", "events": "evt_"}
_CACHE_SIZE = 16

_FIRST_NAMES = (
    "Ada", "Alan", "Barbara", "Dennis", "Edsger", "Frances", "Grace", "Hedy",
    "John", "Katherine", "Ken", "Linus", "Margaret", "Radia", "Tim", "Zoe",
)  # fmt: skip
_LAST_NAMES = (
    "Allen", "Berners-Lee", "Dijkstra", "Hamilton", "Hopper", "Johnson", "Kay",
    "Knuth", "Lamarr", "Liskov", "Lovelace", "Perlman", "Ritchie", "Thompson",
    "Torvalds", "Turing",
)  # fmt: skip
_CITIES = (
    ("Amsterdam", "NL"), ("Berlin", "DE"), ("London", "GB"), ("Madrid", "ES"),
    ("Milan", "IT"), ("Mumbai", "IN"), ("New York", "US"), ("Paris", "FR"),
    ("São Paulo", "BR"), ("Sydney", "AU"), ("Tokyo", "JP"), ("Toronto", "CA"),
)  # fmt: skip
_STREETS = ("Main St", "High Street", "Rue de Rivoli", "Baker Street", "Market St", "Elm Road")
_TAGS = ("beta", "churn-risk", "eu", "newsletter", "partner", "trial", "vip", "wholesale")
# Repetition weights the choices: half free, a third pro, a sixth enterprise.
_TIERS = ("free", "free", "free", "pro", "pro", "enterprise")
_CURRENCIES = ("usd", "usd", "eur", "gbp")
_EVENT_TYPES = (
    "customer.created", "customer.updated", "order.created", "order.paid",
    "order.paid", "order.shipped", "order.refunded",
)  # fmt: skip
_CUSTOMER_CHANGES = ("tier", "balance", "tags", "address", "email")

_DATES: dict[int, str] = {}
_CLOCKS: dict[int, str] = {}


def format_timestamp(moment: datetime) -> str:
    """Return ``moment`` in the data set's format, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

    ``moment`` is converted to UTC; a naive datetime is taken as UTC.
    """
    return _format_us(_to_us(moment))


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO-8601 timestamp into an aware UTC datetime.

    Accepts the data set's own format and its common variants: no fraction,
    fewer fractional digits, ``Z``, ``+00:00`` or any other offset. A timestamp
    without an offset is taken as UTC. Raises :class:`ValueError` for anything
    that is not a timestamp.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _US


def _format_us(us: int) -> str:
    # Called once per record version: caching the date and the clock strings
    # makes it three times faster than formatting a datetime.
    days, rest = divmod(us, _DAY_US)
    seconds, micros = divmod(rest, 1_000_000)
    day = _DATES.get(days)
    if day is None:
        day = _DATES[days] = (date(1970, 1, 1) + timedelta(days=days)).isoformat()
    clock = _CLOCKS.get(seconds)
    if clock is None:
        hours, rest = divmod(seconds, 3600)
        minutes, secs = divmod(rest, 60)
        clock = _CLOCKS[seconds] = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{day}T{clock}.{micros:06d}Z"


class _Rng:
    """A random stream keyed by ``(seed, stream, index)``, identical on every platform.

    Draws come out of a 512-bit BLAKE2b digest by mixed-radix division (a
    fresh digest of the key and a counter refills it), which costs one big-int
    division per draw instead of several 64-bit multiplications.
    """

    __slots__ = ("_bits", "_counter", "_key", "_pool")

    def __init__(self, seed: int, stream: str, index: int) -> None:
        self._key = f"{seed}:{stream}:{index}".encode()
        self._counter = self._pool = self._bits = 0

    def below(self, bound: int) -> int:
        """A draw from ``range(bound)``, ``bound <= 2**64``; the bias is below ``2**-64``."""
        # Counting bit_length() undercounts what a division consumes, so at
        # least 64 unused bits always stay above the draw.
        bits = self._bits - bound.bit_length()
        if bits < 64:
            self._counter += 1
            salt = self._counter.to_bytes(16, "little")
            digest = hashlib.blake2b(self._key, digest_size=64, salt=salt).digest()
            self._pool = int.from_bytes(digest, "little")
            bits = 512 - bound.bit_length()
        self._bits = bits
        self._pool, value = divmod(self._pool, bound)
        return value

    def between(self, low: int, high: int) -> int:
        return low + self.below(high - low + 1)

    def chance(self, probability: float) -> bool:
        return self.below(1 << 20) < probability * (1 << 20)

    def choice(self, options: Sequence[_T]) -> _T:
        return options[self.below(len(options))]

    def sample(self, options: Sequence[_T], count: int) -> list[_T]:
        pool = list(options)
        return [pool.pop(self.below(len(pool))) for _ in range(count)]


class Dataset:
    """A deterministic, configurable-size data set of three streams.

    ``Dataset(records_per_stream, seed)`` always describes the same data; two
    instances with equal arguments are interchangeable. Records are plain
    JSON-ready dicts. Listings are cached per ``(stream, as_of)``, so asking
    again is cheap; the cached records are shared, so treat them as read-only.
    """

    STREAMS: ClassVar[tuple[str, ...]] = ("customers", "orders", "events")

    def __init__(self, records_per_stream: int = 1000, seed: int = 0) -> None:
        if not 0 <= records_per_stream <= _MAX_RECORDS:
            raise ValueError(f"records_per_stream must be between 0 and {_MAX_RECORDS}")
        self.records_per_stream = records_per_stream
        self.seed = seed
        count = max(records_per_stream, 1)
        # Mutable streams put every timestamp on a grid of `quantum` microseconds
        # and add `_SLOTS * index + version`, which is unique per stream: no two
        # records of a stream ever share a cursor value. Creation times use the
        # same grid with version 0, which keeps them strictly increasing in i.
        self._quantum = _SLOTS * count
        self._last_step = _CHANGE_SPAN_US // self._quantum - 1
        self._creation_span = _CREATION_SPAN_US - self._quantum
        self._width = max(6, len(str(records_per_stream)))
        self._cache: OrderedDict[tuple[str, int], list[dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Dataset(records_per_stream={self.records_per_stream}, seed={self.seed})"

    @staticmethod
    def cursor_field(stream: str) -> str:
        """Return the field a stream is ordered and filtered by.

        ``"updated_at"`` for customers and orders, ``"created_at"`` for events.
        """
        try:
            return _CURSOR_FIELDS[stream]
        except KeyError:
            raise ValueError(
                f"unknown stream {stream!r}; expected one of {Dataset.STREAMS}"
            ) from None

    @staticmethod
    def end_of_time() -> datetime:
        """Return the instant after which nothing in any stream changes (:data:`T_END`)."""
        return T_END

    def visible(self, stream: str, as_of: datetime | None = None) -> list[dict[str, Any]]:
        """Return the stream as a client calling at ``as_of`` would see it.

        Entities created after ``as_of`` are absent; every other entity appears
        once, in its latest version with a cursor value ``<= as_of``
        (soft-deleted ones included, with ``deleted`` set). ``None`` means
        after the end of time: every entity in its final version. A naive
        ``as_of`` is taken as UTC. The list is sorted by ``(updated_at, id)``
        for customers and orders and by ``(created_at, id)`` for events.
        """
        self.cursor_field(stream)
        moment = _END_US if as_of is None else min(_to_us(as_of), _END_US)
        key = (stream, max(moment, _T0_US - 1))
        # One lock for every key: concurrent first requests wait for a single
        # build instead of each spending seconds on the same listing.
        with self._lock:
            listing = self._cache.get(key)
            if listing is None:
                listing = self._build(stream, key[1])
                self._cache[key] = listing
                if len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(key)
        return list(listing)

    def history(self, stream: str, record_id: str) -> list[dict[str, Any]]:
        """Return every version of one entity, oldest first.

        Each change is one version: creation, then 0 to 3 updates, then the
        soft deletion if there is one. Events have exactly one version.
        Raises :class:`KeyError` when ``record_id`` is not an id of ``stream``.
        """
        self.cursor_field(stream)
        prefix = _ID_PREFIXES[stream]
        digits = record_id.removeprefix(prefix)
        if not (record_id.startswith(prefix) and digits.isdigit()):
            raise KeyError(record_id)
        index = int(digits) - 1
        if not 0 <= index < self.records_per_stream or record_id != self._id(stream, index):
            raise KeyError(record_id)
        if stream == "events":
            return [self._event(index)]
        versions: list[dict[str, Any]] = []
        self._entity(stream, index, _END_US, versions)
        return versions

    def _build(self, stream: str, as_of_us: int) -> list[dict[str, Any]]:
        # A build allocates hundreds of thousands of containers that all stay
        # alive, and no cycles: the collector would rescan them over and over
        # (40% of the time) to free nothing. Pausing it is process-wide but
        # only delays collection; its previous state is restored.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._build_listing(stream, as_of_us)
        finally:
            if collecting:
                gc.enable()

    def _build_listing(self, stream: str, as_of_us: int) -> list[dict[str, Any]]:
        created = self._created_count(stream, as_of_us)
        if stream == "events":
            return [self._event(index) for index in range(created)]
        listing = [self._entity(stream, index, as_of_us) for index in range(created)]
        listing.sort(key=itemgetter("updated_at", "id"))
        return listing

    def _created_count(self, stream: str, as_of_us: int) -> int:
        """How many entities of ``stream`` exist at ``as_of_us``; creation times grow with i."""
        created = self._event_created if stream == "events" else self._entity_created
        return bisect.bisect_right(range(self.records_per_stream), as_of_us, key=created)

    def _id(self, stream: str, index: int) -> str:
        return f"{_ID_PREFIXES[stream]}{index + 1:0{self._width}d}"

    def _event_created(self, index: int) -> int:
        return _T0_US + index * _CREATION_SPAN_US // max(self.records_per_stream, 1)

    def _entity_created(self, index: int) -> int:
        return _T0_US + self._step_of(index) * self._quantum + _SLOTS * index

    def _step_of(self, index: int) -> int:
        spread = index * self._creation_span // max(self.records_per_stream, 1)
        return spread // self._quantum

    def _timeline(self, rng: _Rng, index: int, changes: int) -> list[int]:
        """Creation time then ``changes`` strictly later, unique change times."""
        step = self._step_of(index)
        moments = [_T0_US + step * self._quantum + _SLOTS * index]
        for version in range(1, changes + 1):
            room = self._last_step - step
            if room <= 0:
                break
            step += 1 + rng.below(max(1, room // (changes - version + 1)))
            moments.append(_T0_US + step * self._quantum + _SLOTS * index + version)
        return moments

    def _entity(
        self, stream: str, index: int, as_of_us: int, history: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The version of a customer or order current at ``as_of_us``.

        Every random draw that decides the timeline comes before the first
        change, and a change only draws what it needs, so stopping at
        ``as_of_us`` never shifts what later versions would have been.
        When ``history`` is given, every version up to ``as_of_us`` is appended.
        """
        rng = _Rng(self.seed, stream, index)
        record = (
            self._new_customer(rng, index) if stream == "customers" else self._new_order(rng, index)
        )
        updates = rng.below(_MAX_UPDATES + 1)
        statuses = ["paid", "refunded" if rng.chance(0.1) else "shipped"]
        if statuses[-1] == "shipped" and rng.chance(0.1):
            statuses.append("refunded")
        if stream == "orders":
            updates = min(updates, len(statuses))
        deleted = rng.chance(_DELETE_RATE)
        # The timeline has its own random stream: its draws depend on the data
        # set's size, and must not shift what the changes themselves are.
        clock = _Rng(self.seed, f"{stream}/clock", index)
        moments = self._timeline(clock, index, updates + deleted)
        record["created_at"] = record["updated_at"] = _format_us(moments[0])
        record["deleted"] = False
        # zip drops the changes the timeline had no room for (only with huge
        # data sets); the deletion comes last, so it is dropped first.
        kinds = ["update"] * updates + ["delete"] * deleted
        for version, (kind, moment) in enumerate(zip(kinds, moments[1:], strict=False), start=1):
            if moment > as_of_us:
                break
            if history is not None:
                history.append(record)
                record = dict(record)
            if kind == "delete":
                record["deleted"] = True
            elif stream == "customers":
                self._change_customer(rng, index, version, record)
            else:
                record["status"] = statuses[version - 1]
            record["updated_at"] = _format_us(moment)
        if history is not None:
            history.append(record)
        return record

    def _new_customer(self, rng: _Rng, index: int) -> dict[str, Any]:
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        return {
            "id": self._id("customers", index),
            "email": _email(first, last, index, 0),
            "name": f"{first} {last}",
            "tier": rng.choice(_TIERS),
            "balance": rng.below(500_000),
            "address": _address(rng),
            "tags": sorted(rng.sample(_TAGS, rng.below(4))),
        }

    def _change_customer(self, rng: _Rng, index: int, version: int, record: dict[str, Any]) -> None:
        # Nested values are replaced, never mutated: earlier versions in a
        # history are shallow copies that share them.
        for field in rng.sample(_CUSTOMER_CHANGES, 1 + rng.below(2)):
            if field == "tier":
                record["tier"] = rng.choice(
                    [t for t in ("free", "pro", "enterprise") if t != record["tier"]]
                )
            elif field == "balance":
                record["balance"] += rng.between(1, 50_000) * rng.choice((-1, 1))
            elif field == "tags":
                record["tags"] = sorted(set(record["tags"]) ^ {rng.choice(_TAGS)})
            elif field == "address":
                record["address"] = _address(rng)
            else:
                first, last = record["name"].split(" ", 1)
                record["email"] = _email(first, last, index, version)

    def _new_order(self, rng: _Rng, index: int) -> dict[str, Any]:
        items: list[dict[str, Any]] = [
            {
                "sku": f"sku_{rng.below(10_000):04d}",
                "quantity": rng.between(1, 5),
                "unit_amount": rng.between(100, 20_000),
            }
            for _ in range(rng.between(1, 4))
        ]
        return {
            "id": self._id("orders", index),
            # Customer j is created at about the time order j is, so j <= index
            # keeps each order pointing at a customer that already existed.
            "customer_id": self._id("customers", rng.below(index + 1)),
            "amount": sum(item["quantity"] * item["unit_amount"] for item in items),
            "currency": rng.choice(_CURRENCIES),
            "status": "pending",
            "items": items,
        }

    def _event(self, index: int) -> dict[str, Any]:
        rng = _Rng(self.seed, "events", index)
        kind = rng.choice(_EVENT_TYPES)
        stream = "customers" if kind.startswith("customer.") else "orders"
        object_id = self._id(stream, rng.below(index + 1))
        if stream == "customers":
            payload: dict[str, Any] = {
                "id": object_id,
                "tier": rng.choice(_TIERS),
                "balance": rng.below(500_000),
            }
        else:
            payload = {
                "id": object_id,
                "amount": rng.between(100, 80_000),
                "currency": rng.choice(_CURRENCIES),
            }
            if kind != "order.created":
                payload["status"] = kind.removeprefix("order.")
        data: dict[str, Any] = {
            "object": payload,
            "request": {"id": f"req_{rng.below(1 << 64):016x}"},
        }
        if kind == "customer.updated":
            data["previous_attributes"] = {"tier": rng.choice(_TIERS)}
        return {
            "id": self._id("events", index),
            "type": kind,
            "object_id": object_id,
            "created_at": _format_us(self._event_created(index)),
            "data": data,
        }


def _email(first: str, last: str, index: int, version: int) -> str:
    local = f"{first}.{last}.{index + 1}".lower().replace(" ", "-")
    return f"{local}@example.com" if version == 0 else f"{local}+{version}@example.org"


def _address(rng: _Rng) -> dict[str, Any]:
    city, country = rng.choice(_CITIES)
    return {
        "line1": f"{rng.between(1, 999)} {rng.choice(_STREETS)}",
        "city": city,
        "country": country,
        "postal_code": f"{rng.below(100_000):05d}",
    }
