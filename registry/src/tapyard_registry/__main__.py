"""``tapyard-registry serve``: run the registry on uvicorn (``tapyard registry serve`` runs this)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path


def _default_data_dir() -> Path:
    from tapyard_credentials import data_dir

    return data_dir() / "registry-server"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tapyard-registry", description="The tapyard marketplace server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Serve the registry's API, signed index and catalog.")
    serve.add_argument("--db", default=os.environ.get("TAPYARD_REGISTRY_DB"),
                       help="SQLAlchemy database URL (default: SQLite in the data directory); PostgreSQL: postgresql+psycopg://...")
    serve.add_argument("--data", type=Path, default=None, help="Data directory: artifacts and the registry's keys.")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--timestamp-hours", type=float, default=24.0,
                       help="How long a signed timestamp stays valid (clients refuse an older index).")
    serve.add_argument("--writes-per-minute", type=int, default=60, help="Writes allowed per token per minute.")
    serve.add_argument("--no-kit", action="store_true", help="Publish without running the conformance kit.")
    verify = commands.add_parser("verify-publisher", help="Mark a publisher verified (shown in the catalog), or --undo.")
    verify.add_argument("namespace")
    verify.add_argument("--db", default=os.environ.get("TAPYARD_REGISTRY_DB"))
    verify.add_argument("--data", type=Path, default=None)
    verify.add_argument("--undo", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "verify-publisher":
        return _verify_publisher(args.db, args.data or _default_data_dir(), args.namespace, not args.undo)
    if args.timestamp_hours <= 0:
        print("tapyard-registry: --timestamp-hours must be more than 0", file=sys.stderr)
        return 2
    import uvicorn

    from tapyard_registry import build, create_app

    try:
        registry = build(
            args.db, args.data or _default_data_dir(), kit=None if args.no_kit else "auto",
            timestamp_lifetime=timedelta(hours=args.timestamp_hours), writes_per_minute=args.writes_per_minute,
        )
    except Exception as exc:  # a bad URL or an unreachable database: one line, no traceback
        print(f"tapyard-registry: cannot open the registry: {str(exc).splitlines()[0][:300]}", file=sys.stderr)
        return 1
    print(f"tapyard registry on http://{args.host}:{args.port}/ (Ctrl-C stops it)", file=sys.stderr, flush=True)
    uvicorn.run(create_app(registry), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _verify_publisher(db: str | None, data: Path, namespace: str, verified: bool) -> int:
    """Set a publisher's verified mark: the registry operator's word that they checked who it is."""
    from sqlalchemy import update

    from tapyard_registry._db import open_engine, publishers

    engine = open_engine(db or f"sqlite:///{data / 'registry.db'}")
    with engine.begin() as connection:
        done = connection.execute(update(publishers).where(publishers.c.namespace == namespace).values(verified=verified))
    engine.dispose()
    if not done.rowcount:
        print(f"tapyard-registry: no publisher owns the namespace {namespace[:60]!r}", file=sys.stderr)
        return 1
    print(f"{namespace}: {'verified' if verified else 'not verified'} (running servers show it within 30 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
