"""``tapyard connectors new NAME``: a complete connector package that passes its own
tests and the conformance kit as soon as it is written.

The package holds a pyproject with the entry point and the supported core
range, the manifest (with its permissions), a declarative REST stream or an SDK
stream, config and credential models, a README, a stand-in server for the
vendor API, tests (replayed from a cassette, and live against the stand-in),
the cassette itself (recorded here, against the stand-in, through the real
sync engine), the conformance settings and a CI workflow.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from string import Template

from tapyard.base import ConfigError

__all__ = ["AUTH_KINDS", "KINDS", "PAGINATORS", "scaffold"]

KINDS = ("rest", "sdk")
AUTH_KINDS = ("bearer", "api_key", "basic", "none")
PAGINATORS = ("cursor", "page_number", "offset", "next_url")

_PAGINATOR_SPEC = {
    "cursor": '{"kind": "cursor", "page_size": "{config.page_size}"}',
    "page_number": '{"kind": "page_number", "page_size": "{config.page_size}"}',
    "offset": '{"kind": "offset", "page_size": "{config.page_size}"}',
    "next_url": '{"kind": "next_url", "next_path": "next"}',
}
_AUTH_CHECK = {
    "bearer": 'self.headers.get("Authorization", "").startswith("Bearer ")',
    "api_key": 'bool(self.headers.get("X-API-Key"))',
    "basic": 'self.headers.get("Authorization", "").startswith("Basic ")',
    "none": "True",
}
_CREDENTIAL_HELP = {
    "bearer": "a bearer token (`token`)",
    "api_key": "an API key sent as `X-API-Key` (`api_key`)",
    "basic": "a user name and password (`username`, `password`)",
    "none": "nothing",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _core_range() -> str:
    """The core versions a new package supports: this minor series (0.x), or this major one."""
    from tapyard.base import CORE_VERSION as __version__

    major, minor = ([int(p) for p in re.findall(r"\d+", __version__)[:2]] + [0, 0])[:2]
    return f">={major}.{minor},<{major + 1}" if major >= 1 else f">=0.{minor},<0.{minor + 1}"


def scaffold(
    name: str,
    directory: Path,
    *,
    kind: str = "rest",
    auth: str = "bearer",
    paginator: str = "cursor",
    publisher: str | None = None,
    record: bool = True,
) -> list[Path]:
    """Write the package for connector ``name`` into ``directory`` and record its cassette.

    Returns the files written. Raises :class:`~tapyard.ConfigError` (one line)
    for a bad name or option, or a directory that is not empty.
    """
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", name):
        raise ConfigError(f"{name[:60]!r} is not a connector name: use lowercase letters, digits and _, starting with a letter")
    for value, allowed, option in ((kind, KINDS, "--kind"), (auth, AUTH_KINDS, "--auth"), (paginator, PAGINATORS, "--paginator")):
        if value not in allowed:
            raise ConfigError(f"{option} {value[:40]!r} is not one of {', '.join(allowed)}")
    if kind == "sdk" and paginator != "cursor":
        raise ConfigError("--paginator applies to --kind rest; an SDK stream pages in its own code")
    namespace = publisher or name.replace("_", "-")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", namespace):
        raise ConfigError(f"--publisher {namespace[:40]!r} is not a namespace: lowercase letters, digits and -")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigError(f"{directory} exists and is not empty; choose another --dir")
    port = _free_port()
    package = f"tapyard_{name}"
    title = name.replace("_", " ").title()
    values = {
        "name": name,
        "package": package,
        "title": title,
        "cls": title.replace(" ", ""),
        "dist": f"tapyard-{name.replace('_', '-')}",
        "core": _core_range(),
        "publisher": namespace,
        "auth": auth,
        "auth_kinds": f'["{auth}"]',
        "credential_kinds": "[]" if auth == "none" else f'["{auth}"]',
        "paginator": _PAGINATOR_SPEC[paginator],
        "paginator_kind": paginator,
        "auth_check": _AUTH_CHECK[auth],
        "credential_help": _CREDENTIAL_HELP[auth],
        "port": str(port),
    }
    from tapyard.marketplace import _templates as t

    files = {
        "pyproject.toml": t.PYPROJECT,
        "README.md": t.README,
        ".gitignore": t.GITIGNORE,
        ".github/workflows/ci.yml": t.CI,
        f"src/{package}/__init__.py": t.REST_INIT if kind == "rest" else t.SDK_INIT,
        f"src/{package}/py.typed": "",
        f"src/{package}/tapyard-manifest.toml": t.MANIFEST,
        "tests/stand_in.py": t.STAND_IN,
        f"tests/test_{name}.py": t.TESTS,
        "tests/cassettes/README.md": t.CASSETTES_README,
    }
    written = []
    for relative, template in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(values), encoding="utf-8")
        written.append(path)
    if record:
        written.append(_record(directory, name, package))
    return written


def _record(directory: Path, name: str, package: str) -> Path:
    """Record the package's cassette against its stand-in, through the real sync engine,
    with the package imported from its source tree (it is not installed yet)."""
    import importlib
    import sys

    from tapyard.marketplace._replay import isolated
    from tapyard.marketplace._target import resolve_target

    target = resolve_target(directory)
    with isolated(target):
        sys.path.insert(0, str(directory / "tests"))
        try:
            from tapyard.plugins import register_plugin

            register_plugin(importlib.import_module(package), name=name)
            stand_in = importlib.import_module("stand_in")
            cassette = Path(stand_in.record(directory / "tests" / "cassettes" / f"{name}.yaml"))
        finally:
            sys.path.remove(str(directory / "tests"))
            for module in [m for m in sys.modules if m in ("stand_in", package) or m.startswith(package + ".")]:
                del sys.modules[module]
    return cassette
