"""A set of plugins as an object: :class:`Plugins`.

Each :class:`Plugins` holds its own ``pluggy.PluginManager("tapyard")``: the
built-in plugins first (:data:`tapyard.plugins.builtins.BUILTIN_PLUGINS`, one
module per capability, their implementations ``trylast``), then every entry
point of the group ``tapyard`` that its allow-list lets through. Loading is
lazy: nothing is imported until the set is first used. What the plugins
register is asked once per set (and again after a plugin is registered or
unregistered) and kept with its :class:`Ownership`: which plugin, from which
distribution, registered each connector, paginator, auth kind, destination and
secret backend.

Two sets share nothing, so two runs in one process may use different plugins;
:meth:`Plugins.with_flags` gives the same plugins under other flags (strict or
not). A run is handed its set (``tapyard.sync(..., plugins=...)``) and passes it
down in its :class:`tapyard.RunContext`.

Registration hooks are called through pluggy's hook caller, once per plugin
that implements them (``PluginManager.subset_hook_caller`` leaves the others
out, wrappers stay in), so an implementation may take any subset of a spec's
parameters and hook wrappers and call monitoring see every registration, as
they see every other hook call.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from tapyard import hookspecs
from tapyard.base import (
    PLUGIN_API_VERSION,
    ConnectorManifest,
    ConnectorNotFoundError,
    ManifestError,
    PluginError,
    did_you_mean,
    read_manifest,
)

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from tapyard.base import AuthStrategy, Connector, Paginator, Stream

__all__ = [
    "ENTRY_POINT_GROUP",
    "REPOSITORY_CONNECTORS",
    "Capability",
    "ManifestWarning",
    "Owner",
    "Ownership",
    "PluginInfo",
    "PluginWarning",
    "Plugins",
    "Registration",
    "describe_connector",
    "replay_manifest_warnings",
]

ENTRY_POINT_GROUP = "tapyard"

#: The connectors whose packages live in tapyard's own repository (``connectors/<name>``);
#: they are not on the public package index.
REPOSITORY_CONNECTORS = frozenset({"aws", "azure", "erp", "gcp", "salesforce", "sample", "stripe"})

#: What a registration hook registers.
Capability = Literal["connector", "paginator", "auth_strategy", "destination", "secret_backend"]

#: Each capability's registration hook, and how a ``register(...)`` call names what it registers.
_REGISTRATION_HOOKS: dict[Capability, tuple[str, Callable[..., str]]] = {
    "connector": ("tapyard_register_connectors", lambda connector: connector.name),
    "paginator": ("tapyard_register_paginators", lambda kind, cls: kind),
    "auth_strategy": ("tapyard_register_auth_strategies", lambda kind, cls: kind),
    "destination": ("tapyard_register_destinations", lambda scheme, factory: scheme),
    "secret_backend": ("tapyard_register_secret_backends", lambda scheme, factory: scheme),
}


class PluginWarning(UserWarning):
    """A plugin was skipped or looks incompatible; tapyard goes on without it."""


class ManifestWarning(PluginWarning):
    """A plugin's manifest could not be used; the plugin is imported to list it."""


@dataclass
class PluginInfo:
    """What tapyard knows about one loaded (or failed) entry-point plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    error: str | None = None
    requires_core: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Owner:
    """Who registered something: the plugin's name in its manager and, when it
    came from an installed package (or is built in), that distribution and version."""

    plugin: str
    distribution: str | None = None
    version: str | None = None

    @property
    def builtin(self) -> bool:
        return self.plugin.startswith("tapyard.builtins")

    def describe(self) -> str:
        """``tapyard-acme 2.3.4 (plugin 'acme')``, or ``plugin 'acme'`` for one registered in-process."""
        if self.distribution is None:
            return f"plugin {self.plugin!r}"
        version = f" {self.version}" if self.version else ""
        return f"{self.distribution}{version} (plugin {self.plugin!r})"

    def to_json(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "distribution": self.distribution, "version": self.version}


@dataclass(frozen=True)
class Registration:
    """One thing a plugin registered: its capability, its key (a connector's name,
    a paginator or auth kind, a URL scheme), the object, who registered it, and
    whom it replaced (earlier registrations of the same key, oldest first)."""

    capability: Capability
    key: str
    value: Any
    owner: Owner
    replaced: tuple[Owner, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "capability": self.capability,
            "key": self.key,
            **self.owner.to_json(),
            "replaced": [o.to_json() for o in self.replaced],
        }


@dataclass(frozen=True)
class Ownership:
    """Which plugin registered what, by capability and key, as ``tapyard connectors info``
    and the marketplace read it."""

    registrations: Mapping[Capability, Mapping[str, Registration]]

    def owner(self, capability: Capability, key: str) -> Owner | None:
        found = self.registrations.get(capability, {}).get(key)
        return found.owner if found is not None else None

    def of_distribution(self, distribution: str) -> dict[Capability, list[str]]:
        """What one distribution registered, by capability (keys sorted)."""
        return {
            capability: sorted(k for k, r in found.items() if r.owner.distribution == distribution)
            for capability, found in self.registrations.items()
            if any(r.owner.distribution == distribution for r in found.values())
        }

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        return {
            capability: [found[key].to_json() for key in sorted(found)]
            for capability, found in self.registrations.items()
        }


class _Manager(pluggy.PluginManager):
    """A plugin manager that knows the :class:`Plugins` it belongs to
    (so that ``RunContext(pm=...)`` finds the set behind a manager)."""

    tapyard_plugins: Plugins


def core_requirement(requires: list[str] | None) -> str | None:
    for req in requires or ():
        head = req.split(";")[0].strip()
        if head.startswith("tapyard") and not head.startswith(("tapyard-", "tapyard_")):
            return head[len("tapyard") :].strip() or None
    return None


def distribution_meta(ep: EntryPoint) -> dict[str, str | None]:
    """The distribution fields of ``ep``'s package, from one parse of its METADATA."""
    dist = ep.dist
    # Each read of Distribution.metadata parses the METADATA file again: once here.
    meta = dist.metadata if dist else None
    if meta is None:
        return {"distribution": None, "version": None, "requires_core": None, "license": None, "homepage": None}

    def first(name: str) -> str | None:
        # get_all: a missing field is None on the standard library's metadata but a
        # KeyError on the importlib_metadata backport's, which pytest may bring in.
        values = meta.get_all(name)
        return values[0] if values else None

    homepage = first("Home-page")
    for url in meta.get_all("Project-URL") or ():
        label, _, address = url.partition(",")
        if label.strip().lower() in ("homepage", "home", "source", "repository"):
            homepage = homepage or address.strip()
    return {
        "distribution": meta["Name"],
        "version": meta["Version"],
        "requires_core": core_requirement(meta.get_all("Requires-Dist")),
        "license": first("License-Expression") or first("License"),
        "homepage": homepage,
    }


def _info(ep: EntryPoint, meta: dict[str, str | None]) -> PluginInfo:
    return PluginInfo(
        name=ep.name, distribution=meta["distribution"], version=meta["version"], requires_core=meta["requires_core"]
    )


def _check_core_version(info: PluginInfo) -> None:
    if not info.requires_core:
        return
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    from tapyard.base import CORE_VERSION as __version__

    try:
        spec = SpecifierSet(info.requires_core)
    except InvalidSpecifier:
        return
    if __version__ not in spec:
        message = (
            f"plugin {info.name!r} ({info.distribution} {info.version}) supports tapyard"
            f"{info.requires_core}, but this is tapyard {__version__}; it may not work"
        )
        info.warnings.append(message)
        warnings.warn(message, PluginWarning, stacklevel=4)


class _Loaded:
    """The plugins of one set, shared by its views (:meth:`Plugins.with_flags`):
    the manager, what was learned loading each entry point, and a generation that
    moves on whenever a plugin is registered or unregistered."""

    def __init__(self, allow: frozenset[str] | None, entry_points: bool, builtins: tuple[str, ...]) -> None:
        self.lock = threading.RLock()
        self.allow = allow
        self.entry_points = entry_points
        self.builtins = builtins
        self.manager: _Manager | None = None
        #: the set these plugins were made for (views made by with_flags share them)
        self.home: Plugins | None = None
        self.infos: dict[str, PluginInfo] = {}
        self.generation = 0

    def found_entry_points(self) -> list[tuple[EntryPoint, dict[str, str | None]]]:
        """The ``tapyard`` entry points the allow-list lets through, with their distribution fields."""
        if not self.entry_points:
            return []
        return [
            (ep, distribution_meta(ep))
            for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
            if self.allow is None or ep.name in self.allow
        ]

    def build(self, owner: Plugins) -> _Manager:
        """The manager with the built-ins and the entry points registered (made once).

        A plugin that fails to import is recorded; a strict ``owner`` raises for it,
        any other warns and goes on.
        """
        with self.lock:
            if self.manager is not None:
                return self.manager
            from tapyard.plugins.builtins import builtin_plugins

            home = self.home or owner
            pm = _Manager("tapyard")
            pm.tapyard_plugins = home
            pm.add_hookspecs(hookspecs)
            for name, plugin in builtin_plugins(self.builtins, home):
                pm.register(plugin, name=name)
            failed: list[PluginInfo] = []
            for ep, meta in self.found_entry_points():
                if pm.has_plugin(ep.name) or ep.name in self.infos:
                    continue
                info = self.infos[ep.name] = _info(ep, meta)
                try:
                    pm.register(ep.load(), name=ep.name)
                except Exception as exc:
                    info.error = f"{type(exc).__name__}: {exc}"
                    failed.append(info)
                    if not owner.strict:
                        warnings.warn(
                            f"skipping plugin {ep.name!r}: it failed to load ({info.error})",
                            PluginWarning,
                            stacklevel=4,
                        )
                    continue
                _check_core_version(info)
            self.manager = pm
            return pm

    def failures(self) -> list[PluginInfo]:
        return [info for info in self.infos.values() if info.error is not None]


class Plugins:
    """One set of plugins: a pluggy manager with tapyard's hookspecs, the built-ins,
    the installed entry points an allow-list lets through, plugins registered at
    run time, and what they all registered.

    :param allow: entry-point names to load (None: every one; empty: none).
    :param strict: a plugin that fails to load or to register, or speaks another
        plugin API, is an error (:class:`~tapyard.PluginError`) instead of a warning.
    :param entry_points: False loads no entry point at all (only the built-ins and
        what is registered with :meth:`register`).
    :param builtins: the built-in plugin modules to register (default: all of
        :data:`~tapyard.plugins.builtins.BUILTIN_PLUGINS`).

    Safe to share between threads: loading and collecting take the set's lock;
    the collections handed out are copies.
    """

    def __init__(
        self,
        *,
        allow: Iterable[str] | None = None,
        strict: bool = False,
        entry_points: bool = True,
        builtins: Iterable[str] | None = None,
        _loaded: _Loaded | None = None,
    ) -> None:
        if _loaded is None:
            from tapyard.plugins.builtins import BUILTIN_PLUGINS

            _loaded = _Loaded(
                frozenset(allow) if allow is not None else None,
                entry_points,
                tuple(builtins) if builtins is not None else BUILTIN_PLUGINS,
            )
            _loaded.home = self
        self._loaded = _loaded
        self._strict = strict
        self._cache: dict[Capability, dict[str, Registration]] = {}
        self._cached_at = -1

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, *, strict: bool | None = None) -> Plugins:
        """A set as the user's environment asks: ``TAPYARD_LOAD_PLUGINS`` (a comma-separated
        allow-list; empty loads none) and ``TAPYARD_STRICT_PLUGINS=1``. ``strict`` overrides the latter."""
        import os

        env = os.environ if environ is None else environ
        raw = env.get("TAPYARD_LOAD_PLUGINS")
        allow = None if raw is None else {name.strip() for name in raw.split(",") if name.strip()}
        if strict is None:
            strict = env.get("TAPYARD_STRICT_PLUGINS", "") not in ("", "0", "false")
        return cls(allow=allow, strict=strict)

    def with_flags(self, *, strict: bool) -> Plugins:
        """The same plugins (one manager, registered plugins shared) under other flags."""
        if strict == self._strict:
            return self
        return Plugins(strict=strict, _loaded=self._loaded)

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded"
        return f"<Plugins {state}{' strict' if self._strict else ''}>"

    # -- the manager -------------------------------------------------------------------

    @property
    def strict(self) -> bool:
        return self._strict

    @property
    def loaded(self) -> bool:
        """Whether the plugins were imported already (listing may then ask them rather than the manifests)."""
        return self._loaded.manager is not None

    @property
    def pm(self) -> pluggy.PluginManager:
        """The pluggy manager of this set, built (plugins imported) on first use."""
        manager = self._loaded.manager or self._loaded.build(self)
        if self._strict:
            failed = self._loaded.failures()
            if failed:
                raise PluginError(f"plugin {failed[0].name!r} failed to load: {failed[0].error}")
        return manager

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def infos(self) -> list[PluginInfo]:
        """Every entry-point plugin seen, loaded or not, with its distribution and version."""
        _ = self.pm
        return list(self._loaded.infos.values())

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register a plugin object in this set (tests, notebooks, a worker's own plugins);
        returns its name. The collections are asked again on next use."""
        try:
            hash(plugin)
        except TypeError:
            raise PluginError(
                f"plugin {name or plugin!r} cannot be registered: it is not hashable "
                "(register a module, a class or an instance of a class that keeps object hashing)"
            ) from None
        with self._loaded.lock:
            registered = self.pm.register(plugin, name=name)
            self._loaded.generation += 1
        return registered

    def unregister(self, plugin: object | None = None, name: str | None = None) -> None:
        """Undo :meth:`register`."""
        with self._loaded.lock:
            self.pm.unregister(plugin, name=name)
            self._loaded.generation += 1

    # -- what the plugins registered --------------------------------------------------------

    def _owner(self, name: str) -> Owner:
        info = self._loaded.infos.get(name)
        if info is not None:
            return Owner(name, info.distribution, info.version)
        if name.startswith("tapyard.builtins"):
            from tapyard.base import CORE_VERSION

            return Owner(name, "tapyard", CORE_VERSION)
        return Owner(name)

    def _fail(self, message: str, exc: BaseException | None = None) -> None:
        if self._strict:
            raise PluginError(message) from exc
        warnings.warn(f"skipping {message}", PluginWarning, stacklevel=4)

    def _ask(self, capability: Capability) -> dict[str, Registration]:
        """Call ``capability``'s registration hook, one plugin at a time, through pluggy."""
        hook_name, key_of = _REGISTRATION_HOOKS[capability]
        pm = self.pm
        caller = getattr(pm.hook, hook_name)
        impls = caller.get_hookimpls()
        # pluggy keeps them in call order reversed: the built-ins (trylast) first, then
        # by registration; asked in this order, a later plugin's key replaces an earlier one's.
        owners = [impl for impl in impls if not (impl.wrapper or impl.hookwrapper)]
        found: dict[str, Registration] = {}
        for impl in owners:
            owner = self._owner(pm.get_name(impl.plugin) or "?")

            def register(*args: Any, _owner: Owner = owner) -> None:
                key = key_of(*args)
                previous = found.get(key)
                replaced: tuple[Owner, ...] = ()
                if previous is not None and previous.owner != _owner:
                    warnings.warn(
                        f"{hook_name}: {key!r} from plugin {_owner.plugin!r} replaces the one "
                        f"from {previous.owner.plugin!r}",
                        PluginWarning,
                        stacklevel=2,
                    )
                    replaced = (*previous.replaced, previous.owner)
                found[key] = Registration(capability, key, args[-1], _owner, replaced)

            alone = pm.subset_hook_caller(hook_name, [o.plugin for o in owners if o.plugin is not impl.plugin])
            try:
                alone(register=register)
            except Exception as exc:
                self._fail(f"plugin {owner.plugin!r} in {hook_name}: {type(exc).__name__}: {exc}", exc)
        return found

    def registrations(self, capability: Capability) -> dict[str, Registration]:
        """What the plugins registered for ``capability``, by key (asked once per change of plugins)."""
        with self._loaded.lock:
            if self._cached_at != self._loaded.generation:
                self._cache.clear()
                self._cached_at = self._loaded.generation
            found = self._cache.get(capability)
            if found is None:
                found = self._cache[capability] = self._ask(capability)
                if capability == "connector":
                    found = self._cache[capability] = self._accepted(found)
            return dict(found)

    def ownership(self) -> Ownership:
        """Which plugin registered each connector, paginator, auth kind, destination and secret backend."""
        return Ownership({capability: self.registrations(capability) for capability in _REGISTRATION_HOOKS})

    def _accepted(self, found: dict[str, Registration]) -> dict[str, Registration]:
        accepted = {}
        for name, registration in found.items():
            connector = registration.value
            if not self.speaks_our_api(name, connector.plugin_api):
                continue
            if registration.owner.distribution is not None and not registration.owner.builtin:
                connector.distribution = registration.owner.distribution
                connector.version = registration.owner.version or connector.version
            accepted[name] = registration
        return accepted

    def speaks_our_api(self, name: str, plugin_api: int) -> bool:
        """Whether a connector built for ``plugin_api`` can be used; warns (or raises, strict) if not."""
        if plugin_api == PLUGIN_API_VERSION:
            return True
        self._fail(
            f"connector {name!r} was built for plugin API {plugin_api}, "
            f"this core speaks {PLUGIN_API_VERSION}: upgrade the connector or tapyard"
        )
        return False

    def _values(self, capability: Capability) -> dict[str, Any]:
        return {key: r.value for key, r in self.registrations(capability).items()}

    def connectors(self) -> dict[str, Connector]:
        """Every registered connector by name, with ``version`` and ``distribution`` filled in."""
        return self._values("connector")

    def paginators(self) -> dict[str, type[Paginator]]:
        """Every registered paginator class by kind."""
        return self._values("paginator")

    def auth_strategies(self) -> dict[str, type[AuthStrategy]]:
        """Every registered auth strategy class by kind."""
        return self._values("auth_strategy")

    def destinations(self) -> dict[str, Callable[[str], Any]]:
        """Every registered destination factory by URL scheme."""
        return self._values("destination")

    def secret_backends(self) -> dict[str, Callable[..., Any]]:
        """Every registered secret backend factory by URL scheme."""
        return self._values("secret_backend")

    def get_connector(self, name: str) -> Connector:
        """The connector called ``name``, or a :class:`~tapyard.ConnectorNotFoundError` listing the known ones."""
        connectors = self.connectors()
        if name in connectors:
            return connectors[name]
        known = ", ".join(sorted(connectors)) or "none installed"
        hint = did_you_mean(name, connectors)
        if not hint and name in REPOSITORY_CONNECTORS:
            hint = f"it ships in tapyard's repository: pip install ./connectors/{name} from a checkout"
        elif not hint:
            hint = "install the package that provides it; tapyard connectors list shows what is installed"
        raise ConnectorNotFoundError(f"unknown connector {name!r} (installed: {known}); {hint}")

    def stream_paginator(self, connector: Connector, stream: Stream) -> Paginator:
        """The paginator the hooks choose for ``stream`` (``tapyard_stream_paginator``),
        or a :class:`~tapyard.PluginError` when a plugin answered something that is not one."""
        from tapyard.base import Paginator

        paginator = self.hook.tapyard_stream_paginator(connector=connector, stream=stream)
        if not isinstance(paginator, Paginator):
            raise PluginError(
                f"tapyard_stream_paginator returned {type(paginator).__name__} for stream {stream.name!r}"
            )
        return paginator

    # -- manifests -------------------------------------------------------------------------

    def connector_manifest_path(self, connector: Connector) -> str | None:
        """The installed manifest that describes ``connector`` (same name, same distribution), if any.

        Read without importing anything: the run-time permission checks use it
        (``tapyard.base.manifest.run_permissions``). A connector loaded from a
        source tree (the conformance kit) carries its manifest's path itself.
        """
        explicit = getattr(connector, "manifest_path", None)
        if isinstance(explicit, str):
            return explicit
        if connector.distribution is None:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            manifests, _ = self.installed_manifests()
        manifest = manifests.get(connector.name)
        if manifest is None or manifest.distribution != connector.distribution:
            return None
        return manifest.path

    def run_permissions(self, connector: Connector, config: Any, credentials: Any) -> Any:
        """Check a run of ``connector`` against its installed manifest before it starts:
        the host guard to hand the source (``RunContext.hosts``), or None when its
        manifest declares no hosts. See ``tapyard.base.manifest.run_permissions``."""
        from tapyard.base.manifest import run_permissions as check

        return check(connector.name, self.connector_manifest_path(connector), config, credentials)

    # -- listing without importing ----------------------------------------------------------

    def installed_manifests(self) -> tuple[dict[str, ConnectorManifest], list[str]]:
        """The manifests of the installed connectors by name, read without importing any,
        and the entry points whose package has no usable manifest.

        A malformed manifest is reported with a warning and its plugin counted as
        having none. A connector whose manifest declares another plugin API is
        skipped with the warning :meth:`connectors` gives.
        """
        manifests: dict[str, ConnectorManifest] = {}
        without: list[str] = []
        for ep, meta in self._loaded.found_entry_points():
            try:
                described = read_manifest(ep, meta)
            except ManifestError as exc:
                warnings.warn(
                    f"ignoring the manifest of plugin {ep.name!r}: {exc}; listing it by importing it",
                    ManifestWarning,
                    stacklevel=2,
                )
                described = None
            if described is None:
                without.append(ep.name)
                continue
            _check_core_version(_info(ep, meta))
            for manifest in described:
                if not self.speaks_our_api(manifest.name, manifest.plugin_api):
                    continue
                previous = manifests.get(manifest.name)
                if previous is not None and previous.plugin != manifest.plugin:
                    warnings.warn(
                        f"tapyard_register_connectors: {manifest.name!r} from plugin {manifest.plugin!r} "
                        f"replaces the one from {previous.plugin!r}",
                        PluginWarning,
                        stacklevel=2,
                    )
                manifests[manifest.name] = manifest
        return manifests, without

    def connector_listing(self) -> list[dict[str, Any]]:
        """Every installed connector, by name, as ``tapyard connectors list`` shows it.

        Read from the manifests, importing no connector, unless that would not be
        the whole truth: when the plugins of this set are already loaded (they may
        include plugins registered at run time), in strict mode (which promises to
        fail on a plugin that cannot be imported), and when a plugin has no usable
        manifest. Then every plugin is loaded and asked.
        """
        if not self.loaded and not self._strict:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                manifests, without = self.installed_manifests()
            replay_manifest_warnings(caught, everything=not without)
            if not without:
                return [manifests[name].describe() for name in sorted(manifests)]
        return [describe_connector(c) for _, c in sorted(self.connectors().items())]


def describe_connector(connector: Connector) -> dict[str, Any]:
    """A loaded connector as ``tapyard connectors list --json`` shows it."""
    return {
        "name": connector.name,
        "version": connector.version,
        "distribution": connector.distribution,
        "description": connector.description,
        "streams": connector.stream_names(),
        "auth_kinds": list(connector.auth_kinds),
    }


def replay_manifest_warnings(caught: list[warnings.WarningMessage], *, everything: bool) -> None:
    """Warn again what :meth:`Plugins.installed_manifests` warned (caught by the caller):
    everything, or, when the caller goes on to load the plugins (which warns the
    rest again), only what was wrong with the manifests themselves."""
    for warning in caught:
        if everything or issubclass(warning.category, ManifestWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
