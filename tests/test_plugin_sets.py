"""Plugin sets as objects: two runs in one process, each with its own plugins and
flags; registration through pluggy's hook caller; who registered what."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import tapyard
import tapyard.testing
from tapyard.http import MemoryLimiterStore
from tapyard.plugins import Plugins, PluginWarning
from tapyard_sample import SampleConfig

# -- two syncs at once ------------------------------------------------------------------


class _Probe(tapyard.Connector):
    """The sample connector under another name, keeping the run context it was opened with."""

    def __init__(self, name: str) -> None:
        self.inner = tapyard.get_connector("sample")
        self.name = name
        self.config_model = self.inner.config_model
        self.contexts: list[tapyard.RunContext] = []

    def streams(self, config: BaseModel) -> list[tapyard.Stream]:
        return self.inner.streams(config)

    def open(self, config: BaseModel, context: tapyard.RunContext) -> Any:
        self.contexts.append(context)
        return self.inner.open(config, context)


class _SetPlugin:
    """What one set adds: a connector, a destination scheme of its own, a cursor
    paginator that counts the pages it walks, and a record mapping that stamps
    the set's name (waiting, on its first page, until the other set's run is on
    its first page too, so that the two runs overlap)."""

    def __init__(self, label: str, meet: threading.Barrier) -> None:
        self.label = label
        self.meet = meet
        self.met = False
        self.lock = threading.Lock()
        self.connector = _Probe("probe")
        self.threads: set[str] = set()
        self.pages = 0
        plugin = self

        class Counting(tapyard.CursorPaginator):
            def next(self, *args: Any) -> Any:
                plugin.pages += 1
                return super().next(*args)

        self.paginator = Counting

    @tapyard.hookimpl
    def tapyard_register_connectors(self, register: Callable[..., None]) -> None:
        register(self.connector)

    @tapyard.hookimpl
    def tapyard_register_paginators(self, register: Callable[..., None]) -> None:
        register("cursor", self.paginator)

    @tapyard.hookimpl
    def tapyard_register_destinations(self, register: Callable[..., None]) -> None:
        register(f"set{self.label.lower()}", lambda url: tapyard.open_destination("sqlite" + url[4:]))

    @tapyard.hookimpl
    def tapyard_map_records(self, connector: Any, stream: Any, records: list[dict[str, Any]]) -> Any:
        with self.lock:
            first, self.met = not self.met, True
        if first:
            self.meet.wait(timeout=30)
        self.threads.add(threading.current_thread().name)
        if stream.name == "customers":
            for record in records:
                record["name"] = f"{self.label}:{record['name']}"
        return None


class _BrokenRegistration:
    @tapyard.hookimpl
    def tapyard_register_paginators(self, register: Callable[..., None]) -> None:
        raise RuntimeError("this plugin is broken")


class _RecordingStore(MemoryLimiterStore):
    """An in-process limiter store that keeps the keys it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    def limiter(self, key: str, settings: Any, *, scope: Any = "credential") -> Any:
        self.keys.append(key)
        return super().limiter(key, settings, scope=scope)


def _names(url: str) -> set[str]:
    return {row["name"].split(":")[0] for row in tapyard.testing.landed_rows(url, "customers").values()}


def test_two_syncs_in_threads_each_see_only_their_own_plugins_and_flags(tmp_path: Path) -> None:
    meet = threading.Barrier(2)
    plugin_a, plugin_b = _SetPlugin("A", meet), _SetPlugin("B", meet)
    set_a = Plugins(allow={"sample"}, strict=True)
    set_a.register(plugin_a, "set-a")
    set_b = Plugins(allow={"sample"}, strict=False)
    set_b.register(plugin_b, "set-b")
    set_b.register(_BrokenRegistration(), "broken-b")
    config = SampleConfig(records_per_stream=120, page_size=20)
    results: dict[str, Any] = {}
    stores = {"A": _RecordingStore(), "B": _RecordingStore()}

    def run(label: str, plugins: Plugins) -> None:
        try:
            results[label] = tapyard.sync(
                "probe",
                config,
                to=f"set{label.lower()}:///{tmp_path / label}.db",
                plugins=plugins,
                concurrency=2,
                limiters=stores[label],
            )
        except BaseException as exc:  # handed to the test thread
            results[label] = exc

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=run, args=(label, s)) for label, s in (("A", set_a), ("B", set_b))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert not meet.broken, "the two runs did not overlap"
    for label in "AB":
        assert isinstance(results[label], tapyard.SyncResult) and results[label].ok, results[label]
        assert results[label].records == 360

    # each run's records went through its own set's mapping only
    assert _names(f"sqlite:///{tmp_path / 'A'}.db") == {"A"}
    assert _names(f"sqlite:///{tmp_path / 'B'}.db") == {"B"}
    # each run walked its pages with its own set's paginator
    assert plugin_a.pages > 0 and plugin_b.pages > 0
    # each run was handed its own set, with its own flags
    (context_a,), (context_b,) = plugin_a.connector.contexts, plugin_b.connector.contexts
    assert context_a.plugins is set_a and context_a.plugins.strict
    assert context_b.plugins is set_b and not context_b.plugins.strict
    # and its own limiter store, which paced its requests
    assert context_a.limiters is stores["A"] and context_b.limiters is stores["B"]
    assert stores["A"].keys and stores["B"].keys
    # the lax set skipped its broken plugin with a warning; the strict one never saw it
    said = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    skipped = [m for m in said if m.startswith("skipping")]
    assert skipped and all("plugin 'broken-b' in tapyard_register_paginators" in m for m in skipped), said
    # the destination scheme of one set is unknown to the other, and to the process default
    with pytest.raises(tapyard.DestinationError, match="unsupported destination"):
        tapyard.open_destination(f"setb:///{tmp_path / 'x'}.db", plugins=set_a)
    assert "seta" not in tapyard.collect_destinations() and "setb" not in tapyard.collect_destinations()
    assert tapyard.collect_paginators()["cursor"] is tapyard.CursorPaginator

    # the strict flag is the strict set's own: the same broken plugin is an error there
    set_a.register(_BrokenRegistration(), "broken-a")
    with pytest.raises(tapyard.PluginError, match="broken-a"), warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        tapyard.sync("probe", config, to=f"seta:///{tmp_path / 'A2'}.db", plugins=set_a)


def test_with_flags_shares_the_plugins_not_the_flags() -> None:
    lax = Plugins(allow=set())
    strict = lax.with_flags(strict=True)
    lax.register(_BrokenRegistration(), "broken")
    with pytest.warns(PluginWarning, match="broken"):
        assert "cursor" in lax.paginators()
    with pytest.raises(tapyard.PluginError, match="plugin 'broken' in tapyard_register_paginators"):
        strict.paginators()
    assert strict.pm is lax.pm


# -- registration through pluggy's hook caller ----------------------------------------------


def test_registration_hooks_go_through_pluggy() -> None:
    seen: list[tuple[str, list[str]]] = []
    order: list[str] = []

    class Takes:
        """A registration hook with the spec's parameter, a wrapper around every
        registration call, and one implementation that takes none of the parameters
        (pluggy's rule: an implementation takes any subset of them)."""

        @tapyard.hookimpl(wrapper=True)
        def tapyard_register_paginators(self) -> Iterator[None]:
            order.append("wrapper")
            return (yield)

    class Nothing:
        @tapyard.hookimpl
        def tapyard_register_paginators(self) -> None:
            order.append("no parameters")

    class Mine(tapyard.CursorPaginator):
        pass

    class Registers:
        @tapyard.hookimpl
        def tapyard_register_paginators(self, register: Callable[..., None]) -> None:
            order.append("register")
            register("mine", Mine)

    plugins = Plugins(entry_points=False)
    pm = plugins.pm
    undo = pm.add_hookcall_monitoring(
        lambda name, impls, kwargs: seen.append((name, [pm.get_name(i.plugin) or "" for i in impls])),
        lambda outcome, name, impls, kwargs: None,
    )
    try:
        plugins.register(Takes(), "wraps")
        plugins.register(Nothing(), "nothing")
        plugins.register(Registers(), "registers")
        with warnings.catch_warnings():
            warnings.simplefilter("error", PluginWarning)  # no plugin is skipped
            paginators = plugins.paginators()
    finally:
        undo()
    assert paginators["mine"] is Mine
    assert "no parameters" in order and "register" in order
    calls = [impls for name, impls in seen if name == "tapyard_register_paginators"]
    # one call per implementing plugin, each with the wrapper around it
    assert [impls[0] for impls in calls] == ["tapyard.builtins.paginators", "nothing", "registers"], calls
    assert all("wraps" in impls for impls in calls)
    assert order.count("wrapper") == len(calls)


# -- who registered what ----------------------------------------------------------------


def test_ownership_names_the_plugin_and_distribution_of_each_registration(register_plugin: Any) -> None:
    class Mine(tapyard.CursorPaginator):
        pass

    class Plugin:
        @tapyard.hookimpl
        def tapyard_register_paginators(self, register: Callable[..., None]) -> None:
            register("cursor", Mine)

    register_plugin(Plugin(), "mine")
    with pytest.warns(PluginWarning, match="replaces"):
        ownership = tapyard.plugins.default_plugins().ownership()
    sample = ownership.owner("connector", "sample")
    assert sample is not None and sample.plugin == "sample" and sample.distribution == "tapyard-sample"
    builtin = ownership.owner("auth_strategy", "api_key")
    assert builtin is not None and builtin.builtin and builtin.distribution == "tapyard"
    cursor = ownership.registrations["paginator"]["cursor"]
    assert cursor.owner.plugin == "mine" and cursor.owner.distribution is None
    assert [o.plugin for o in cursor.replaced] == ["tapyard.builtins.paginators"]
    assert ownership.of_distribution("tapyard-sample") == {"connector": ["sample"]}
    listed = ownership.to_json()
    assert {"capability": "destination", "key": "sqlite", "plugin": "tapyard.builtins.destinations",
            "distribution": "tapyard", "version": tapyard.__version__, "replaced": []} in listed["destination"]


def test_connectors_info_says_who_registered_the_connector_and_its_auth_kinds() -> None:
    import json

    from tapyard.testing import run_cli

    done = run_cli("connectors", "info", "sample", "--json")
    assert done.exit_code == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["registered_by"] == {"plugin": "sample", "distribution": "tapyard-sample",
                                     "version": info["version"]}
    assert info["auth_strategies"]["api_key"]["distribution"] == "tapyard"
    done = run_cli("connectors", "info", "sample")
    assert "registered by tapyard-sample" in done.stdout, done.stdout


def test_builtins_are_one_plugin_per_capability() -> None:
    from tapyard.plugins.builtins import BUILTIN_PLUGINS

    pm = tapyard.get_plugin_manager()
    for name in BUILTIN_PLUGINS:
        assert pm.has_plugin(f"tapyard.builtins.{name}"), name
    ownership = Plugins(entry_points=False).ownership()
    owners = {capability: {r.owner.plugin for r in found.values()} for capability, found in ownership.registrations.items()}
    assert owners == {
        "connector": set(),
        "paginator": {"tapyard.builtins.paginators"},
        "auth_strategy": {"tapyard.builtins.auth"},
        "destination": {"tapyard.builtins.destinations"},
        "secret_backend": {"tapyard.builtins.secret_backends"},
    }
