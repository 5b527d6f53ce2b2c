"""The connector manifest as a contract: a validated model, its JSON Schema, and
the host guard that enforces its permissions at run time.

A connector package ships ``tapyard-manifest.toml`` beside its ``__init__.py``::

    plugin_api = 1
    publisher = "acme"                      # the publisher's namespace

    [[connector]]
    name = "acme"
    display_name = "Acme"
    description = "Acme widgets and gadgets"
    vendor = "Acme Corp"
    categories = ["commerce"]
    auth_kinds = ["bearer"]
    support_level = "community"
    streams = [
        { name = "widgets", incremental = "cursor", deletes = "none" },
        "gadgets",                          # a name alone: modes not declared
    ]

    [connector.permissions]
    hosts = ["api.acme.com", "{config.base_url}"]
    files = false
    environment = false
    credentials = ["bearer"]

The version and the licence come from the package metadata; ``license``,
``homepage`` and ``core`` (the supported core versions) may be repeated here
and must then agree with it (:func:`metadata_differences`).

Host patterns: ``api.acme.com`` (the scheme's default port, 443 or 80),
``api.acme.com:8443``, ``api.acme.com:*`` (any port), ``*.acme.com`` (any
subdomain, not ``acme.com`` itself), a URL (``https://api.acme.com``: its
host and port), and configuration placeholders (``{config.base_url}``, whose
value may be a URL or a host, or ``{config.account}.blob.core.windows.net``).
A placeholder whose value is empty allows nothing. ``*`` alone is refused: a
manifest that allows every host promises nothing.

The CLI's listing reads manifests with :mod:`tapyard.base._manifest`, which imports
no pydantic; this module is for validation, the JSON Schema, the conformance
kit and the run-time checks.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tapyard.base._exceptions import ConfigError, PermissionDeniedError
from tapyard.base._manifest import MANIFEST_FILE, PLUGIN_API_VERSION, ManifestError

__all__ = [
    "MANIFEST_FILE",
    "SUPPORT_LEVELS",
    "ConnectorSpec",
    "HostGuard",
    "Manifest",
    "Permissions",
    "StreamSpec",
    "load_manifest",
    "manifest_from_data",
    "manifest_json_schema",
    "metadata_differences",
    "parse_manifest_text",
]

#: Support levels, lowest first. ``certified`` needs every conformance check to
#: pass; ``community`` needs the safety checks (docs/authoring.md).
SUPPORT_LEVELS = ("none", "community", "certified")
SupportLevel = Literal["none", "community", "certified"]

_SLUG = r"^[a-z][a-z0-9_-]*$"
#: a registry namespace (the publisher)
NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_PLACEHOLDER = re.compile(r"\{(config|credentials)\.([A-Za-z_][A-Za-z0-9_]*)\}")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreamSpec(_Model):
    """A stream as the manifest declares it."""

    name: str = Field(min_length=1, description="The stream's name, as discovery reports it.")
    incremental: Literal["cursor", "none"] | None = Field(
        None, description="'cursor': reads only records past a saved cursor; 'none': every read is full."
    )
    deletes: Literal["vendor", "listing", "none"] | None = Field(
        None, description="How deletes at the source reach the destination (see tapyard.Stream.deletes)."
    )


class Permissions(_Model):
    """What the connector may do on the user's machine; the engine refuses anything else."""

    hosts: list[str] = Field(
        default_factory=list,
        description="Host patterns the connector may call: host, host:port, host:*, *.domain, a URL, "
        "or {config.FIELD} / {credentials.FIELD} placeholders filled from the run's configuration.",
    )
    files: bool = Field(False, description="Whether it reads local files (other than what the user names).")
    environment: bool = Field(False, description="Whether it reads environment variables.")
    credentials: list[str] | None = Field(
        None,
        description="Credential kinds it may be handed; default: its auth kinds (without 'none').",
    )

    @field_validator("hosts")
    @classmethod
    def _patterns(cls, hosts: list[str]) -> list[str]:
        for pattern in hosts:
            _check_pattern(pattern)
        return hosts


class ConnectorSpec(_Model):
    """One ``[[connector]]`` table."""

    name: str = Field(pattern=_SLUG, description="The connector's name: lowercase letters, digits, _.")
    display_name: str | None = Field(None, description="The name people read (default: name).")
    description: str = ""
    vendor: str | None = Field(None, description="Whose API it reads.")
    categories: list[str] = Field(default_factory=list)
    streams: list[StreamSpec | str] = Field(default_factory=list)
    auth_kinds: list[str] = Field(default_factory=lambda: ["none"], min_length=1)
    support_level: SupportLevel = Field("none", description="The level claimed; the kit checks it is earned.")
    license: str | None = Field(None, description="Must agree with the package metadata when given.")
    homepage: str | None = Field(None, description="Must agree with the package metadata when given.")
    core: str | None = Field(
        None, description="Supported core versions (a PEP 440 specifier); must agree with the dependency on tapyard."
    )
    permissions: Permissions | None = Field(
        None, description="What it may do; without this table nothing is enforced and the kit fails it."
    )

    @field_validator("auth_kinds", "categories")
    @classmethod
    def _non_empty(cls, values: list[str]) -> list[str]:
        if not all(isinstance(v, str) and v.strip() for v in values):
            raise ValueError("must be a list of non-empty strings")
        return values

    @field_validator("core")
    @classmethod
    def _specifier(cls, value: str | None) -> str | None:
        if value is not None:
            from packaging.specifiers import InvalidSpecifier, SpecifierSet

            try:
                SpecifierSet(value)
            except InvalidSpecifier:
                raise ValueError(f"{value!r} is not a version specifier such as '>=0.1,<0.2'") from None
        return value

    @model_validator(mode="after")
    def _unique_streams(self) -> ConnectorSpec:
        names = self.stream_names()
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"streams listed twice: {', '.join(doubled)}")
        return self

    def stream_names(self) -> list[str]:
        return [s if isinstance(s, str) else s.name for s in self.streams]

    def stream_specs(self) -> list[StreamSpec]:
        return [StreamSpec(name=s) if isinstance(s, str) else s for s in self.streams]

    def credential_kinds(self) -> list[str]:
        """The credential kinds it may be handed."""
        if self.permissions is not None and self.permissions.credentials is not None:
            return list(self.permissions.credentials)
        return [k for k in self.auth_kinds if k != "none"]


class Manifest(_Model):
    """A whole ``tapyard-manifest.toml``."""

    plugin_api: int = Field(description=f"The plugin API the connectors speak (this core: {PLUGIN_API_VERSION}).")
    publisher: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="The publisher's namespace in the registry (lowercase letters, digits and -; the "
        "conformance kit and the registry refuse any other form).",
    )
    connector: list[ConnectorSpec] = Field(min_length=1, description="One table per connector.")

    @field_validator("plugin_api", mode="before")
    @classmethod
    def _integer(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer (this core speaks {PLUGIN_API_VERSION})")
        return value

    def get(self, name: str) -> ConnectorSpec | None:
        return next((c for c in self.connector if c.name == name), None)


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``tapyard-manifest.toml`` (as ``tapyard connectors manifest-schema`` prints it)."""
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tapyard-manifest.toml"
    return schema


def parse_manifest_text(text: str, where: str) -> Manifest:
    """The manifest in ``text``, or a one-line :class:`ManifestError` naming ``where`` and the field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{where}: not valid TOML ({exc})") from None
    return manifest_from_data(data, where)


def manifest_from_data(data: Any, where: str) -> Manifest:
    """The manifest ``data`` (parsed TOML) describes, or a one-line :class:`ManifestError`."""
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        place = ".".join(str(p) for p in first["loc"]) or "(top)"
        message = str(first["msg"]).removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        shown = " ".join(f"{where}: {place[:100]}: {message}{more}".split())
        raise ManifestError(shown if len(shown) <= 400 else shown[:397] + "...") from None


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest file."""
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{target}: cannot be read ({exc.__class__.__name__})") from None
    return parse_manifest_text(text, str(target))


def metadata_differences(spec: ConnectorSpec, meta: Mapping[str, str | None]) -> list[str]:
    """Where the manifest's licence, homepage and core range disagree with the package metadata."""
    out = []
    for key, meta_key in (("license", "license"), ("homepage", "homepage"), ("core", "requires_core")):
        declared = getattr(spec, key)
        actual = meta.get(meta_key)
        if declared is None:
            continue
        if key == "core":
            from packaging.specifiers import InvalidSpecifier, SpecifierSet

            try:
                same = actual is not None and SpecifierSet(declared) == SpecifierSet(actual)
            except InvalidSpecifier:
                same = False
        else:
            same = declared == actual
        if not same:
            out.append(f"{key}: the manifest says {declared!r}, the package metadata {actual!r}")
    return out


# -- host patterns -------------------------------------------------------------


def _check_pattern(pattern: str) -> None:
    if not isinstance(pattern, str) or not pattern.strip():
        raise ValueError("a host pattern must be a non-empty string")
    if pattern.strip() in ("*", "*:*") or pattern.strip().startswith("*:"):
        raise ValueError(f"{pattern!r} allows every host; name the hosts (a *.domain wildcard is fine)")
    rendered = _PLACEHOLDER.sub("placeholder", pattern)
    if "{" in rendered or "}" in rendered:
        raise ValueError(f"{pattern!r}: the only placeholders are {{config.FIELD}} and {{credentials.FIELD}}")
    if not _PLACEHOLDER.fullmatch(pattern.strip()):
        _Rule.parse(rendered)


@dataclass(frozen=True)
class _Rule:
    """One concrete host pattern: a host (``*.`` prefix allowed) and a port (None: any)."""

    host: str
    port: int | None
    default_port: bool  # no port given: the request's scheme default

    @classmethod
    def parse(cls, text: str) -> _Rule:
        text = text.strip()
        if "://" in text:
            try:
                parts = urllib.parse.urlsplit(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a URL") from None
            host, port_text = parts.hostname or "", None
            try:
                port = parts.port
            except ValueError:
                raise ValueError(f"{text!r} has a port that is not a number") from None
            if not host:
                raise ValueError(f"{text!r} names no host")
            if port is None:
                port = _DEFAULT_PORTS.get(parts.scheme.lower())
            return cls(host.lower(), port, False)
        if text.startswith("["):  # [::1]:8080
            end = text.find("]")
            if end < 0:
                raise ValueError(f"{text!r} opens an IPv6 address with [ and never closes it")
            host, rest = text[1:end], text[end + 1 :]
            port_text = rest[1:] if rest.startswith(":") else None
        elif text.count(":") == 1:
            host, port_text = text.split(":")
        else:
            host, port_text = text, None
        host = host.lower().rstrip(".")
        if not host or "/" in host or " " in host:
            raise ValueError(f"{text!r} is not a host pattern (host, host:port, host:*, *.domain or a URL)")
        if "*" in host.lstrip("*.") or (host.startswith("*") and not host.startswith("*.")):
            raise ValueError(f"{text!r}: a wildcard may only open a pattern, as in *.example.com")
        if port_text is None:
            return cls(host, None, True)
        if port_text == "*":
            return cls(host, None, False)
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r} has a port that is not a number between 1 and 65535")
        return cls(host, int(port_text), False)

    def matches(self, host: str, port: int | None, scheme: str) -> bool:
        if self.host.startswith("*."):
            if not host.endswith(self.host[1:]) or host == self.host[2:]:
                return False
        elif host != _canonical(self.host):
            return False
        if self.default_port:
            return port is None or port == _DEFAULT_PORTS.get(scheme, port)
        return self.port is None or self.port == port

    def show(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.default_port:
            return host
        return f"{host}:{'*' if self.port is None else self.port}"


def _canonical(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _render(pattern: str, config: Any, credentials: Any) -> list[str]:
    """The concrete patterns of one declared pattern for a run (none when a placeholder is empty)."""
    from pydantic import SecretStr

    values: dict[str, Any] = {}
    for source, field in _PLACEHOLDER.findall(pattern):
        holder = config if source == "config" else credentials
        if source == "credentials" and (credentials is None or not hasattr(credentials, field)):
            return []  # no credentials, or a kind without that field: the pattern allows nothing
        if holder is None or not hasattr(holder, field):
            raise ConfigError(
                f"the manifest's host pattern {pattern!r} names {{{source}.{field}}}, "
                f"which is not a field of the connector's {'configuration' if source == 'config' else 'credentials'}"
            )
        value = getattr(holder, field)
        if isinstance(value, SecretStr):
            raise ConfigError(f"the manifest's host pattern {pattern!r} names a secret field; name a plain one")
        if value is None or value == "":
            return []
        values[f"{source}.{field}"] = value
    if not values:
        return [pattern]
    whole = _PLACEHOLDER.fullmatch(pattern.strip())
    if whole:
        value = values[f"{whole.group(1)}.{whole.group(2)}"]
        items = value if isinstance(value, list | tuple) else [value]
        # a path alone ("/oauth/token") is on a host declared otherwise
        return [str(v) for v in items if v and not str(v).startswith("/")]
    return [_PLACEHOLDER.sub(lambda m: str(values[f"{m.group(1)}.{m.group(2)}"]), pattern)]


class HostGuard:
    """The hosts one connector run may call, from its manifest and its configuration.

    :meth:`check` raises :class:`~tapyard.PermissionDeniedError` for any other
    host, before a request is sent. Build it with :meth:`for_run`.
    """

    def __init__(self, connector: str, manifest_path: str, rules: Sequence[_Rule]) -> None:
        self.connector = connector
        self.manifest_path = manifest_path
        self.rules = tuple(rules)

    @classmethod
    def for_run(
        cls, connector: str, manifest_path: str, permissions: Permissions, config: Any, credentials: Any = None
    ) -> HostGuard:
        """The guard for a run of ``connector`` with the validated ``config`` and ``credentials``.

        Raises :class:`~tapyard.ConfigError` when a placeholder names no config
        field, or when a config value does not make a host pattern.
        """
        rules = []
        for pattern in permissions.hosts:
            for concrete in _render(pattern, config, credentials):
                try:
                    rules.append(_Rule.parse(concrete))
                except ValueError as exc:
                    raise ConfigError(
                        f"the manifest's host pattern {pattern!r} does not make a host with this "
                        f"configuration ({exc}); fix the configuration value"
                    ) from None
        return cls(connector, manifest_path, rules)

    def allows(self, url: Any) -> bool:
        """Whether a request to ``url`` (``str`` or ``httpx.URL``) is allowed."""
        host, port, scheme = _split(url)
        return any(rule.matches(host, port, scheme) for rule in self.rules)

    def check(self, url: Any) -> None:
        """Raise :class:`~tapyard.PermissionDeniedError` unless ``url``'s host is declared."""
        if self.allows(url):
            return
        host, port, scheme = _split(url)
        shown = f"[{host}]" if ":" in host else host
        if port is not None and port != _DEFAULT_PORTS.get(scheme):
            shown = f"{shown}:{port}"
        shown = shown or "a URL without a host"
        declared = ", ".join(rule.show() for rule in self.rules) or "none"
        raise PermissionDeniedError(
            f"connector {self.connector!r} may not call {shown[:200]}: its manifest "
            f"({self.manifest_path}) declares hosts {declared[:300]}; add the host to "
            "[connector.permissions] hosts, or point the configuration at a declared host"
        )


def _split(url: Any) -> tuple[str, int | None, str]:
    text = str(url)
    if "://" not in text:
        text = "//" + text
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:  # "[" without "]": no host, so nothing declared matches it
        return "", None, ""
    try:
        port = parts.port
    except ValueError:
        port = None
    scheme = parts.scheme.lower()
    if port is None:
        port = _DEFAULT_PORTS.get(scheme)
    return _canonical((parts.hostname or "").lower().rstrip(".")), port, scheme


def run_permissions(connector: str, manifest_path: str | None, config: Any, credentials: Any) -> HostGuard | None:
    """Check a run against the connector's manifest before it starts, and return its host guard.

    ``manifest_path`` is the connector's installed manifest (``None``: the
    connector has none, as a plugin registered in a test: nothing is enforced,
    and the conformance kit fails it). Raises
    :class:`~tapyard.PermissionDeniedError` when ``credentials`` are of a kind
    the manifest does not ask for, :class:`ManifestError` when the manifest is
    not valid. Returns ``None`` when the manifest has no permissions table.
    """
    if manifest_path is None:
        return None
    spec = load_manifest(manifest_path).get(connector)
    if spec is None:
        raise ManifestError(f"{manifest_path}: no [[connector]] named {connector!r}")
    kind = getattr(credentials, "kind", None) if credentials is not None else None
    if isinstance(kind, str) and kind not in spec.credential_kinds():
        asked = ", ".join(spec.credential_kinds()) or "none"
        raise PermissionDeniedError(
            f"connector {connector!r} was handed {kind!r} credentials, but its manifest ({manifest_path}) "
            f"asks for {asked}; pass credentials of a kind it declares"
        )
    if spec.permissions is None:
        return None
    return HostGuard.for_run(connector, manifest_path, spec.permissions, config, credentials)
