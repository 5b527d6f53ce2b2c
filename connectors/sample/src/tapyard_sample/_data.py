"""The deterministic data set behind the sample connector.

A :class:`Dataset` holds three streams of ``records_per_stream`` entities each:

* ``customers`` and ``orders`` are mutable: every entity is created once, then
  changed 0 to 3 times, and about 5% are soft-deleted (``deleted`` becomes
  ``True``). Their cursor field is ``updated_at``. Personal data, for column
  policies to work on: a customer's ``email``, ``name`` and ``address``, an
  order's ``phone`` (its delivery contact's, ``None`` for about one in five).
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
import heapq
import threading
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, TypeVar

__all__ = ["T0", "T_END", "Dataset", "Listing", "format_timestamp", "parse_timestamp"]

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
_CACHE_SIZE = 8
# The index of a listing is sorted in runs of this many moments, then merged:
# sorting it whole would hold a Python int (32 bytes) per entity at once.
_SORT_RUN = 1 << 16

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
_MINUTES: dict[int, str] = {}


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
    # Called once per record version: caching the date and the "HH:MM" strings
    # makes it three times faster than formatting a datetime. Both caches are
    # bounded (60-odd days, 1,440 minutes), whatever the size of the data set.
    days, rest = divmod(us, _DAY_US)
    minutes, rest = divmod(rest, 60_000_000)
    secs, micros = divmod(rest, 1_000_000)
    day = _DATES.get(days)
    if day is None:
        day = _DATES[days] = (date(1970, 1, 1) + timedelta(days=days)).isoformat()
    clock = _MINUTES.get(minutes)
    if clock is None:
        clock = _MINUTES[minutes] = f"{minutes // 60:02d}:{minutes % 60:02d}"
    return f"{day}T{clock}:{secs:02d}.{micros:06d}Z"


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
    JSON-ready dicts, computed when asked for: nothing holds a stream's
    records, so memory does not grow with ``records_per_stream`` beyond a
    listing's index (4 bytes per entity of a mutable stream, see
    :meth:`listing`).
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
        self._cache: OrderedDict[tuple[str, int], Listing] = OrderedDict()
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

    def listing(self, stream: str, as_of: datetime | None = None) -> Listing:
        """Return the stream as a client calling at ``as_of`` would see it, indexed for paging.

        The same records as :meth:`visible`, in the same order, but computed a
        page at a time by :meth:`Listing.records`. Listings are cached per
        ``(stream, as_of)`` (the last eight); building one computes every
        visible entity's timeline once, and holds 4 bytes per entity of a
        mutable stream (nothing for events).
        """
        self.cursor_field(stream)
        moment = _END_US if as_of is None else min(_to_us(as_of), _END_US)
        key = (stream, max(moment, _T0_US - 1))
        # One lock for every key: concurrent first requests wait for a single
        # build instead of each spending seconds on the same index.
        with self._lock:
            listing = self._cache.get(key)
            if listing is None:
                listing = self._cache[key] = Listing(self, stream, key[1])
                if len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(key)
        return listing

    def visible(self, stream: str, as_of: datetime | None = None) -> list[dict[str, Any]]:
        """Return the stream as a client calling at ``as_of`` would see it, as a new list.

        Entities created after ``as_of`` are absent; every other entity appears
        once, in its latest version with a cursor value ``<= as_of``
        (soft-deleted ones included, with ``deleted`` set). ``None`` means
        after the end of time: every entity in its final version. A naive
        ``as_of`` is taken as UTC. The list is sorted by ``(updated_at, id)``
        for customers and orders and by ``(created_at, id)`` for events.
        Every record is computed afresh: for large data sets, page through
        :meth:`listing` instead of holding them all.
        """
        listing = self.listing(stream, as_of)
        # A long list of dicts that all stay alive, and no cycles: the
        # collector would rescan them over and over to free nothing. Pausing
        # it is process-wide but only delays collection; its state is restored.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return listing.records(0, len(listing))
        finally:
            if collecting:
                gc.enable()

    def history(self, stream: str, record_id: str) -> list[dict[str, Any]]:
        """Return every version of one entity, oldest first.

        Each change is one version: creation, then 0 to 3 updates, then the
        soft deletion if there is one. Events have exactly one version.
        Raises :class:`KeyError` when ``record_id`` is not an id of ``stream``.
        """
        self.cursor_field(stream)
        index = self._index_of(stream, record_id)
        if index is None:
            raise KeyError(record_id)
        if stream == "events":
            return [self._event(index)]
        versions: list[dict[str, Any]] = []
        self._entity(stream, index, _END_US, versions)
        return versions

    def _index_of(self, stream: str, record_id: str) -> int | None:
        """The entity index ``record_id`` names in ``stream``, or ``None`` if it names none."""
        prefix = _ID_PREFIXES[stream]
        digits = record_id.removeprefix(prefix)
        if not (record_id.startswith(prefix) and digits.isascii() and digits.isdigit()):
            return None
        index = int(digits) - 1
        if not 0 <= index < self.records_per_stream or record_id != self._id(stream, index):
            return None
        return index

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

    def _entity_of(self, moment: int) -> int:
        """The index of the entity a mutable stream's timestamp belongs to (they are unique)."""
        return (moment - _T0_US) % self._quantum // _SLOTS

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

    def _plan(self, stream: str, index: int) -> tuple[dict[str, Any], _Rng, list[str], list[int]]:
        """A customer or order as created, its random stream, its changes and their moments.

        Every random draw that decides the timeline comes before the first
        change, so this is all an index needs, and :meth:`_entity` goes on
        from here. ``moments`` has the creation time first, then one moment
        per change it kept (``changes`` may be longer: see :meth:`_entity`).
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
        # The deletion comes last, so it is the first change a full timeline drops.
        changes = statuses[:updates] if stream == "orders" else ["update"] * updates
        changes += ["delete"] * deleted
        return record, rng, changes, moments

    def _entity(
        self, stream: str, index: int, as_of_us: int, history: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The version of a customer or order current at ``as_of_us``.

        A change only draws what it needs, so stopping at ``as_of_us`` never
        shifts what later versions would have been. When ``history`` is
        given, every version up to ``as_of_us`` is appended.
        """
        record, rng, changes, moments = self._plan(stream, index)
        record["created_at"] = record["updated_at"] = _format_us(moments[0])
        record["deleted"] = False
        # zip drops the changes the timeline had no room for (only with huge
        # data sets); the deletion comes last, so it is dropped first.
        for version, (change, moment) in enumerate(
            zip(changes, moments[1:], strict=False), start=1
        ):
            if moment > as_of_us:
                break
            if history is not None:
                history.append(record)
                record = dict(record)
            if change == "delete":
                record["deleted"] = True
            elif stream == "customers":
                self._change_customer(rng, index, version, record)
            else:
                record["status"] = change
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
            "phone": _phone(self.seed, index),
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


class Listing:
    """One stream as a client calling at one moment sees it: ordered, indexed, computed per page.

    Positions run from ``0`` to ``len(listing) - 1`` in the order of
    :meth:`Dataset.visible`. Only the order is held: for customers and
    orders, the index of the entity at each position (4 bytes each); for
    events, nothing, since their order is their creation order. A record, or
    a cursor value, is computed when asked for. Read-only and safe to share
    between threads once built.
    """

    __slots__ = ("_count", "_dataset", "_order", "as_of_us", "stream")

    def __init__(self, dataset: Dataset, stream: str, as_of_us: int) -> None:
        self._dataset = dataset
        self.stream = stream
        self.as_of_us = as_of_us
        self._count = dataset._created_count(stream, as_of_us)
        self._order = array("I") if stream == "events" else self._index()

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"<Listing {self.stream} as of {_format_us(self.as_of_us)}: {self._count} records>"

    def cursor(self, position: int) -> str:
        """The cursor value of the record at ``position``."""
        return _format_us(self._moment(position))

    def after(self, moment: datetime | str | None) -> int:
        """The position of the first record whose cursor value is strictly after ``moment``.

        ``None`` is before everything (``0``); a string is parsed as
        :func:`parse_timestamp` does.
        """
        if moment is None:
            return 0
        if isinstance(moment, str):
            moment = parse_timestamp(moment)
        return bisect.bisect_right(range(self._count), _to_us(moment), key=self._moment)

    def position(self, record_id: str) -> int | None:
        """Where the record ``record_id`` is listed, or ``None`` if it is not visible here."""
        index = self._dataset._index_of(self.stream, record_id)
        if index is None:
            return None
        if self.stream == "events":
            return index if index < self._count else None
        current = self._current(index)
        if current is None:
            return None
        # Cursor values are unique within a stream: the bisection lands on it.
        position = bisect.bisect_left(range(self._count), current, key=self._moment)
        return position if position < self._count and self._order[position] == index else None

    def records(self, start: int, stop: int) -> list[dict[str, Any]]:
        """The records at positions ``start`` to ``stop - 1`` (clipped, like a slice), computed now."""
        start, stop, _ = slice(start, stop).indices(self._count)
        dataset = self._dataset
        if self.stream == "events":
            return [dataset._event(index) for index in range(start, stop)]
        entity, stream, as_of_us = dataset._entity, self.stream, self.as_of_us
        return [entity(stream, index, as_of_us) for index in self._order[start:stop]]

    def _moment(self, position: int) -> int:
        if self.stream == "events":
            return self._dataset._event_created(position)
        current = self._current(self._order[position])
        assert current is not None  # listed entities are visible
        return current

    def _current(self, index: int) -> int | None:
        """The cursor value of a mutable entity at ``as_of_us``; ``None`` if not created yet."""
        moments = self._dataset._plan(self.stream, index)[3]
        if moments[0] > self.as_of_us:
            return None
        current = moments[0]
        for moment in moments:
            if moment > self.as_of_us:
                break
            current = moment
        return current

    def _index(self) -> array[int]:
        """The entity at each position: visible entities sorted by their current cursor value.

        Runs of :data:`_SORT_RUN` cursor values are sorted as lists, kept as
        8-byte arrays and merged into 4-byte entity indices (a cursor value
        names its entity): about 12 bytes per entity at the peak, instead of
        the 40 a list of every value would take, and 4 once built.
        """
        runs: list[array[int]] = []
        current = self._current
        for first in range(0, self._count, _SORT_RUN):
            run = [
                current(index) or 0 for index in range(first, min(first + _SORT_RUN, self._count))
            ]
            run.sort()
            runs.append(array("q", run))
            del run
        entity_of = self._dataset._entity_of
        return array("I", map(entity_of, heapq.merge(*runs)))


def _phone(seed: int, index: int) -> str | None:
    """The delivery contact's phone number of order ``index``, or ``None`` (about one in five).

    Drawn from a random stream of its own, so adding it shifted no other value.
    """
    rng = _Rng(seed, "orders/phone", index)
    if rng.chance(0.2):
        return None
    return f"+1-555-{rng.below(1000):03d}-{rng.below(10_000):04d}"


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
