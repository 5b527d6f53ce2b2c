"""singer-sdk: a tap with one ``RESTStream`` per job stream, Singer messages to /dev/null.

What the SDK's documentation leads a tap author to write for this API: a
``BearerTokenAuthenticator``, ``records_jsonpath = "$.data[*]"``, a Stripe
paginator (``has_more`` and the last record's id), ``Retry-After`` honoured
through ``backoff_runtime`` (the documented way; the SDK adds its default
jitter), and ``validate_response`` extended to retry a 200 whose body is not
JSON (parsed once: ``parse_response`` and the paginator reuse it). Partitions
are the stream's ``partitions`` with ``options.partitions == "native"``,
separate streams otherwise. The SDK reads streams one after another.
"""

from __future__ import annotations

import decimal
import os
from typing import Any

from _common import PATHS, Timer, emit, json_schema, load_job, version_of

fd = os.open(os.devnull, os.O_WRONLY)
os.dup2(fd, 1)

from singer_sdk import Tap  # noqa: E402
from singer_sdk.authenticators import BearerTokenAuthenticator  # noqa: E402
from singer_sdk.exceptions import RetriableAPIError  # noqa: E402
from singer_sdk.helpers.jsonpath import extract_jsonpath  # noqa: E402
from singer_sdk.pagination import BaseAPIPaginator  # noqa: E402
from singer_sdk.streams import RESTStream  # noqa: E402

COUNTS: dict[str, int] = {}


def body(response: Any) -> Any:
    cached = getattr(response, "_bench_body", None)
    if cached is None:
        cached = response._bench_body = response.json(parse_float=decimal.Decimal)
    return cached


class StripePaginator(BaseAPIPaginator[Any]):
    def has_more(self, response: Any) -> bool:
        return bool(body(response).get("has_more"))

    def get_next(self, response: Any) -> Any:
        data = body(response)["data"]
        return data[-1]["id"] if data else None


class BenchStream(RESTStream[Any]):
    records_jsonpath = "$.data[*]"
    primary_keys = ("id",)
    replication_key = None
    extra: dict[str, Any] = {}
    part_list: list[dict[str, Any]] | None = None

    @property
    def url_base(self) -> str:
        return str(self.config["base_url"])

    @property
    def authenticator(self) -> BearerTokenAuthenticator:
        return BearerTokenAuthenticator(token=self.config["token"])

    @property
    def partitions(self) -> list[dict[str, Any]] | None:
        return self.part_list

    def get_new_paginator(self) -> StripePaginator:
        return StripePaginator(None)

    def get_url_params(self, context: Any, next_page_token: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": self.config["page_size"], **self.extra}
        if context and "partition" in context:
            params["partition"] = context["partition"]
            params["partitions"] = len(self.part_list or [])
        if next_page_token:
            params["starting_after"] = next_page_token
        return params

    def validate_response(self, response: Any) -> None:
        super().validate_response(response)
        try:
            body(response)
        except ValueError as exc:
            raise RetriableAPIError(f"malformed JSON: {exc}", response) from exc

    def parse_response(self, response: Any) -> Any:
        yield from extract_jsonpath(self.records_jsonpath, input=body(response))

    def backoff_wait_generator(self) -> Any:
        def wait(exc: Any) -> float:
            response = getattr(exc, "response", None)
            retry_after = response.headers.get("Retry-After") if response is not None else None
            return float(retry_after) if retry_after else 0.5

        return self.backoff_runtime(value=wait)

    def backoff_max_tries(self) -> int:
        return 8

    def post_process(self, row: dict[str, Any], context: Any = None) -> dict[str, Any]:
        COUNTS[self.name] = COUNTS.get(self.name, 0) + 1
        return row


def stream_class(name: str, path: str, params: dict[str, Any], parts: list[dict[str, Any]] | None) -> type:
    return type(
        f"Stream_{name}",
        (BenchStream,),
        {"name": name, "path": path, "schema": json_schema(), "extra": params, "part_list": parts},
    )


def main() -> None:
    job = load_job()
    if job.get("variant", "cursor") != "cursor":
        raise SystemExit("singer client: only the cursor variant is written")
    classes: list[type] = []
    if job.get("options", {}).get("partitions") == "native":
        grouped: dict[str, list[dict[str, Any]]] = {}
        for s in job["streams"]:
            grouped.setdefault(s["stream"], []).append(s)
        for server_stream, entries in grouped.items():
            parts = [{"partition": e["params"]["partition"]} for e in entries if e["params"]]
            classes.append(stream_class(server_stream, PATHS["cursor"] + server_stream, {}, parts or None))
    else:
        for s in job["streams"]:
            classes.append(stream_class(s["name"], PATHS["cursor"] + s["stream"], s["params"], None))

    class BenchTap(Tap):
        name = "tap-bench"
        config_jsonschema = {"type": "object", "properties": {}}

        def discover_streams(self) -> list[Any]:
            return [cls(tap=self) for cls in classes]

    config = {"base_url": job["base_url"], "token": job["token"], "page_size": job["page_size"]}
    with Timer() as timer:
        tap = BenchTap(config=config, setup_mapper=True)
        tap.sync_all()
    emit(
        "singer",
        timer,
        sum(COUNTS.values()),
        streams=COUNTS,
        notes=["output: Singer messages to /dev/null"],
        versions={"singer-sdk": version_of("singer-sdk"), "requests": version_of("requests")},
    )


if __name__ == "__main__":
    main()
