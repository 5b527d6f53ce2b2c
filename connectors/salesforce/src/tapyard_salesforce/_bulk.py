"""Reading an sObject through the Bulk API 2.0 (query jobs), over the
connector's own session: paced, retried (``REQUEST_LIMIT_EXCEEDED``, 5xx),
re-authenticated, and recorded like every other call.

One stream read is one job: ``POST jobs/query`` (``queryAll`` when deleted
records are wanted), then ``GET jobs/query/<id>`` until ``JobComplete`` (every
``bulk_poll_s``, doubling up to 30 s; ``Failed``/``Aborted`` end the stream with
one line; past ``bulk_timeout_s`` the job is aborted), then ``GET
jobs/query/<id>/results?maxRecords=N[&locator=L]`` until ``Sforce-Locator`` says
``null``, then ``DELETE`` of the job.

Results are CSV. Each response is read as a stream and parsed line by line into
pages of ``batch_size`` records, so memory stays flat however large a results
page is. CSV values are typed from ``describe()`` as the REST API's JSON would
be (booleans, ints, exact decimals; dates and datetimes as text for the schema
to parse; an empty value is null). Compound address/location fields cannot be
selected in Bulk queries: their parts are (``BillingStreet``, ...), and each
compound value is put together from them as the REST API would send it
(``{"street": ..., "city": ..., ...}``; null when every part is), so a record
reads the same through either API.

simple-salesforce 1.12's ``bulk2`` shapes the same requests, but reads each
results page into one string and hides the job id; these calls use its error
mapping (``call_salesforce``) and keep the job id and locator as the stream's
resume point, so an interrupted run continues from the page it stopped at.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import decimal
import json
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tapyard import HTTPError, Page, PageRequest, ResponseError, Stream, StreamState

if TYPE_CHECKING:
    from tapyard_salesforce._connector import SalesforceSource

__all__ = ["COMPOUND_TYPES", "compound_parts", "csv_lines", "read_bulk", "typed_rows"]

#: Field types Bulk queries refuse to select.
COMPOUND_TYPES = frozenset({"address", "location"})
_JSON = {"Content-Type": "application/json", "Accept": "application/json"}
_CSV = {"Content-Type": "application/json", "Accept": "text/csv"}
_BOOLEANS = {"true": True, "false": False}


def _decimal(value: str) -> Any:
    try:
        return decimal.Decimal(value)
    except decimal.InvalidOperation:
        raise ValueError(value) from None


def _int(value: str) -> Any:
    return int(value) if value.lstrip("-").isdigit() else int(_decimal(value))


def _bool(value: str) -> Any:
    return _BOOLEANS.get(value.lower(), value)


_CASTS: dict[str, Callable[[str], Any]] = {
    "boolean": _bool, "int": _int, "long": _int, "double": _decimal, "currency": _decimal, "percent": _decimal,
}


def csv_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """UTF-8 lines, each with its ``\\n``, from a byte stream cut anywhere; NUL
    bytes dropped (as simple-salesforce does). Quoted values may span lines:
    ``csv.reader`` joins them."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    tail = ""
    for chunk in chunks:
        text = tail + decoder.decode(chunk).replace("\x00", "")
        *lines, tail = text.split("\n")
        for line in lines:
            yield line + "\n"
    tail += decoder.decode(b"", final=True)
    if tail:
        yield tail


def compound_parts(fields: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    """For each compound field Bulk queries cannot select (address, location):
    its parts as (field name, key in the compound value). ``BillingCity`` of
    ``BillingAddress`` is ``city``; ``Place__Latitude__s`` of ``Place__c`` is
    ``latitude``."""
    kinds = {str(f["name"]): f.get("type") for f in fields}
    parts: dict[str, list[tuple[str, str]]] = {}
    for field in fields:
        compound = field.get("compoundFieldName")
        if not compound or kinds.get(str(compound)) not in COMPOUND_TYPES:
            continue
        name = str(field["name"])
        stem = str(compound).removesuffix("__c").removesuffix("Address")
        key = name.removeprefix(stem).removeprefix("__").removesuffix("__s")
        parts.setdefault(str(compound), []).append((name, key[:1].lower() + key[1:]))
    return parts


def with_compounds(record: dict[str, Any], parts: Mapping[str, Sequence[tuple[str, str]]]) -> dict[str, Any]:
    """``record`` with each compound value put together from its parts (null when all are)."""
    for compound, members in parts.items():
        value = {key: record.get(name) for name, key in sorted(members, key=lambda m: m[1])}  # REST's key order
        record[compound] = value if any(v is not None for v in value.values()) else None
    return record


def typed_rows(lines: Iterable[str], fields: Mapping[str, str]) -> Iterator[dict[str, Any]]:
    """Records from Bulk CSV ``lines`` (a header row first), each value cast by
    its describe() type in ``fields``; a value that does not parse is left as
    text, so the schema sends its record to the dead letters."""
    rows = csv.reader(lines)
    header = next(rows, None)
    if header is None:
        return
    casts = [_CASTS.get(fields.get(name, "")) for name in header]
    for row in rows:
        record: dict[str, Any] = {}
        for name, cast, value in zip(header, casts, row, strict=False):
            if value == "":
                record[name] = None
            elif cast is None:
                record[name] = value
            else:
                try:
                    record[name] = cast(value)
                except ValueError:
                    record[name] = value
        yield record


class _Job:
    """One query job of one stream read."""

    def __init__(self, source: SalesforceSource, stream: Stream) -> None:
        self.source, self.stream, self.config = source, stream, source.config
        self.base = source.sf.bulk2_url + "query"
        self.what = f"Bulk API 2.0 query on {stream.name}"

    def call(self, method: str, url: str, headers: Mapping[str, str], **kwargs: Any) -> Any:
        from simple_salesforce.util import call_salesforce

        return self.source.call(
            self.what, lambda: call_salesforce(url, method, self.source.session, dict(headers), **kwargs)
        )

    def create(self, since: Any) -> str:
        operation = "queryAll" if self.config.include_deleted else "query"
        body = {"operation": operation, "query": self.source.soql(self.stream, since, bulk=True),
                "columnDelimiter": "COMMA", "lineEnding": "LF"}
        info = self.call("POST", self.base, _JSON, data=json.dumps(body)).json()
        if not isinstance(info, dict) or not info.get("id"):
            raise ResponseError(f"{self.what}: creating the job gave no job id")
        self.source.stats.add("bulk_jobs")
        return str(info["id"])

    def info(self, job_id: str) -> dict[str, Any]:
        info = self.call("GET", f"{self.base}/{job_id}", _JSON).json()
        return info if isinstance(info, dict) else {}

    def wait(self, job_id: str) -> None:
        deadline = time.monotonic() + self.config.bulk_timeout_s
        delay = self.config.bulk_poll_s
        while True:
            time.sleep(delay)
            info = self.info(job_id)
            state = str(info.get("state") or "")
            if state == "JobComplete":
                return
            if state in ("Failed", "Aborted"):
                said = " ".join(str(info.get("errorMessage") or "no reason given").split())[:300]
                raise ResponseError(
                    f"{self.what}: job {job_id} {state.lower()}: {said}; fix the query or read "
                    f"{self.stream.name} through the REST API (leave it out of bulk_sobjects)",
                    url=f"{self.base}/{job_id}",
                )
            if time.monotonic() + delay > deadline:
                with contextlib.suppress(HTTPError):
                    self.call("PATCH", f"{self.base}/{job_id}", _JSON, data=json.dumps({"state": "Aborted"}))
                raise ResponseError(
                    f"{self.what}: job {job_id} was still {state or 'unfinished'} after "
                    f"{self.config.bulk_timeout_s:g}s and was aborted; raise bulk_timeout_s",
                    url=f"{self.base}/{job_id}",
                )
            delay = min(delay * 2, max(self.config.bulk_poll_s, 30.0))

    def results(self, job_id: str, locator: str) -> Iterator[Page]:
        """The job's records from ``locator`` on ("": the first results page)."""
        url = f"{self.base}/{job_id}/results"
        path = urllib.parse.urlsplit(url).path
        described = self.source.fields[self.stream.name]
        fields = {str(f["name"]): str(f.get("type")) for f in described}
        parts = compound_parts(described)
        size = self.config.batch_size
        while True:
            params: dict[str, Any] = {"maxRecords": self.config.bulk_page_size}
            if locator:
                params["locator"] = locator
            response = self.call("GET", url, _CSV, params=params, stream=True)
            with contextlib.closing(response):
                following = response.headers.get("Sforce-Locator") or "null"
                again = PageRequest(url=path, params={"locator": locator})  # this results page, from its start
                records: list[dict[str, Any]] = []
                for record in typed_rows(csv_lines(response.iter_content(64 * 1024)), fields):
                    if len(records) >= size:  # not the last chunk: that one carries the next locator
                        yield Page(records=records, resume=again)
                        records = []
                    records.append(with_compounds(record, parts) if parts else record)
            last = following == "null"
            yield Page(records=records, resume=None if last else PageRequest(url=path, params={"locator": following}))
            if last:
                return
            locator = following

    def resumable(self, resume: PageRequest | None) -> tuple[str, str] | None:
        """(job id, locator) of an unfinished read whose job is still there, complete."""
        if resume is None or "/jobs/query/" not in resume.url:
            return None
        job_id = resume.url.rstrip("/").split("/")[-2]
        with contextlib.suppress(HTTPError):  # deleted or expired (jobs live 7 days): start again
            if self.info(job_id).get("state") == "JobComplete":
                return job_id, str(resume.params.get("locator") or "")
        return None


def read_bulk(source: SalesforceSource, stream: Stream, state: StreamState) -> Iterator[Page]:
    """The pages of ``stream`` after ``state.cursor``, through one Bulk API 2.0 query job."""
    job = _Job(source, stream)
    found = job.resumable(state.resume)
    if found is None:
        job_id, locator = job.create(state.cursor), ""
        job.wait(job_id)
    else:
        job_id, locator = found
    yield from job.results(job_id, locator)
    with contextlib.suppress(HTTPError):  # its results count against the org's storage until then
        job.call("DELETE", f"{job.base}/{job_id}", _JSON)
