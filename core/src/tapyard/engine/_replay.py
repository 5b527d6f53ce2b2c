"""Replaying dead letters: records kept aside because they did not fit, validated
again against each stream's schema as it is now, and written.

A sync dead-letters a record that fails validation or that its destination
cannot hold, keeps the stream's cursor where it was (unless told to skip), and
goes on. Once the schema is fixed (a new connector version, a looser type), a
replay writes those records from what was kept, without asking the vendor
again, and marks their dead letters replayed. A record that still does not fit
stays a dead letter, with its first reason.

Writing the records and marking them are two transactions: a replay killed in
between writes the same records again next time, which the upserts absorb.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from tapyard.base import Connector, PageValidator, PluginError, columns_of, decode_json
from tapyard.destinations import (
    Batch,
    Destination,
    StoredDeadLetter,
    default_destination_url,
    open_destination,
)

if TYPE_CHECKING:
    from tapyard.plugins import Plugins

__all__ = ["ReplayResult", "replay_dead_letters"]


@dataclass
class ReplayResult:
    """What a replay did for one stream."""

    stream: str
    replayed: int = 0
    still_dead: int = 0
    #: why records still fail (distinct reasons, at most five)
    reasons: list[str] = field(default_factory=list)

    def _failed(self, reason: str) -> None:
        self.still_dead += 1
        if reason not in self.reasons and len(self.reasons) < 5:
            self.reasons.append(reason)


def replay_dead_letters(
    connector: str | Connector,
    config: Mapping[str, Any] | BaseModel | None = None,
    *,
    to: str | Destination | None = None,
    streams: Sequence[str] | None = None,
    state_key: str | None = None,
    plugins: Plugins | None = None,
) -> list[ReplayResult]:
    """Validate the dead letters of ``connector`` kept in ``to`` again and write those that fit.

    :param connector: a connector name or instance: its streams' schemas (through
        the ``tapyard_stream_schema`` hook) judge the records.
    :param config: the connector's configuration, which may decide its streams.
    :param to: the destination the sync wrote to (default: ``tapyard.db`` in the data directory).
    :param streams: only these streams' dead letters (default: all).
    :param state_key: the key the sync saved its state under (default: the connector name).
    :param plugins: the plugin set to use (default: the process default set).
    """
    from tapyard.plugins import default_plugins
    from tapyard.sources import streams_of

    pm = plugins if plugins is not None else default_plugins()
    conn = pm.get_connector(connector) if isinstance(connector, str) else connector
    cfg = config if isinstance(config, BaseModel) else conn.parse_config(config or {})
    owns = not isinstance(to, Destination)
    destination = to if isinstance(to, Destination) else open_destination(to or default_destination_url(), pm)
    try:
        letters = destination.dead_letters(state_key or conn.name, streams)
        by_stream: dict[str, list[StoredDeadLetter]] = {}
        for letter in letters:
            by_stream.setdefault(letter.stream, []).append(letter)
        known = {s.name: s for s in streams_of(conn, cfg, pm)}
        results = []
        for name, group in by_stream.items():
            result = ReplayResult(name)
            results.append(result)
            stream = known.get(name)
            if stream is None:
                for _ in group:
                    result._failed(f"connector {conn.name!r} has no stream {name!r} any more")
                continue
            model = pm.hook.tapyard_stream_schema(connector=conn, stream=stream)
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise PluginError(f"tapyard_stream_schema gave no pydantic model for {name!r}")
            validator = PageValidator(model, stream.primary_key)
            destination.prepare(stream, columns_of(model))
            items: list[BaseModel] = []
            ids: dict[int, int] = {}
            for letter in group:
                try:
                    raw = decode_json(letter.raw, exact=True)
                except ValueError:
                    result._failed("the kept payload is not JSON (it was cut or could not be encoded)")
                    continue
                valid, dead = validator.validate([raw])
                if dead:
                    result._failed(dead[0].error)
                    continue
                items.extend(valid)
                ids[id(valid[0])] = letter.id
            if not items:
                continue
            batch = Batch(name, items=items, pages=0)
            destination.write(state_key or conn.name, [batch])
            written = batch.items or []
            for refused in batch.dead:
                result._failed(refused.error)
            destination.mark_replayed([ids[id(item)] for item in written])
            result.replayed += len(written)
        return results
    finally:
        if owns:
            destination.close()
