"""The stock paginators: the pagination styles most vendor APIs use.

Each one is a :class:`~tapyard.base._model.Paginator` with a ``kind`` name, listed in
:data:`STOCK_PAGINATORS`. A declarative connector picks one by kind and passes
its options; the options are validated with ``extra="forbid"``, so a misspelt
option fails when the connector is loaded, not halfway through a sync.

======================  =====================================================
kind                    where the next page comes from
======================  =====================================================
``cursor``              a cursor: the last record's id (Stripe) or a body field
``next_url``            a URL in the body (Salesforce, OData, Azure)
``page_token``          an opaque token in the body (Google Cloud, AWS)
``offset``              offset and limit query parameters (not ``stable``)
``page_number``         a page number query parameter (not ``stable``)
``link_header``         the ``Link: <...>; rel="next"`` response header (GitHub)
======================  =====================================================

What every stock paginator promises:

- It holds configuration only. The position (cursor, token, offset, page, next
  URL) lives in the :class:`~tapyard.base._model.PageRequest` it returns, whose
  params are JSON values taken from the response, so a saved request resumes
  an interrupted sync.
- A next URL, from the body or from a ``Link`` header, is resolved against the
  URL of the response that carried it and returned absolute, with empty
  params: the URL carries the query. (Send it as is: an HTTP client that is
  handed an empty params mapping may replace the URL's query with it.)
- When the server hands back the request it just answered (the same cursor,
  token or URL again), it ends the stream after a page without records (as
  CloudWatch Logs marks its end) and raises :class:`~tapyard.ResponseError`
  after a page with records: fetching it again would only repeat that page,
  and stopping there would end the stream silently, short of its records.
- It says whether a saved position survives changes at the source
  (:meth:`~tapyard.Paginator.resume_survives_changes`): offsets and page
  numbers do not, nor does a ``cursor`` that is a record's id, nor (unless the
  connector says so with ``survives_changes``) a next URL the server handed
  out, which may hold an offset or a page number (SAP's ``$skiptoken``,
  GitHub's ``page=``); the sync engine then resumes from the cursor it
  committed, never from a position that may have moved.
- A cursor, token or next URL of the wrong JSON type (an object where a
  string was expected) raises :class:`~tapyard.ResponseError`.
"""

from __future__ import annotations

import abc
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar
from urllib.parse import urljoin

from pydantic import Field, model_validator

from tapyard.base import Page, PageRequest, Paginator, ResponseError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "STOCK_PAGINATORS",
    "CursorPaginator",
    "LinkHeaderPaginator",
    "NextUrlPaginator",
    "OffsetPaginator",
    "PageGuard",
    "PageNumberPaginator",
    "PageTokenPaginator",
    "dig",
]

#: the most pages one stream (or partition) may read in one run, unless the run says otherwise
DEFAULT_MAX_PAGES = 100_000

#: A query parameter name or a dotted path into a response body.
_Name = Annotated[str, Field(min_length=1)]
_PageSize = Annotated[int, Field(ge=1)]

_MISSING: Any = object()


def dig(obj: Any, path: str, default: Any = None) -> Any:
    """The value at a dotted ``path`` in parsed JSON, or ``default`` when there is none.

    ``"meta.next"`` reads ``obj["meta"]["next"]``; a segment that is an integer
    indexes a list (``"data.-1.id"`` is the last item's id). A key that contains
    dots and is present literally wins over traversal: ``"@odata.nextLink"``
    reads ``obj["@odata.nextLink"]``, and in ``"d.@odata.nextLink"`` the longest
    literal key is tried first at each level. An empty path returns ``obj``.

    A value that is present but ``null`` is returned as ``None``, not as
    ``default``.
    """
    if not path:
        return obj
    found = _dig(obj, path)
    return default if found is _MISSING else found


def _dig(obj: Any, path: str) -> Any:
    if isinstance(obj, Mapping):
        if path in obj:
            return obj[path]
        cut = path.rfind(".")
        while cut > 0:
            head = path[:cut]
            if head in obj:
                found = _dig(obj[head], path[cut + 1 :])
                if found is not _MISSING:
                    return found
            cut = path.rfind(".", 0, cut)
        return _MISSING
    if isinstance(obj, Sequence) and not isinstance(obj, str | bytes):
        head, _, rest = path.partition(".")
        try:
            index = int(head)
        except ValueError:
            return _MISSING
        if not -len(obj) <= index < len(obj):
            return _MISSING
        return _dig(obj[index], rest) if rest else obj[index]
    return _MISSING


def _truthy(value: Any) -> bool:
    """A JSON flag as a bool; ``"false"``, ``"0"`` and ``""`` are false, as APIs mean them."""
    if isinstance(value, str):
        return value.strip().lower() not in {"", "false", "0", "no"}
    return bool(value)


def _position(value: Any, kind: str, where: str) -> str | int | float | None:
    """A cursor or token read from a response: a JSON scalar, or ``None`` when absent or empty.

    Anything else would not survive being sent as a query parameter.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return value
    raise ResponseError(
        f"the {kind} paginator expected a string or number at {where!r}, "
        f"the response has a {type(value).__name__}"
    )


def _count(value: Any, kind: str, where: str) -> int | None:
    """A total read from a response: an integer, or ``None`` when the response has none."""
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ResponseError(
            f"the {kind} paginator expected an integer at {where!r}, "
            f"the response has a {type(value).__name__}"
        ) from None


def _repeated(kind: str, what: str) -> ResponseError:
    return ResponseError(
        f"the server handed back the {what} it was just asked for: the {kind} paginator would "
        "read the same page again for ever; the API ignores the paginator's position "
        "(check the paginator's options against the API's documentation)"
    )


def _with_params(
    request: PageRequest, updates: Mapping[str, Any], kind: str, records: Sequence[Any]
) -> PageRequest | None:
    """``request`` with ``updates`` merged into its params.

    When nothing changes: ``None`` after a page without records (the end, as
    CloudWatch Logs hands back its token), a :class:`ResponseError` after one
    with records (the next page would repeat them).
    """
    params = {**request.params, **updates}
    if params == dict(request.params):
        if not records:
            return None
        raise _repeated(kind, "position")
    return PageRequest(url=request.url, params=params)


def _response_url(request: PageRequest, response: httpx.Response) -> str:
    """The URL that answered: the base for relative next URLs (after redirects, the last one)."""
    try:
        return str(response.url)
    except RuntimeError:  # a response built without its request, as in some tests
        return request.url


def _follow(
    link: Any,
    request: PageRequest,
    response: httpx.Response,
    kind: str,
    where: str,
    records: Sequence[Any],
) -> PageRequest | None:
    """The request for a next ``link`` (absolute or relative), or ``None`` when there is none.

    A link that resolves to the URL just fetched ends a page without records
    and raises :class:`ResponseError` after one with records.
    """
    if link is None or link == "":
        return None
    if not isinstance(link, str):
        raise ResponseError(
            f"the {kind} paginator expected a URL string at {where!r}, "
            f"the response has a {type(link).__name__}"
        )
    base = _response_url(request, response)
    url = urljoin(base, link.strip())
    if url == base:
        if not records:
            return None
        raise _repeated(kind, "URL")
    return PageRequest(url=url, params={})


class CursorPaginator(Paginator):
    """Cursor pagination, Stripe style: ask for the records after a cursor.

    By default the cursor is the ``id`` of the last record of the page, sent as
    ``starting_after``, and the body says whether more pages follow::

        GET /v1/customers?limit=100&starting_after=cus_123
        {"object": "list", "data": [{"id": "cus_124", ...}, ...], "has_more": true}

    Set ``cursor_path`` when the API hands out the next cursor itself, as Slack
    does (``{"messages": [...], "response_metadata": {"next_cursor": "dXNl..."}}``
    with ``cursor_path="response_metadata.next_cursor"``, ``cursor_param="cursor"``
    and ``has_more_field=None``).

    Options:

    ``cursor_param``
        The query parameter that carries the cursor. Default ``"starting_after"``.
    ``id_field``
        The record field (dotted path allowed) whose value in the last record
        is the cursor, when ``cursor_path`` is not set. Default ``"id"``.
    ``cursor_path``
        A dotted path to the next cursor in the body. Default ``None``.
    ``has_more_field``
        A dotted path to a flag in the body saying whether more pages follow.
        When set, a page whose flag is false *or missing* is the last one: set it
        to ``None`` for APIs that have no such flag, or every sync stops after
        the first page. Default ``"has_more"``.
    ``limit_param``, ``page_size``
        When ``page_size`` is set, every request sends it as ``limit_param``.
        Defaults ``"limit"`` and ``None`` (the API's default size).
    ``stop_on_empty``
        Stop at a page without records even if it carries a cursor. Only matters
        with ``cursor_path``: a last record is needed to have an ``id_field``
        cursor. Set it to ``False`` for APIs that may answer an empty page before
        the end, as Slack does. Default ``True``.

    The last page is the one whose ``has_more_field`` is false or missing, or
    that has no cursor, or (see ``stop_on_empty``) no records. Without a
    ``has_more_field`` and with ``id_field`` cursors, the end is found by an
    extra request that returns no records.
    """

    kind: ClassVar[str] = "cursor"

    cursor_param: _Name = "starting_after"
    id_field: _Name = "id"
    cursor_path: _Name | None = None
    has_more_field: _Name | None = "has_more"
    limit_param: _Name = "limit"
    page_size: _PageSize | None = None
    stop_on_empty: bool = True

    def resume_survives_changes(self) -> bool:
        """False with ``id_field`` cursors: the saved position names a record, which
        moves when it is updated. A cursor the server hands out (``cursor_path``)
        is the server's to keep valid; one it rejects restarts the read."""
        return self.cursor_path is not None

    def first(self, url: str, params: Mapping[str, Any]) -> PageRequest:
        """The stream's request, with ``limit_param`` set when ``page_size`` is."""
        first = dict(params)
        if self.page_size is not None:
            first[self.limit_param] = self.page_size
        return PageRequest(url=url, params=first)

    def next(
        self,
        request: PageRequest,
        response: httpx.Response,
        body: Any,
        records: Sequence[Mapping[str, Any]],
    ) -> PageRequest | None:
        """The same request with the cursor after this page, or ``None`` on the last page."""
        if self.has_more_field is not None and not _truthy(dig(body, self.has_more_field)):
            return None
        if not records and (self.stop_on_empty or self.cursor_path is None):
            return None
        if self.cursor_path is not None:
            cursor = _position(dig(body, self.cursor_path), self.kind, self.cursor_path)
        else:
            # the last record that is an object: one that is not goes to the dead letters
            last = next((r for r in reversed(records) if isinstance(r, Mapping)), None)
            cursor = _position(dig(last, self.id_field), self.kind, self.id_field)
        if cursor is None:
            return None
        return _with_params(request, {self.cursor_param: cursor}, self.kind, records)


class _LinkPaginator(Paginator):
    """The shared half of the paginators that follow a link the server hands out (in
    the body or a ``Link`` header): the link is resolved against the response that
    carried it (:func:`_follow`), and a saved one is trusted after the source changed
    only when the connector says so (``survives_changes``)."""

    survives_changes: bool = False

    def resume_survives_changes(self) -> bool:
        """``survives_changes``: a link the server handed out is trusted only when the
        connector says so."""
        return self.survives_changes

    def next(
        self,
        request: PageRequest,
        response: httpx.Response,
        body: Any,
        records: Sequence[Mapping[str, Any]],
    ) -> PageRequest | None:
        """A request for the absolute next link, or ``None`` on the last page."""
        link, where = self._link(response, body, records)
        return _follow(link, request, response, self.kind, where, records)

    @abc.abstractmethod
    def _link(
        self, response: httpx.Response, body: Any, records: Sequence[Mapping[str, Any]]
    ) -> tuple[Any, str]:
        """The next link as the response gives it (``None`` on the last page), and where
        it was found, for error messages."""


class NextUrlPaginator(_LinkPaginator):
    """The body names the URL of the next page.

    ``next_path`` is a dotted path to it; a key that contains dots and is
    present literally (``"@odata.nextLink"``) wins over traversal. Common shapes::

        Salesforce  next_path="nextRecordsUrl"   a path relative to the host
            {"done": false, "nextRecordsUrl": "/services/data/v59.0/query/01g...-2000",
             "records": [...]}
        OData v4    next_path="@odata.nextLink"  absolute, or relative to the
            current URL (SAP CAP): {"value": [...], "@odata.nextLink": "Books?$skiptoken=1000"}
        OData v2    next_path="d.__next"
            {"d": {"results": [...], "__next": "https://host/odata/Books?$skiptoken=1000"}}
        Azure       next_path="nextLink"
            {"value": [...], "nextLink": "https://management.azure.com/...&$skipToken=..."}

    A relative URL is resolved against the URL of the response that carried
    it. The next request is that absolute URL with empty params: vendors put
    every parameter the next page needs (filters, api-version, the token) in
    the link, and some sign it.

    Options:

    ``next_path``
        Where the next URL is. Required.
    ``stop_on_empty``
        Stop at a page without records even if it has a next URL. SAP CAP
        answers a full last page with a next link, then an empty page; some
        services keep linking from empty pages. Set it to ``False`` for APIs
        that may answer empty pages before the end (some Azure list
        operations). Default ``True``.
    ``survives_changes``
        Whether a next URL still means the same position after the source
        changed, so that an interrupted sync may resume from the one it saved:
        true of a server-side snapshot (Salesforce's ``nextRecordsUrl``) or a
        link that names the last key or cursor served. Default ``False``: a
        link may hold an offset (SAP CAP's ``$skiptoken`` is one), which skips
        records when earlier ones move; the sync then resumes from the cursor
        it committed.

    The last page is the one whose next URL is missing, ``null`` or empty, or
    (see ``stop_on_empty``) that has no records.
    """

    kind: ClassVar[str] = "next_url"

    next_path: _Name
    stop_on_empty: bool = True

    def _link(
        self, response: httpx.Response, body: Any, records: Sequence[Mapping[str, Any]]
    ) -> tuple[Any, str]:
        """The URL at ``next_path``; none after a page without records (``stop_on_empty``)."""
        if self.stop_on_empty and not records:
            return None, self.next_path
        return dig(body, self.next_path), self.next_path


class PageTokenPaginator(Paginator):
    """An opaque token in the body, sent back as a query parameter.

    Google Cloud APIs::

        GET /v1/projects/p/instances?pageSize=100&pageToken=Cg...
        {"instances": [...], "nextPageToken": "Ch..."}

    AWS APIs (``token_path="NextToken"``, ``token_param="NextToken"``,
    ``limit_param="MaxResults"``)::

        {"Items": [...], "NextToken": "eyJ..."}

    Options:

    ``token_path``
        A dotted path to the next token in the body. Default ``"nextPageToken"``.
    ``token_param``
        The query parameter that carries it. Default ``"pageToken"``.
    ``limit_param``, ``page_size``
        When both are set, every request sends ``page_size`` as ``limit_param``.
        Setting ``page_size`` without ``limit_param`` is an error. Default ``None``.
    ``stop_on_empty``
        Stop at a page without records even if it has a token. Google Cloud
        Logging and several AWS APIs answer empty pages with a token before the
        end, so the default is ``False``.

    The last page is the one without a token (missing, ``null`` or empty), or
    whose token is the one just sent: CloudWatch Logs marks the end of a log
    stream that way.
    """

    kind: ClassVar[str] = "page_token"

    token_path: _Name = "nextPageToken"
    token_param: _Name = "pageToken"
    limit_param: _Name | None = None
    page_size: _PageSize | None = None
    stop_on_empty: bool = False

    @model_validator(mode="after")
    def _page_size_needs_a_param(self) -> PageTokenPaginator:
        if self.page_size is not None and self.limit_param is None:
            raise ValueError("page_size needs limit_param: the query parameter to send it in")
        return self

    def first(self, url: str, params: Mapping[str, Any]) -> PageRequest:
        """The stream's request, with ``limit_param`` set when ``page_size`` is."""
        first = dict(params)
        if self.limit_param is not None and self.page_size is not None:
            first[self.limit_param] = self.page_size
        return PageRequest(url=url, params=first)

    def next(
        self,
        request: PageRequest,
        response: httpx.Response,
        body: Any,
        records: Sequence[Mapping[str, Any]],
    ) -> PageRequest | None:
        """The same request with the next token, or ``None`` on the last page."""
        if self.stop_on_empty and not records:
            return None
        token = _position(dig(body, self.token_path), self.kind, self.token_path)
        if token is None:
            return None
        return _with_params(request, {self.token_param: token}, self.kind, records)


class OffsetPaginator(Paginator):
    """Offset and limit query parameters::

        GET /items?offset=200&limit=100
        {"results": [...], "meta": {"total": 237}}

    The next offset is this one plus the number of records that came back, so
    a server that caps the limit below ``page_size`` skips nothing when it
    reports a total.

    Options:

    ``offset_param``, ``limit_param``
        The query parameters. Defaults ``"offset"`` and ``"limit"``.
    ``page_size``
        The limit sent with every request. Default ``100``.
    ``total_path``
        A dotted path to the total number of records in the body. Default ``None``.

    The last page is the one without records, or, when the body has a total,
    the one that reaches it; without a total, the one with fewer than
    ``page_size`` records (so ``page_size`` must not exceed the server's cap,
    and a sync whose record count is a multiple of it ends with an empty page).

    Not ``stable``: offsets shift when records are added or removed, so an
    interrupted sync restarts from its committed cursor.
    """

    kind: ClassVar[str] = "offset"
    stable: ClassVar[bool] = False

    offset_param: _Name = "offset"
    limit_param: _Name = "limit"
    page_size: _PageSize = 100
    total_path: _Name | None = None

    def first(self, url: str, params: Mapping[str, Any]) -> PageRequest:
        """The stream's request at offset 0 with the limit."""
        return PageRequest(
            url=url, params={**params, self.offset_param: 0, self.limit_param: self.page_size}
        )

    def next(
        self,
        request: PageRequest,
        response: httpx.Response,
        body: Any,
        records: Sequence[Mapping[str, Any]],
    ) -> PageRequest | None:
        """The same request at the offset after this page, or ``None`` on the last page."""
        if not records:
            return None
        offset = int(request.params.get(self.offset_param, 0)) + len(records)
        total = None
        if self.total_path is not None:
            total = _count(dig(body, self.total_path), self.kind, self.total_path)
        if total is not None:
            if offset >= total:
                return None
        elif len(records) < self.page_size:
            return None
        return _with_params(request, {self.offset_param: offset}, self.kind, records)


class PageNumberPaginator(Paginator):
    """A page number query parameter::

        GET /items?page=3&per_page=100
        {"items": [...], "page": 3, "total_pages": 3}

    Options:

    ``page_param``
        The query parameter of the page number. Default ``"page"``.
    ``start``
        The number of the first page. Default ``1``.
    ``size_param``
        The query parameter of the page size, or ``None`` if the API has a
        fixed page size. Default ``"per_page"``.
    ``page_size``
        The page size: sent as ``size_param``, and used to spot the last page.
        With ``size_param=None`` it must be the API's fixed size. Default ``100``.
    ``total_pages_path``
        A dotted path to the number of pages in the body. Default ``None``.

    The last page is the one without records, or, when the body has a number
    of pages, the last of them; without it, the one with fewer than
    ``page_size`` records.

    Not ``stable``: pages shift when records are added or removed, so an
    interrupted sync restarts from its committed cursor.
    """

    kind: ClassVar[str] = "page_number"
    stable: ClassVar[bool] = False

    page_param: _Name = "page"
    start: Annotated[int, Field(ge=0)] = 1
    size_param: _Name | None = "per_page"
    page_size: _PageSize = 100
    total_pages_path: _Name | None = None

    def first(self, url: str, params: Mapping[str, Any]) -> PageRequest:
        """The stream's request for page ``start``, with the page size when ``size_param`` is set."""
        first = {**params, self.page_param: self.start}
        if self.size_param is not None:
            first[self.size_param] = self.page_size
        return PageRequest(url=url, params=first)

    def next(
        self,
        request: PageRequest,
        response: httpx.Response,
        body: Any,
        records: Sequence[Mapping[str, Any]],
    ) -> PageRequest | None:
        """The same request for the following page, or ``None`` on the last page."""
        if not records:
            return None
        page = int(request.params.get(self.page_param, self.start))
        total_pages = None
        if self.total_pages_path is not None:
            total_pages = _count(dig(body, self.total_pages_path), self.kind, self.total_pages_path)
        if total_pages is not None:
            if page - self.start + 1 >= total_pages:
                return None
        elif len(records) < self.page_size:
            return None
        return _with_params(request, {self.page_param: page + 1}, self.kind, records)


# One link-param of a link-value: ``; name``, ``; name=token`` or ``; name="quoted \" string"``.
_LINK_PARAM = re.compile(r'\s*;\s*([^\s=;,<>"]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^\s;,]*))?')
_QUOTED_PAIR = re.compile(r"\\(.)")


def _link_values(header: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Each ``(target, params)`` of an RFC 8288 ``Link`` header, in order.

    Parameter names are lower-cased and only the first occurrence of each is
    kept, as the RFC asks. Quoted values may contain commas, semicolons and
    angle brackets; a malformed piece is skipped rather than taken for a link.
    """
    pos = 0
    while (start := header.find("<", pos)) >= 0:
        end = header.find(">", start)
        if end < 0:
            return
        target = header[start + 1 : end].strip()
        params: dict[str, str] = {}
        pos = end + 1
        while match := _LINK_PARAM.match(header, pos):
            name, value = match.group(1).lower(), match.group(2) or ""
            if value.startswith('"'):
                value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
            params.setdefault(name, value)
            pos = match.end()
        yield target, params


class LinkHeaderPaginator(_LinkPaginator):
    """The ``Link`` response header (RFC 8288) names the next page, GitHub style::

        GET /repos/o/r/issues?per_page=100
        Link: <https://api.github.com/repositories/1/issues?per_page=100&page=2>; rel="next",
              <https://api.github.com/repositories/1/issues?per_page=100&page=5>; rel="last"

    The link whose ``rel`` includes ``next`` (``rel="next last"`` counts; case
    does not matter) is followed, whether the links share one header or come
    in several. A relative URI is resolved against the response URL. The next
    request is that absolute URL with empty params: the URL carries them.

    The last page is the one without a ``next`` link. The first request is the
    stream's own, so put a page size in the stream's parameters (GitHub:
    ``per_page``).

    Options:

    ``survives_changes``
        Whether a ``next`` link still means the same position after the source
        changed, so that an interrupted sync may resume from the one it saved
        (a link that names the last key or cursor served). Default ``False``:
        GitHub's links hold page numbers, which skip records when earlier ones
        move; the sync then resumes from the cursor it committed.
    """

    kind: ClassVar[str] = "link_header"

    def _link(
        self, response: httpx.Response, body: Any, records: Sequence[Mapping[str, Any]]
    ) -> tuple[Any, str]:
        """The target of the ``Link`` header's ``rel="next"``, if there is one."""
        header = ", ".join(response.headers.get_list("link"))
        for target, params in _link_values(header):
            if "next" in params.get("rel", "").lower().split():
                return target, "Link"
        return None, "Link"


#: The stock paginators by ``kind``.
STOCK_PAGINATORS: dict[str, type[Paginator]] = {
    cls.kind: cls
    for cls in (
        CursorPaginator,
        NextUrlPaginator,
        PageTokenPaginator,
        OffsetPaginator,
        PageNumberPaginator,
        LinkHeaderPaginator,
    )
}


class PageGuard:
    """Stops a read that would never end: every source's pages go through one.

    A source's pages are checked as they come: :meth:`check` raises
    :class:`~tapyard.ResponseError` when a page's resume point (the request for
    the page after it) is one the read has already been at, a cursor that
    repeats or cycles (A, B, A); when a page holds exactly the records of the
    page before it (a server that ignores the position it is sent); and past
    ``max_pages`` pages. Resume points are kept as 16-byte digests, so the
    guard's memory stays small up to the cap.
    """

    __slots__ = ("_last", "_max_pages", "_pages", "_seen", "_stream")

    def __init__(self, stream: str, max_pages: int | None = DEFAULT_MAX_PAGES) -> None:
        self._stream = stream
        self._max_pages = max_pages
        self._pages = 0
        self._seen: set[bytes] = set()
        self._last: list[Any] | None = None

    def check(self, page: Page) -> None:
        """Account for one page; raise if the read is going round in circles or past the cap."""
        self._pages += 1
        stream = self._stream
        if self._max_pages is not None and self._pages > self._max_pages:
            raise ResponseError(
                f"stream {stream!r} read more than {self._max_pages:,} pages in one run and the "
                "server still offers a next page: stopped at the page cap (raise it with "
                "--max-pages or sync(max_pages=...) if the stream really is that long)"
            )
        records = page.records
        if records and self._last is not None and records == self._last:
            raise ResponseError(
                f"stream {stream!r}: page {self._pages:,} repeats the page before it record for "
                "record; the server ignores the position it is sent (check the paginator's options)"
            )
        self._last = records if records else None
        if page.resume is None:
            return
        key = json.dumps(
            [page.resume.url, dict(page.resume.params)], sort_keys=True, default=str
        ).encode()
        digest = hashlib.blake2b(key, digest_size=16).digest()
        if digest in self._seen:
            raise ResponseError(
                f"stream {stream!r}: after page {self._pages:,} the server pointed back to a "
                "position this read has already been at (a cursor that repeats or cycles); "
                "stopped instead of reading the same pages for ever"
            )
        self._seen.add(digest)
