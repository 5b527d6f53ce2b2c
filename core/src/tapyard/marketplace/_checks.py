"""The conformance kit's checks of one connector (:class:`Kit`); :mod:`tapyard.marketplace.kit`
runs them and holds the report they fill."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tapyard.base import ConfigError, ManifestError, TapyardError
from tapyard.marketplace._replay import (
    RATE_LIMITED,
    UNAVAILABLE,
    Injector,
    cassette_lacks,
    first_gets,
    refusal,
    replay,
    table_rows,
)
from tapyard.marketplace._report import (
    CHECKS,
    FAILED,
    PASSED,
    SKIPPED,
    WEIGHTS,
    CheckResult,
    KitReport,
    one_line,
)
from tapyard.marketplace._target import Target

__all__ = ["Kit"]

class Kit:
    """The checks of one connector of one target."""

    def __init__(self, target: Target, name: str, manifest_path: Path | None, scratch: Path) -> None:
        self.target = target
        self.name = name
        self.manifest_path = manifest_path
        self.scratch = scratch
        self.report = KitReport(
            connector=name, target=target.given, distribution=target.distribution, version=target.version
        )
        self.settings = dict(target.conformance.get(name) or {})
        self.connector: Any = None
        self.spec: Any = None
        self.config: Any = None
        self.credentials: Any = None
        self.streams: list[Any] = []
        self.full: Any = None
        self.pages: dict[str, int] = {}
        self.typed = 0.0
        self.cassette: Path | None = None
        #: requests the cassette could not answer in the last read
        self.misses: list[str] = []

    # each check records its result through these
    def _result(self, check_id: str, status: str, message: str = "", fix: str = "") -> None:
        title, safety = CHECKS[check_id]
        self.report.checks.append(
            CheckResult(check_id, title, status, one_line(message), one_line(fix), safety)
        )

    def passed(self, check_id: str, message: str = "") -> None:
        self._result(check_id, PASSED, message)

    def failed(self, check_id: str, message: str, fix: str) -> None:
        self._result(check_id, FAILED, message, fix)

    def skipped(self, check_id: str, message: str) -> None:
        self._result(check_id, SKIPPED, message)

    def run(self) -> KitReport:
        """Every check, in order; a check whose step crashed fails with what it raised."""
        steps: list[tuple[Callable[[], None], tuple[str, ...]]] = [
            (self.check_manifest, ("manifest.valid", "manifest.permissions")),
            (self.check_matches_code, ("manifest.matches_code",)),
            (self.check_config, ("config.invalid_rejected",)),
            (self.check_cassettes, ("cassettes.present", "cassettes.secrets", "hosts.declared")),
            (self.check_schemas, ("streams.schemas",)),
            (self.check_full_read, ("read.pagination_ends", "read.records_validate")),
            (self.check_two_reads, ("read.two_full_reads",)),
            (self.check_incremental, ("read.incremental",)),
            (self.check_resume, ("read.resume",)),
            (self.check_retries, ("read.retries",)),
            (self.check_wrong_credentials, ("auth.wrong_credentials",)),
            (self.check_docs, ("docs.readme",)),
        ]
        for step, owned in steps:
            try:
                step()
            except Exception as exc:  # the connector's failure, on the checks the step had not recorded
                done = {c.id for c in self.report.checks}
                for check_id in owned:
                    if check_id not in done:
                        self.failed(
                            check_id,
                            f"the check could not run: {type(exc).__name__}: {exc}",
                            "run the connector's own tests; fix the error they show",
                        )
        self.report.checks.sort(key=lambda c: list(CHECKS).index(c.id))
        self.score()
        return self.report

    # -- manifest ---------------------------------------------------------------------

    def check_manifest(self) -> None:
        from tapyard.base.manifest import NAMESPACE, load_manifest, metadata_differences

        if self.manifest_path is None:
            self.failed(
                "manifest.valid",
                f"no tapyard-manifest.toml names connector {self.name!r}",
                "add src/<package>/tapyard-manifest.toml (tapyard connectors new writes one; "
                "tapyard connectors manifest-schema prints its schema)",
            )
        else:
            try:
                manifest = load_manifest(self.manifest_path)
            except ManifestError as exc:
                self.failed("manifest.valid", str(exc), "fix the field it names (tapyard connectors manifest-schema)")
            else:
                self.spec = manifest.get(self.name)
                differences = metadata_differences(self.spec, self.target.meta()) if self.spec else []
                if manifest.publisher is None or not NAMESPACE.match(manifest.publisher):
                    differences.insert(0, f"publisher {manifest.publisher!r} is not a registry namespace "
                                       "(lowercase letters, digits and -)")
                if self.spec is None:
                    self.failed(
                        "manifest.valid",
                        f"{self.manifest_path} has no [[connector]] named {self.name!r}",
                        "add a [[connector]] table for it",
                    )
                elif differences:
                    self.failed(
                        "manifest.valid",
                        "; ".join(differences),
                        "set publisher to your namespace; make the manifest agree with pyproject.toml, or "
                        "leave the field out of the manifest",
                    )
                else:
                    self.passed("manifest.valid", f"{self.manifest_path.name} is valid")
                if self.spec is not None:
                    self.report.claimed_level = self.spec.support_level
        if self.spec is None:
            self.skipped("manifest.permissions", "no valid manifest to read permissions from")
        elif self.spec.permissions is None:
            self.failed(
                "manifest.permissions",
                "the manifest has no [connector.permissions] table, so nothing it does is checked",
                "add [connector.permissions] with hosts = [...] (patterns, {config.FIELD} placeholders), "
                "files, environment and credentials",
            )
        elif not self.spec.permissions.hosts:
            self.failed(
                "manifest.permissions",
                "[connector.permissions] hosts is empty: every request would be refused",
                "list the hosts the connector calls",
            )
        else:
            self.passed("manifest.permissions", f"{len(self.spec.permissions.hosts)} host pattern(s) declared")

    def _load_connector(self) -> Any:
        from tapyard.plugins import collect_connectors, register_plugin

        if self.connector is not None:
            return self.connector
        import importlib

        for ep_name, value in self.target.entry_points.items():
            module = importlib.import_module(value.split(":")[0])
            plugin = getattr(module, value.split(":")[1]) if ":" in value else module
            from tapyard.plugins import get_plugin_manager

            if not get_plugin_manager().is_registered(plugin):
                register_plugin(plugin, name=ep_name)
        found = collect_connectors().get(self.name)
        if found is None:
            raise ConfigError(f"no plugin of {self.target.given} registers a connector named {self.name!r}")
        found.distribution = self.target.distribution
        found.version = self.target.version or found.version
        # the run-time permission checks find the manifest through this
        found.manifest_path = str(self.manifest_path) if self.manifest_path else None  # type: ignore[attr-defined]
        self.connector = found
        return found

    def check_matches_code(self) -> None:
        try:
            conn = self._load_connector()
        except Exception as exc:
            self.failed(
                "manifest.matches_code",
                f"the connector cannot be loaded: {type(exc).__name__}: {exc}",
                "make the package import and register its connector (tapyard_register_connectors)",
            )
            raise
        if self.spec is None:
            self.skipped("manifest.matches_code", "no valid manifest to compare")
            return
        problems = []
        if self.spec.stream_names() != conn.stream_names():
            problems.append(f"streams: the manifest says {self.spec.stream_names()}, the connector has {conn.stream_names()}")
        if list(self.spec.auth_kinds) != list(conn.auth_kinds):
            problems.append(f"auth_kinds: the manifest says {self.spec.auth_kinds}, the connector has {list(conn.auth_kinds)}")
        if self.spec.description != conn.description:
            problems.append("description: the manifest's and the connector's differ")
        missing = [k for k in conn.auth_kinds if k != "none" and k not in self.spec.credential_kinds()]
        if missing:
            problems.append(f"permissions.credentials leaves out {missing}, which the connector takes")
        if problems:
            self.failed(
                "manifest.matches_code",
                "; ".join(problems),
                "make the manifest list what the connector registers (tapyard connectors list --check shows it)",
            )
        else:
            self.passed("manifest.matches_code", "streams, auth kinds and description agree")

    # -- configuration ------------------------------------------------------------------

    def check_config(self) -> None:
        from tapyard.testing import fake_credentials

        conn = self._load_connector()
        raw = dict(self.settings.get("config") or {})
        try:
            self.config = conn.parse_config(raw)
        except TapyardError as exc:
            self.failed(
                "config.invalid_rejected",
                f"the conformance config in pyproject.toml is not valid: {exc}",
                f"fix [tool.tapyard.conformance.{self.name}] config",
            )
            raise
        given = self.settings.get("credentials", {})
        fields = dict(given) if isinstance(given, dict) else {}
        kind = fields.pop("kind", None)
        # credentials = false: the recording used none (an emulator that takes anonymous calls)
        wanted = given is not False and any(k != "none" for k in conn.auth_kinds)
        if wanted and (kind is not None or "none" not in conn.auth_kinds):
            self.credentials = fake_credentials(conn, kind, **fields)
        try:
            conn.parse_config({**raw, "tapyard_kit_not_a_field": 1})
        except ConfigError as exc:
            if "\n" in str(exc):
                self.failed("config.invalid_rejected", "the error spans several lines", "keep config errors to one line")
            else:
                self.passed("config.invalid_rejected", f"refused: {exc}")
        except Exception as exc:
            self.failed(
                "config.invalid_rejected",
                f"an unknown config field raised {type(exc).__name__}, not a ConfigError",
                "validate configuration with a pydantic model (extra='forbid') as config_model",
            )
        else:
            self.failed(
                "config.invalid_rejected",
                "an unknown config field was accepted silently",
                "give the config model model_config = ConfigDict(extra='forbid')",
            )

    # -- cassettes ---------------------------------------------------------------------

    def _cassette_files(self) -> list[Path]:
        from tapyard.marketplace.scan import cassette_files

        root = self.target.root
        if root is None:
            return []
        listed = [root / str(p) for p in (self.settings.get("scan") or [])]
        if self.cassette is not None:
            listed.append(self.cassette.parent)
        return sorted(set(cassette_files(listed)))

    def check_cassettes(self) -> None:
        from tapyard.marketplace.scan import scan_files

        given = self.settings.get("cassette")
        if self.target.root is None:
            what = "a wheel" if self.target.origin == "wheel" else "an installed (not editable) package"
            self.failed(
                "cassettes.present",
                f"{what} holds no cassettes",
                "run the kit on the source tree or the sdist, which hold the cassettes",
            )
        elif not given:
            self.failed(
                "cassettes.present",
                f"pyproject.toml names no cassette for {self.name!r}",
                f"add [tool.tapyard.conformance.{self.name}] cassette = \"tests/cassettes/....yaml\" "
                "(record it with the scaffold's recording test)",
            )
        elif not (self.target.root / given).is_file():
            self.failed(
                "cassettes.present",
                f"the cassette {given} does not exist",
                "record it: TAPYARD_RECORD=all python -m pytest -m record",
            )
        else:
            self.cassette = self.target.root / given
            self.passed("cassettes.present", str(given))
        files, findings = scan_files(self._cassette_files())
        if findings:
            shown = "; ".join(str(f) for f in findings[:3])
            self.failed(
                "cassettes.secrets",
                f"{len(findings)} credential-shaped value(s): {shown}",
                "re-record through tapyard.testing.cassette() (it scrubs credentials) or replace the value "
                "with REDACTED, and revoke the credential if it was real",
            )
        elif files:
            self.passed("cassettes.secrets", f"{files} cassette file(s) scanned")
        else:
            self.skipped("cassettes.secrets", "no cassette to scan")
        self._check_hosts()

    def _guard(self) -> Any:
        from tapyard.base.manifest import HostGuard

        if self.spec is None or self.spec.permissions is None or self.manifest_path is None:
            return None
        return HostGuard.for_run(self.name, str(self.manifest_path), self.spec.permissions, self.config, self.credentials)

    def _check_hosts(self) -> None:
        import yaml

        guard = self._guard()
        if guard is None:
            self.skipped("hosts.declared", "no permissions declared to check against")
            return
        outside: dict[str, str] = {}
        # the cassette the kit replays (others in its folder may be recorded with other settings)
        for path in [self.cassette] if self.cassette is not None else []:
            if path.suffix not in (".yaml", ".yml"):
                continue
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace"))
            except yaml.YAMLError:
                continue
            for interaction in (data or {}).get("interactions", []) if isinstance(data, dict) else []:
                uri = str(((interaction or {}).get("request") or {}).get("uri", ""))
                if uri and not guard.allows(uri):
                    import urllib.parse

                    parts = urllib.parse.urlsplit(uri)
                    outside.setdefault(parts.netloc.rsplit("@", 1)[-1], path.name)
        if outside:
            shown = ", ".join(f"{host} (in {where})" for host, where in list(outside.items())[:5])
            self.failed(
                "hosts.declared",
                f"the cassettes call hosts the manifest does not declare: {shown}",
                "add each host (or a {config.FIELD} pattern that makes it) to [connector.permissions] hosts",
            )
        else:
            self.passed("hosts.declared", "every recorded request is to a declared host")

    # -- streams and reads -----------------------------------------------------------------

    def check_schemas(self) -> None:
        from tapyard.base import RunContext
        from tapyard.plugins import get_plugin_manager

        if self.cassette is None:
            self.skipped("streams.schemas", "no cassette to discover the streams with")
            return
        conn = self._load_connector()
        with replay(self.cassette, self.settings.get("match_on"), None, self.settings.get("vcr")):
            context = RunContext(pm=get_plugin_manager(), credentials=self.credentials, hosts=self._guard())
            with conn.open(self.config, context) as source:
                self.streams = list(source.streams())
        wanted = self.settings.get("streams")
        if wanted:
            self.streams = [s for s in self.streams if s.name in wanted]
        self._check_modes()
        problems, typed, total = [], 0, 0
        for stream in self.streams:
            try:
                schema = stream.schema_model.model_json_schema()
            except Exception as exc:
                problems.append(f"{stream.name}: its schema cannot be exported ({type(exc).__name__})")
                continue
            props = schema.get("properties") or {}
            if not props:
                problems.append(f"{stream.name}: the schema declares no fields")
                continue
            missing = [k for k in (*stream.primary_key, stream.cursor_field) if k and k not in props]
            if missing:
                problems.append(f"{stream.name}: {', '.join(missing)} not in the schema")
            total += len(props)
            typed += sum(1 for spec in props.values() if any(k in spec for k in ("type", "anyOf", "$ref", "enum", "const", "allOf", "oneOf")))
        self.typed = typed / total if total else 0.0
        if not self.streams:
            self.failed("streams.schemas", "discovery found no stream", "give the connector streams (or the conformance config what they need)")
        elif problems:
            self.failed(
                "streams.schemas",
                "; ".join(problems),
                "give each stream a pydantic schema_model (or json_schema) whose fields include its primary key and cursor",
            )
        else:
            self.passed("streams.schemas", f"{len(self.streams)} stream(s), {typed}/{total} fields typed")

    def _check_modes(self) -> None:
        """Stream modes the manifest declares against the discovered streams (amends manifest.matches_code)."""
        if self.spec is None:
            return
        found = {s.name: s for s in self.streams}
        problems = []
        for declared in self.spec.stream_specs():
            stream = found.get(declared.name)
            if stream is None:
                continue
            actual = "cursor" if stream.cursor_field else "none"
            if declared.incremental is not None and declared.incremental != actual:
                problems.append(f"{declared.name}: incremental is {declared.incremental!r} in the manifest, {actual!r} in the code")
            deletes = getattr(stream, "deletes", "none")
            if declared.deletes is not None and declared.deletes != deletes:
                problems.append(f"{declared.name}: deletes is {declared.deletes!r} in the manifest, {deletes!r} in the code")
        if not problems:
            return
        previous = self.report.check("manifest.matches_code")
        earlier = previous.message if previous is not None and previous.status == FAILED else ""
        self.report.checks = [c for c in self.report.checks if c.id != "manifest.matches_code"]
        self.failed(
            "manifest.matches_code",
            "; ".join(p for p in (earlier, *problems) if p),
            "make the manifest list what the connector registers (tapyard connectors list --check shows it)",
        )

    def _sync(self, db: Path, *, inject: Injector | None = None, **options: Any) -> Any:
        import tapyard

        assert self.cassette is not None
        http = {"backoff_base": 0.0, "backoff_max": 0.0, "max_attempts": 4}
        with replay(self.cassette, self.settings.get("match_on"), inject, self.settings.get("vcr")) as misses:
            self.misses = misses
            return tapyard.sync(
                self.connector,
                self.config,
                to=f"sqlite:///{db}",
                credentials=self.credentials,
                streams=[s.name for s in self.streams] or None,
                concurrency=1,
                http=http,
                **options,
            )

    def _rows(self, db: Path) -> dict[str, list[tuple[Any, ...]] | None]:
        return {s.name: table_rows(db, s.name) for s in self.streams}

    def check_full_read(self) -> None:
        from tapyard.base import PermissionDeniedError

        if self.cassette is None or not self.streams:
            for check_id in ("read.records_validate", "read.pagination_ends"):
                self.skipped(check_id, "nothing to read")
            return
        try:
            self.full = self._sync(self.scratch / "full.db")
        except PermissionDeniedError as exc:
            self._replace_hosts_failure(str(exc))
            for check_id in ("read.records_validate", "read.pagination_ends"):
                self.skipped(check_id, "the read was refused: it called a host the manifest does not declare")
            return
        failing = {s.name: s.error or "" for s in self.full.streams if s.status != "ok"}
        for s in self.full.streams:
            self.pages[s.name] = s.pages
        refused = [e for e in failing.values() if "may not call" in e]
        if refused:
            self._replace_hosts_failure(refused[0])
        paging = {
            n: e for n, e in failing.items() if "page" in e and ("page cap" in e or "repeats" in e or "pointed back" in e)
        }
        if paging:
            name, error = next(iter(paging.items()))
            self.failed(
                "read.pagination_ends",
                f"{name}: {error}",
                "make the paginator stop: return None from next() when the response says there is no "
                "more (has_more false, no next link, an empty page)",
            )
        else:
            self.passed("read.pagination_ends", f"{sum(self.pages.values())} page(s) read")
        # records the cassette holds broken on purpose (a seeded bad line), by stream
        expected = {str(k): int(v) for k, v in (self.settings.get("dead_letters") or {}).items()}
        dead = {s.name: s.dead_letters for s in self.full.streams if s.dead_letters != expected.get(s.name, 0)}
        other = {n: e for n, e in failing.items() if n not in paging}
        if dead:
            self.failed(
                "read.records_validate",
                f"records that do not fit their schema: {dead}"
                + (f" (the conformance settings expect {expected})" if expected else ""),
                "make the schema_model accept what the API sends (tapyard deadletters list shows why); records "
                "broken on purpose go in [tool.tapyard.conformance.NAME] dead_letters = {stream = count}",
            )
        elif other:
            name, error = next(iter(other.items()))
            fix = "run the connector's tests; fix the error"
            if cassette_lacks(error, self.misses):
                fix = "the replayed read asked for a request the cassette lacks: re-record it (TAPYARD_RECORD=all)"
            self.failed("read.records_validate", f"{name} failed: {error}", fix)
        else:
            held = f", {sum(expected.values())} broken on purpose went to the dead letters" if expected else ""
            self.passed("read.records_validate", f"{self.full.records} record(s), all valid{held}")

    def _replace_hosts_failure(self, message: str) -> None:
        self.report.checks = [c for c in self.report.checks if c.id != "hosts.declared"]
        self.failed(
            "hosts.declared",
            message,
            "add the host (or a {config.FIELD} pattern that makes it) to [connector.permissions] hosts",
        )

    def _read_ok(self) -> bool:
        return self.full is not None and all(s.status == "ok" for s in self.full.streams)

    def check_two_reads(self) -> None:
        if not self._read_ok():
            self.skipped("read.two_full_reads", "the full read did not succeed")
            return
        second = self._sync(self.scratch / "second.db", full_refresh=True)
        first_rows, second_rows = self._rows(self.scratch / "full.db"), self._rows(self.scratch / "second.db")
        differ = [n for n in first_rows if first_rows[n] != second_rows[n]]
        if not second.ok or differ:
            what = f"streams {differ} differ" if differ else "the second read failed"
            self.failed(
                "read.two_full_reads",
                f"two full reads of the same cassette disagree: {what}",
                "make records a function of the responses alone (no clock, no random values, stable keys)",
            )
        else:
            self.passed("read.two_full_reads", "the same rows twice")

    def check_incremental(self) -> None:
        if not self._read_ok():
            self.skipped("read.incremental", "the full read did not succeed")
            return
        incremental = [s for s in self.streams if s.cursor_field]
        if not incremental:
            self.passed("read.incremental", "not applicable: no stream has a cursor (every read is a full read)")
            return
        result = self._sync(self.scratch / "full.db")
        by_name = {s.name: s for s in result.streams}
        full = {s.name: s for s in self.full.streams}
        problems: list[str] = []
        uncovered: list[str] = []
        for stream in incremental:
            done = by_name.get(stream.name)
            if done is None:
                continue
            if done.status != "ok":
                error = done.error or ""
                if cassette_lacks(error, self.misses):
                    uncovered.append(stream.name)
                else:
                    problems.append(f"{stream.name} failed: {error}")
                continue
            before = full[stream.name].read
            if before > 1 and done.read >= before and not stream.cursor_lookback:
                problems.append(f"{stream.name} re-read all {done.read} records")
            elif done.inserted or done.updated:
                problems.append(f"{stream.name} fetched {done.inserted or 0} new and {done.updated or 0} changed records")
        if problems:
            self.failed(
                "read.incremental",
                "an incremental read from the state of a full read: " + "; ".join(problems),
                "send the saved cursor to the API (RestStream cursor_param, or the SDK's filter) so that "
                "it returns only records changed since",
            )
        elif uncovered:
            self.skipped(
                "read.incremental",
                f"the cassette lacks the incremental read's requests of {', '.join(uncovered)}: record an "
                "incremental read right after the full one (nothing changed in between) into the cassette",
            )
        else:
            self.passed("read.incremental", f"{len(incremental)} incremental stream(s) fetched nothing new")

    def check_resume(self) -> None:
        if not self._read_ok():
            self.skipped("read.resume", "the full read did not succeed")
            return
        paged = [n for n, p in self.pages.items() if p > 1]
        if not paged:
            self.skipped("read.resume", "no stream has a second page in the cassette (record with a smaller page size)")
            return
        db = self.scratch / "resumed.db"
        stopped = self._sync(db, max_pages=1)  # stops every stream after its first page, state committed
        if not any(s.name in paged and s.status == "failed" and s.records for s in stopped.streams):
            self.skipped("read.resume", "a read capped at one page did not stop after committing it")
            return
        resumed = self._sync(db)
        first_rows, resumed_rows = self._rows(self.scratch / "full.db"), self._rows(db)
        differ = [n for n in paged if first_rows[n] != resumed_rows[n]]
        failed = [f"{s.name}: {s.error}" for s in resumed.streams if s.status != "ok"]
        uncovered = [s.name for s in resumed.streams if s.status != "ok" and cassette_lacks(s.error or "", self.misses)]
        if uncovered and len(uncovered) == len(failed):
            self.skipped(
                "read.resume",
                f"the cassette lacks the requests a resumed read of {', '.join(uncovered)} sends (it reads "
                "again from the cursor written so far): record a read resumed after its first page",
            )
        elif failed or differ:
            self.failed(
                "read.resume",
                f"a read stopped after page 1 and resumed {'failed: ' + str(failed) if failed else 'ends with other rows: ' + str(differ)}",
                "make each page's resume point (Page.resume / the paginator's next request) a complete, "
                "JSON-serialisable request that reads the following page",
            )
        else:
            self.passed("read.resume", f"{len(paged)} stream(s) resumed after page 1 with the same rows")

    def check_retries(self) -> None:
        if not self._read_ok():
            self.skipped("read.retries", "the full read did not succeed")
            return
        try:
            result = self._sync(self.scratch / "retried.db", inject=first_gets([RATE_LIMITED, UNAVAILABLE]))
            errors = [s.error for s in result.streams if s.error]
            ok = result.ok
        except TapyardError as exc:
            errors, ok = [str(exc)], False
        first_rows, rows = self._rows(self.scratch / "full.db"), self._rows(self.scratch / "retried.db")
        if not ok or first_rows != rows:
            self.failed(
                "read.retries",
                f"a 429 then a 503 were not retried: {errors[0] if errors else 'other rows landed'}",
                "send requests through the HTTP engine (or the SDK's retries): 429 and 5xx must be retried with backoff",
            )
        else:
            self.passed("read.retries", "a 429 and a 503 were retried and the rows are the same")

    def check_wrong_credentials(self) -> None:
        if self.credentials is None:
            self.passed("auth.wrong_credentials", "not applicable: the connector takes no credentials")
            return
        if self.cassette is None or not self.streams:
            self.skipped("auth.wrong_credentials", "no cassette to replay")
            return
        messages = []
        try:
            result = self._sync(self.scratch / "refused.db", inject=lambda request, count, recorded: refusal(recorded))
            messages = [s.error or "" for s in result.streams if s.status != "ok"]
            if not messages:
                self.failed(
                    "auth.wrong_credentials",
                    "every request answered 401, and the read still succeeded",
                    "treat 401 and 403 as errors (the HTTP engine raises AuthenticationError)",
                )
                return
        except TapyardError as exc:
            messages = [str(exc)]
        except Exception as exc:
            self.failed(
                "auth.wrong_credentials",
                f"a 401 raised {type(exc).__name__}, not a tapyard error (the CLI would print a traceback)",
                "map the SDK's authentication error to tapyard.AuthenticationError (raise ... from exc)",
            )
            return
        secrets = [v for v in _secret_values(self.credentials) if len(v) >= 4]
        bad = [m for m in messages if "\n" in m.strip() or len(m) > 1000 or any(s in m for s in secrets)]
        vague = [m for m in messages if not any(w in m.lower() for w in _AUTH_WORDS)]
        if bad:
            self.failed(
                "auth.wrong_credentials",
                "the error for wrong credentials spans lines, is too long or shows a secret",
                "raise one tapyard.AuthenticationError whose message is one line without the credential",
            )
        elif vague:
            self.failed(
                "auth.wrong_credentials",
                f"the error does not say the credentials were refused: {vague[0]}",
                "say that the credentials were refused (401/403) and what to check",
            )
        else:
            self.passed("auth.wrong_credentials", one_line(messages[0], 160))

    def check_docs(self) -> None:
        root = self.target.root
        readme = next((root / n for n in ("README.md", "README.rst", "README.txt", "README") if root and (root / n).is_file()), None)
        if readme is not None:
            name, text = readme.name, readme.read_text(encoding="utf-8", errors="replace")
        else:
            name, text = "the wheel's description", self.target.readme or ""
        if not text.strip():
            self.failed("docs.readme", "no README in the package", "add a README.md (and readme = \"README.md\" in pyproject.toml): what it reads, its config, how to record cassettes")
        elif len(text.strip()) < 200:
            self.failed("docs.readme", f"{name} is nearly empty", "say what the connector reads, its config and credentials")
        else:
            self.passed("docs.readme", name)

    # -- score --------------------------------------------------------------------------

    def score(self) -> None:
        from tapyard.base.manifest import SUPPORT_LEVELS

        report = self.report
        counted = [c for c in report.checks if c.id != "support.claimed"]
        passed = sum(c.status == PASSED for c in counted)
        streams = self.streams
        covered = sum(1 for s in (self.full.streams if self.full else []) if s.records)
        modes = sum(1 for s in streams if s.cursor_field or getattr(s, "deletes", "none") != "none")
        docs = 0.0
        if report.check("docs.readme") and report.check("docs.readme").status == PASSED:  # type: ignore[union-attr]
            docs += 0.6
        if self.spec is not None:
            docs += 0.2 * bool(self.spec.description) + 0.2 * bool(self.spec.display_name)
        parts = {
            "checks": passed / len(CHECKS) * WEIGHTS["checks"] if CHECKS else 0.0,
            "coverage": covered / len(streams) * WEIGHTS["coverage"] if streams else 0.0,
            "modes": modes / len(streams) * WEIGHTS["modes"] if streams else 0.0,
            "typed": self.typed * WEIGHTS["typed"],
            "docs": docs * WEIGHTS["docs"],
        }
        safety = [c for c in counted if c.safety]
        if all(c.status == PASSED for c in counted):
            level = "certified"
        elif all(c.status == PASSED for c in safety):
            level = "community"
        else:
            level = "none"
        claimed = report.claimed_level
        if claimed is None:
            self.skipped("support.claimed", "no manifest claims a level")
        elif SUPPORT_LEVELS.index(claimed) > SUPPORT_LEVELS.index(level):
            self.failed(
                "support.claimed",
                f"the manifest claims {claimed!r}, the kit measured {level!r}",
                f"set support_level = \"{level}\" in the manifest, or fix the failing checks",
            )
        else:
            self.passed("support.claimed", f"claims {claimed}, earned {level}")
        if report.check("support.claimed").status == PASSED:  # type: ignore[union-attr]
            parts["checks"] += WEIGHTS["checks"] / len(CHECKS)
        report.score_parts = {k: round(v, 1) for k, v in parts.items()}
        report.score = round(sum(parts.values()))
        report.support_level = level


_AUTH_WORDS = ("credential", "401", "403", "unauthori", "forbidden", "authenticat", "api key", "token", "refused", "denied", "password")


def _secret_values(credentials: Any) -> list[str]:
    from tapyard.base import secret_values

    try:
        return list(secret_values(credentials))
    except Exception:
        return []
