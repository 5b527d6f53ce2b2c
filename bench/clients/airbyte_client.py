"""airbyte-cdk: a low-code (declarative) source built from a manifest dict, run through
``airbyte_cdk.entrypoint.launch`` with the Airbyte messages going to /dev/null.

The manifest is what a connector author would write for this API: bearer
auth, a ``DpathExtractor`` on ``data``, ``CursorPagination`` on the last
record's id with ``has_more`` as the stop condition, and an error handler that
honours ``Retry-After`` (``WaitTimeFromHeader``; the CDK sleeps it plus one
second) and, with ``options.faults``, retries a 200 whose body is not the
expected JSON (the CDK's JSON decoder turns a malformed body into ``{}``,
which would otherwise end the stream silently). Partitions of one
server stream become a ``ListPartitionRouter`` with ``options.partitions ==
"native"``, separate streams otherwise. ``concurrency_level`` is set when the
job asks for more than one worker (the CDK's default is 2).
"""

from __future__ import annotations

import json
import os
from typing import Any

from _common import PATHS, Timer, emit, json_schema, load_job, version_of

fd = os.open(os.devnull, os.O_WRONLY)
os.dup2(fd, 1)

from airbyte_cdk.entrypoint import AirbyteEntrypoint, launch  # noqa: E402
from airbyte_cdk.sources.declarative.concurrent_declarative_source import (  # noqa: E402
    ConcurrentDeclarativeSource,
)


def paginator(job: dict[str, Any]) -> dict[str, Any]:
    size = job["page_size"]
    variant = job.get("variant", "cursor")
    option = {"type": "RequestOption", "inject_into": "request_parameter"}
    if variant == "cursor":
        return {
            "type": "DefaultPaginator",
            "page_token_option": {**option, "field_name": "starting_after"},
            "page_size_option": {**option, "field_name": "limit"},
            "pagination_strategy": {
                "type": "CursorPagination",
                "cursor_value": "{{ last_record['id'] }}",
                "stop_condition": "{{ not response.has_more }}",
                "page_size": size,
            },
        }
    if variant == "next":
        return {
            "type": "DefaultPaginator",
            "page_token_option": {"type": "RequestPath"},
            "page_size_option": {**option, "field_name": "limit"},
            "pagination_strategy": {
                "type": "CursorPagination",
                "cursor_value": "{{ response.next }}",
                "stop_condition": "{{ not response.next }}",
                "page_size": size,
            },
        }
    raise SystemExit(f"airbyte client: variant {variant!r} not written")


def stream_def(job: dict[str, Any], name: str, server_stream: str, params: dict[str, Any],
               partitions: list[dict[str, Any]] | None) -> dict[str, Any]:
    # 429 and 5xx are retried by the CDK's default error mapping.
    filters: list[dict[str, Any]] = []
    if job.get("options", {}).get("faults"):
        # The predicate sees the parsed body, so it costs a second parse of
        # every page: only where malformed pages are expected.
        filters.append({"type": "HttpResponseFilter", "action": "RETRY",
                        "predicate": "{{ 'data' not in response }}", "error_message": "malformed page"})
    retriever: dict[str, Any] = {
        "type": "SimpleRetriever",
        "requester": {
            "type": "HttpRequester",
            "url_base": "{{ config['base_url'] }}",
            "path": PATHS[job.get("variant", "cursor")] + server_stream,
            "http_method": "GET",
            "authenticator": {"type": "BearerAuthenticator", "api_token": "{{ config['token'] }}"},
            "request_parameters": {k: str(v) for k, v in params.items()},
            "error_handler": {
                "type": "DefaultErrorHandler",
                "max_retries": 8,
                "backoff_strategies": [{"type": "WaitTimeFromHeader", "header": "Retry-After"}],
                **({"response_filters": filters} if filters else {}),
            },
        },
        "record_selector": {
            "type": "RecordSelector",
            "extractor": {"type": "DpathExtractor", "field_path": ["data"]},
        },
        "paginator": paginator(job),
    }
    if partitions:
        retriever["partition_router"] = {
            "type": "ListPartitionRouter",
            "cursor_field": "partition",
            "values": [str(p["partition"]) for p in partitions],
            "request_option": {"type": "RequestOption", "inject_into": "request_parameter",
                               "field_name": "partition"},
        }
        retriever["requester"]["request_parameters"]["partitions"] = str(len(partitions))
    return {
        "type": "DeclarativeStream",
        "name": name,
        "primary_key": ["id"],
        "schema_loader": {"type": "InlineSchemaLoader", "schema": json_schema()},
        "retriever": retriever,
    }


def manifest(job: dict[str, Any]) -> dict[str, Any]:
    streams = []
    if job.get("options", {}).get("partitions") == "native":
        grouped: dict[str, list[dict[str, Any]]] = {}
        for s in job["streams"]:
            grouped.setdefault(s["stream"], []).append(s)
        for server_stream, entries in grouped.items():
            parts = [e["params"] for e in entries if e["params"]]
            streams.append(stream_def(job, server_stream, server_stream, {}, parts or None))
    else:
        streams = [stream_def(job, s["name"], s["stream"], s["params"], None) for s in job["streams"]]
    spec = {
        "type": "Spec",
        "connection_specification": {
            "type": "object",
            "required": ["base_url", "token"],
            "properties": {"base_url": {"type": "string"}, "token": {"type": "string", "airbyte_secret": True}},
        },
    }
    out: dict[str, Any] = {
        "version": "7.0.0",
        "type": "DeclarativeSource",
        "check": {"type": "CheckStream", "stream_names": [streams[0]["name"]]},
        "streams": streams,
        "spec": spec,
    }
    workers = int(job.get("concurrency", 1))
    if workers > 1:
        out["concurrency_level"] = {"type": "ConcurrencyLevel", "default_concurrency": workers,
                                    "max_concurrency": workers}
    return out


def main() -> None:
    job = load_job()
    source_manifest = manifest(job)
    config = {"base_url": job["base_url"], "token": job["token"]}
    catalog = {
        "streams": [
            {
                "stream": {"name": s["name"], "json_schema": json_schema(), "supported_sync_modes": ["full_refresh"]},
                "sync_mode": "full_refresh",
                "destination_sync_mode": "overwrite",
            }
            for s in source_manifest["streams"]
        ]
    }
    config_path = os.path.join(job["workdir"], "airbyte_config.json")
    catalog_path = os.path.join(job["workdir"], "airbyte_catalog.json")
    with open(config_path, "w") as fh:
        json.dump(config, fh)
    with open(catalog_path, "w") as fh:
        json.dump(catalog, fh)

    counts: dict[str, int] = {}
    original = AirbyteEntrypoint.handle_record_counts

    def counting(message: Any, counter: Any) -> Any:
        if message.type.value == "RECORD":
            name = message.record.stream
            counts[name] = counts.get(name, 0) + 1
        return original(message, counter)

    AirbyteEntrypoint.handle_record_counts = staticmethod(counting)  # type: ignore[method-assign]
    with Timer() as timer:
        source = ConcurrentDeclarativeSource(
            catalog=ConcurrentDeclarativeSource.read_catalog(catalog_path),
            config=config,
            state=None,
            source_config=source_manifest,
        )
        launch(source, ["read", "--config", config_path, "--catalog", catalog_path])
    notes = ["output: Airbyte messages to /dev/null"]
    if int(job.get("concurrency", 1)) <= 1:
        notes.append("concurrency: the CDK's default of 2 workers")
    emit(
        "airbyte",
        timer,
        sum(counts.values()),
        streams=counts,
        notes=notes,
        versions={"airbyte-cdk": version_of("airbyte-cdk"), "requests": version_of("requests")},
    )


if __name__ == "__main__":
    main()
