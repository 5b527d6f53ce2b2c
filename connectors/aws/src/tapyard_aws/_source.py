"""One run of the AWS connector: boto3 clients, paging and error mapping.

Every client of a run sends its requests through the run's SDK-call path
(``tapyard.http.SdkEngine``): a botocore ``before-send`` handler sends each
request itself, through the engine, and hands botocore the final response.
So every request waits for the limiter shared by every run of the credential,
passes the circuit breaker, is retried with backoff on throttling
(``SlowDown``, ``ThrottlingException``... and 429), 5xx and connection
failures (``max_attempts``), and is counted in the run's HTTP figures.
botocore's own retries are off.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import threading
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import IO, Any

import tapyard
from tapyard.files import ListingPage, StoredObject, refused_resume
from tapyard.sources import ObjectStoreSource

from ._models import AwsConfig, AwsStream

__all__ = ["AwsSource", "parse_error_code"]

AUTH_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "AuthFailure",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "UnauthorizedOperation",
        "MissingAuthenticationToken",
        "InvalidSignatureException",
        "IncompleteSignature",
    }
)

_XML_CODE = re.compile(rb"<Code>([A-Za-z0-9.]+)</Code>")
_JSON_TYPE = re.compile(rb'"__type"\s*:\s*"(?:[^"#]*#)?([A-Za-z0-9.]+)"')


def parse_error_code(body: bytes | None) -> str | None:
    """The error code in an AWS error body (XML or JSON), if any."""
    if not body:
        return None
    found = _XML_CODE.search(body) or _JSON_TYPE.search(body)
    return found.group(1).decode() if found else None


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime | dt.date) else value


def _set_order(value: Any) -> tuple[int, Any]:
    # number sets in numeric order, string and binary sets in their own
    return (0, value) if isinstance(value, int | Decimal) else (1, repr(value))


def _plain(value: Any) -> Any:
    """DynamoDB values as JSON: numbers exact (an integer as int, of any size; any
    other number as the Decimal boto3 gives, never float), sets as sorted lists,
    binary as base64 text."""
    if isinstance(value, Decimal):
        return int(value) if value.is_finite() and value.as_tuple().exponent == 0 else value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_plain(v) for v in value), key=_set_order)
    if hasattr(value, "value") and isinstance(value.value, bytes):  # boto3 Binary
        import base64

        return base64.b64encode(value.value).decode("ascii")
    return value


class AwsSource(ObjectStoreSource):
    """An open run: boto3 clients built from the vault's credential (or boto3's chain)."""

    roles = {"s3_objects": "objects", "s3_records": "records"}
    container_field = "bucket"
    seeks = True  # StartAfter
    config: AwsConfig

    def __init__(self, connector: tapyard.Connector, config: AwsConfig, context: tapyard.RunContext) -> None:
        import boto3
        from botocore.config import Config

        super().__init__(
            connector, config, context, fallback=config.endpoint_url or f"aws {config.region}",
            rate_field="requests_per_second",
            policy={"max_attempts": config.max_attempts, "connect_timeout": config.connect_timeout_s,
                    "read_timeout": config.read_timeout_s},
        )
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._described: dict[str, list[str]] = {}
        credentials = context.credentials
        if credentials is None:
            self._session = boto3.session.Session(region_name=config.region)
        else:
            strategy = self.pm.hook.tapyard_auth_strategy(connector=connector, config=config, credentials=credentials)
            session = getattr(strategy, "session", None)
            if not callable(session):
                raise tapyard.ConfigError(
                    f"the aws connector needs 'aws' credentials, not {getattr(credentials, 'kind', '?')!r}"
                )
            self._session = session()
        pool = max(10, config.scan_segments * max(1, len(config.dynamodb_tables)) + 4)
        self._botocore_config = Config(
            region_name=config.region,
            retries={"mode": "standard", "max_attempts": 1},  # the SDK-call path retries
            connect_timeout=config.connect_timeout_s,
            read_timeout=config.read_timeout_s,
            max_pool_connections=pool,
            user_agent_extra="tapyard-aws",
        )

    # -- clients and events ------------------------------------------------------

    def client(self, service: str) -> Any:
        """The run's client for ``service`` (boto3 sessions are not thread-safe: built under a lock)."""
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                client = self._session.client(
                    service, endpoint_url=self.config.endpoint_url, config=self._botocore_config
                )
                client.meta.events.register("before-send", self._sender(client))
                self._clients[service] = client
            return client

    def _sender(self, client: Any) -> Any:
        """The ``before-send`` handler of ``client``: send the request through the
        SDK-call path and hand botocore the response (a handler's answer is what
        botocore uses instead of sending, as moto's stubber does)."""
        # botocore's endpoint keeps the client's configured HTTP session
        # (timeouts, pool, proxies, CA bundle) there.
        session = client._endpoint.http_session

        def before_send(request: Any = None, **kwargs: Any) -> Any:
            return self.engine.exchange(lambda: session.send(request), self._reply, method=request.method, url=request.url)

        return before_send

    def _reply(self, response: Any, error: BaseException | None) -> Any:
        """What one exchange said: a 429 or a throttling error code (``SlowDown``,
        ``ThrottlingException``...) is a throttle."""
        from tapyard.http import SdkReply

        if response is None:
            return SdkReply.failed(error or RuntimeError("no response"))
        status = int(response.status_code)
        headers = response.headers
        self.clock.observe(headers)
        code = None
        if status >= 400:
            header = headers.get("x-amzn-errortype")
            # an error body is small, and botocore reads it from the same buffer
            code = header.split(":")[0] if header else parse_error_code(response.content)
        size = len(response.content) if status >= 400 else None
        return SdkReply.of(status, headers, throttled=code in _throttles(), code=code, size=size)

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                with contextlib.suppress(Exception):
                    client.close()
            self._clients.clear()

    # -- the Source contract ----------------------------------------------------------

    def check(self) -> None:
        with self.errors("list buckets"):
            self.client("s3").list_buckets()
        if self.config.bucket:
            with self.errors(f"bucket {self.config.bucket!r}", container=self.config.bucket):
                self.client("s3").head_bucket(Bucket=self.config.bucket)

    def partitions(self, stream: tapyard.Stream) -> list[dict[str, Any]]:
        if stream.name == "dynamodb_items":
            n = self.config.scan_segments
            return [{"table": t, "segment": i, "segments": n} for t in self.config.dynamodb_tables for i in range(n)]
        return [{}]

    def read_other(
        self, stream: tapyard.Stream, state: tapyard.StreamState, partition: Mapping[str, Any]
    ) -> Iterator[tapyard.Page]:
        assert isinstance(stream, AwsStream)
        readers = {
            "s3_buckets": self._buckets,
            "dynamodb_items": self._items,
            "iam_users": self._users,
            "ec2_instances": self._instances,
        }
        return readers[stream.name](stream, state, partition)

    # -- paging -----------------------------------------------------------------------

    def _paginator(self, stream: AwsStream) -> tapyard.Paginator:
        return tapyard.stream_paginator(self.connector, stream)

    def _pages(
        self, stream: AwsStream, state: tapyard.StreamState, what: str, *, resume: bool = True, **params: Any
    ) -> Iterator[tuple[dict[str, Any], tapyard.PageRequest | None]]:
        """The pages of ``stream.operation`` and, with each, the request for the one after it."""
        paginator = self._paginator(stream)
        page_size = int(getattr(paginator, "page_size", 0) or self.config.page_size)
        if stream.operation == "describe_instances":
            page_size = max(5, page_size)  # EC2's MaxResults floor
        request: tapyard.PageRequest | None
        if resume and state.resume is not None and state.resume.url == stream.operation and paginator.stable:
            request = state.resume
        else:
            request = paginator.first(stream.operation, {})
        resumed = request is state.resume
        pager = self.client(stream.service).get_paginator(stream.operation)
        while request is not None:
            options: dict[str, Any] = {"PageSize": page_size, "MaxItems": page_size}
            token = request.params.get("StartingToken")
            if token:
                options["StartingToken"] = token
            try:
                with self.errors(what, container=params.get("Bucket"), table=params.get("TableName")):
                    iterator = pager.paginate(**params, PaginationConfig=options)
                    merged: dict[str, Any] = {}
                    for page in iterator:
                        for key, value in page.items():
                            if isinstance(value, list):
                                merged.setdefault(key, []).extend(value)
                            else:
                                merged.setdefault(key, value)
                    next_token = iterator.resume_token
            except tapyard.HTTPError as exc:
                # A saved token the service no longer takes (an expired NextToken, a
                # restarted endpoint): read from the first page, never fail for ever.
                if isinstance(exc, tapyard.TransportError) or not (resumed and refused_resume(stream.name, exc)):
                    raise
                resumed, request = False, paginator.first(stream.operation, {})
                continue
            resumed = False
            # An SDK page has no HTTP response; the token paginator reads only the body.
            following = paginator.next(request, None, {"resume_token": next_token}, [])  # type: ignore[arg-type]
            yield merged, following
            request = following

    @contextlib.contextmanager
    def errors(self, what: str, *, container: str | None = None, table: str | None = None) -> Iterator[None]:
        """boto3 errors as tapyard errors with one-line messages (``raise ... from``)."""
        from botocore import exceptions as bx
        from botocore.parsers import ResponseParserError

        try:
            yield
        except bx.ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "error")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in ("NoSuchBucket",) or (container and status == 404 and code in ("404", "NotFound")):
                raise tapyard.ConfigError(f"bucket {container!r} does not exist") from exc
            if code == "ResourceNotFoundException" and table:
                raise tapyard.ConfigError(f"dynamodb table {table!r} does not exist") from exc
            if code in AUTH_CODES or status in (401, 403):
                raise tapyard.AuthenticationError(
                    f"aws refused the credentials ({code}) to {what}", status_code=status or 403
                ) from exc
            if code in _throttles() or status >= 500:
                raise tapyard.HTTPStatusError(
                    f"aws kept answering {code} (HTTP {status}) to {what} after "
                    f"{self.config.max_attempts} attempts",
                    status_code=status,
                    attempts=self.config.max_attempts,
                ) from exc
            raise tapyard.HTTPStatusError(f"aws answered {code} (HTTP {status}) to {what}", status_code=status) from exc
        except bx.NoCredentialsError as exc:
            raise tapyard.AuthenticationError(
                "no aws credentials: pass --creds NAME (tapyard creds add NAME --connector aws) "
                "or configure boto3's environment",
                status_code=401,
            ) from exc
        except (bx.EndpointConnectionError, bx.ConnectionClosedError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as exc:
            where = self.config.endpoint_url or f"aws ({self.config.region})"
            raise tapyard.TransportError(
                f"cannot reach {where} to {what}: {type(exc).__name__} after {self.config.max_attempts} attempts"
            ) from exc
        except bx.ParamValidationError as exc:
            raise tapyard.ConfigError(f"aws refused the parameters to {what}: {str(exc).splitlines()[-1]}") from exc
        except bx.BotoCoreError as exc:
            raise tapyard.HTTPError(f"aws call to {what} failed: {type(exc).__name__}") from exc
        except ResponseParserError as exc:  # an HTML error page (moto's 500), a proxy's answer
            raise tapyard.HTTPError(f"aws answered {what} with a body that is not the service's XML or JSON") from exc

    # -- streams ----------------------------------------------------------------------

    def _buckets(self, stream: AwsStream, state: tapyard.StreamState, partition: Mapping[str, Any]) -> Iterator[tapyard.Page]:
        for page, following in self._pages(stream, state, "list buckets"):
            records = [{"name": b["Name"], "creation_date": _iso(b.get("CreationDate"))} for b in page.get("Buckets", [])]
            yield tapyard.Page(records, resume=following)

    def list_objects(self, container: str, *, size: int, token: str | None, after: str | None) -> ListingPage:
        """One ListObjectsV2 request: by the store's token, or by key (``StartAfter``)."""
        params: dict[str, Any] = {"Bucket": container, "MaxKeys": size}
        if self.config.prefix:
            params["Prefix"] = self.config.prefix
        if token:
            params["ContinuationToken"] = token
        elif after:
            params["StartAfter"] = after
        answer = self.client("s3").list_objects_v2(**params)
        objects = [StoredObject(o["Key"], o["LastModified"], o) for o in answer.get("Contents", [])]
        following = answer.get("NextContinuationToken") if answer.get("IsTruncated") else None
        return ListingPage(objects, following or None)

    def object_record(self, container: str, stored: StoredObject) -> dict[str, Any]:
        return {
            "bucket": container,
            "key": stored.key,
            "size": stored.item.get("Size", 0),
            "etag": str(stored.item.get("ETag", "")).strip('"'),
            "last_modified": _iso(stored.last_modified),
            "storage_class": stored.item.get("StorageClass"),
        }

    def download(self, container: str, stored: StoredObject, spool: IO[bytes]) -> None:
        with self.errors(f"read s3://{container}/{stored.key}", container=container):
            body = self.client("s3").get_object(Bucket=container, Key=stored.key)["Body"]
            try:
                for chunk in body.iter_chunks(1 << 20):
                    spool.write(chunk)
            finally:
                body.close()

    def _key_names(self, table: str) -> list[str]:
        with self._lock:
            known = self._described.get(table)
        if known is None:
            with self.errors(f"describe dynamodb table {table!r}", table=table):
                answer = self.client("dynamodb").describe_table(TableName=table)
            known = [k["AttributeName"] for k in answer["Table"]["KeySchema"]]
            with self._lock:
                self._described[table] = known
        return known

    def _items(self, stream: AwsStream, state: tapyard.StreamState, partition: Mapping[str, Any]) -> Iterator[tapyard.Page]:
        from boto3.dynamodb.types import TypeDeserializer

        table = str(partition["table"])
        keys = self._key_names(table)
        deserialize = TypeDeserializer().deserialize
        params: dict[str, Any] = {"TableName": table, "Segment": int(partition["segment"]), "TotalSegments": int(partition["segments"])}
        for page, following in self._pages(stream, state, f"scan dynamodb table {table!r}", **params):
            records = []
            for raw in page.get("Items", []):
                item = {name: _plain(deserialize(value)) for name, value in raw.items()}
                key = json.dumps({k: item.get(k) for k in keys}, sort_keys=True, separators=(",", ":"), default=str)
                records.append({"table": table, "key": key, "item": item})
            yield tapyard.Page(records, resume=following)

    def _users(self, stream: AwsStream, state: tapyard.StreamState, partition: Mapping[str, Any]) -> Iterator[tapyard.Page]:
        for page, following in self._pages(stream, state, "list iam users"):
            records = [
                {
                    "user_id": u["UserId"],
                    "user_name": u["UserName"],
                    "arn": u["Arn"],
                    "path": u.get("Path", "/"),
                    "create_date": _iso(u["CreateDate"]),
                    "password_last_used": _iso(u.get("PasswordLastUsed")),
                    "tags": self._user_tags(u),
                }
                for u in page.get("Users", [])
            ]
            yield tapyard.Page(records, resume=following)

    def _user_tags(self, user: Mapping[str, Any]) -> dict[str, str]:
        """A user's tags: ``ListUsers`` leaves them out, so they come from
        ``ListUserTags``, every page of it."""
        name = str(user["UserName"])
        tags: dict[str, str] = {}
        with self.errors(f"list tags of iam user {name!r}"):
            pages = self.client("iam").get_paginator("list_user_tags").paginate(
                UserName=name, PaginationConfig={"PageSize": self.config.page_size}
            )
            for page in pages:
                tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        return tags

    def _instances(self, stream: AwsStream, state: tapyard.StreamState, partition: Mapping[str, Any]) -> Iterator[tapyard.Page]:
        for page, following in self._pages(stream, state, "describe ec2 instances"):
            records = [
                {
                    "instance_id": i["InstanceId"],
                    "region": self.config.region,
                    "instance_type": i.get("InstanceType"),
                    "state": (i.get("State") or {}).get("Name"),
                    "image_id": i.get("ImageId"),
                    "launch_time": _iso(i.get("LaunchTime")),
                    "private_ip_address": i.get("PrivateIpAddress"),
                    "public_ip_address": i.get("PublicIpAddress"),
                    "vpc_id": i.get("VpcId"),
                    "subnet_id": i.get("SubnetId"),
                    "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])},
                }
                for reservation in page.get("Reservations", [])
                for i in reservation.get("Instances", [])
            ]
            yield tapyard.Page(records, resume=following)


def _throttles() -> frozenset[str]:
    from tapyard_aws import THROTTLE_CODES

    return THROTTLE_CODES
