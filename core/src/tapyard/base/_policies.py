"""Column policies for personal data: hash, mask or drop a field before it reaches a destination.

A connector marks a field of a stream schema as personal with
``Field(json_schema_extra={"personal": "email"})`` (the value names the kind
of data: ``email``, ``phone``, ``name``, ``address``...; ``True`` means
unspecified). ``discover`` shows the marks. A marked field is synced as it is
unless a *policy* says otherwise: the user's policies name fields, per run
(``tapyard sync --policy email=hash,phone=drop``, a ``policies`` mapping in
the run's config file, or ``tapyard.sync(..., policies={...})``).

Selectors: ``field`` (that field in every selected stream that has it),
``stream.field`` (one stream), ``@kind`` (every field marked with that kind),
``@*`` (every marked field); a selector naming a stream or stream and field
wins over a broader one. Actions:

``hash``  HMAC-SHA256 of the value, as 64 lowercase hex digits, keyed by
          ``TAPYARD_POLICY_KEY``, a key from the vault, or else this
          installation's own (:func:`local_key`): the same value gives the
          same hash in every run and every stream, so joins still work, and
          without the key nobody can test a guess.
``mask``  ``a***@example.com`` for an email, ``****`` plus the last four
          characters for a value of eight characters or more, ``****`` else.
``drop``  the field is not written: no column, no key in a JSON line.
``keep``  written as it is (to exempt one field from ``@*``).

A policy is applied to each validated page, in the worker that read it, before
the page is handed to the destination; the hot loop calls no hook for it. It
applies to dead letters too: a rejected record's raw payload is stored with its
policied fields hashed, masked or dropped the same way (matched by the field's
name and aliases), and a rejected record that is not a JSON object is replaced
by a note saying so, since its fields cannot be found. ``null`` stays ``null``.
No other field is touched: the values of every unpoliced field are the very
objects validation produced.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic_core import PydanticUndefined, to_jsonable_python

from tapyard.base._exceptions import ConfigError
from tapyard.base._hints import did_you_mean
from tapyard.base._schema import Column, DeadLetter, PageValidator, columns_of

__all__ = [
    "ACTIONS",
    "ENV_POLICY_KEY",
    "Policies",
    "StreamPolicy",
    "hash_value",
    "local_key",
    "mask_value",
    "merge_policies",
    "parse_policies",
    "personal_marks",
    "split_policies",
]

ENV_POLICY_KEY = "TAPYARD_POLICY_KEY"
ACTIONS = ("hash", "mask", "drop", "keep")
#: the key of ``json_schema_extra`` that marks a field as personal
MARK = "personal"

_NAME = r"[A-Za-z_][A-Za-z0-9_\-]*"
_SELECTOR = re.compile(rf"^(?:(?P<stream>{_NAME})\.)?(?:(?P<field>{_NAME})|@(?P<kind>\*|{_NAME}))$")
_QUOTE_LIMIT = 80


def _quoted(text: str) -> str:
    """``text`` for an error message: escaped, and cut to a bounded length."""
    shown = text if len(text) <= _QUOTE_LIMIT else text[:_QUOTE_LIMIT] + "..."
    return ascii(shown)


@dataclass(frozen=True, slots=True)
class _Rule:
    selector: str
    action: str
    stream: str | None
    field: str | None
    kind: str | None

    @property
    def rank(self) -> int:
        """Narrower selectors win: stream.field, then field, then stream.@kind, @kind, @*."""
        if self.field is not None:
            return 0 if self.stream else 1
        star = self.kind == "*"
        return (2 if self.stream else 3) + (2 if star else 0)


def parse_policies(spec: Mapping[str, Any] | str | Iterable[str] | None) -> list[_Rule]:
    """The rules of ``spec``: a mapping of selector to action, or ``"sel=action,..."`` text
    (or several such texts, as repeated ``--policy`` options give).

    Raises :class:`ConfigError` with one line naming the bad entry.
    """
    if spec is None:
        return []
    pairs: list[tuple[Any, Any]] = []
    if isinstance(spec, Mapping):
        pairs = list(spec.items())
    else:
        texts = [spec] if isinstance(spec, str) else list(spec)
        for text in texts:
            if not isinstance(text, str):
                raise ConfigError(f"policies: expected text like 'email=hash', got {type(text).__name__}")
            for part in text.split(","):
                if not part.strip():
                    continue
                selector, sep, action = part.partition("=")
                if not sep:
                    raise ConfigError(
                        f"policy {_quoted(part.strip())}: write it as FIELD=ACTION, "
                        f"for example email=hash (actions: {', '.join(ACTIONS)})"
                    )
                pairs.append((selector.strip(), action.strip()))
    rules: dict[str, _Rule] = {}
    for selector, action in pairs:
        if not isinstance(selector, str) or not isinstance(action, str):
            raise ConfigError("policies: each entry maps a field name to an action, both text")
        match = _SELECTOR.match(selector)
        if match is None:
            raise ConfigError(
                f"policy {_quoted(selector)}: not a field selector; use FIELD, STREAM.FIELD, "
                "@KIND or @* (for example customers.email)"
            )
        if action not in ACTIONS:
            hint = did_you_mean(action, ACTIONS)
            raise ConfigError(
                f"policy {_quoted(selector)}: unknown action {_quoted(action)}; "
                + (f"{hint} " if hint else "")
                + f"(actions: {', '.join(ACTIONS)})"
            )
        previous = rules.get(selector)
        if previous is not None and previous.action != action:
            raise ConfigError(
                f"policy {_quoted(selector)} is given twice, as {previous.action} and {action}"
            )
        rules[selector] = _Rule(selector, action, match["stream"], match["field"], match["kind"])
    return list(rules.values())


def merge_policies(*specs: Mapping[str, Any] | str | Iterable[str] | None) -> dict[str, str]:
    """Several policy specs as one mapping of selector to action; a later spec wins."""
    merged: dict[str, str] = {}
    for spec in specs:
        merged.update((rule.selector, rule.action) for rule in parse_policies(spec))
    return merged


def split_policies(connector: Any, raw: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """``raw`` config without its ``policies`` key, and that key's value (``None`` if absent).

    A connector whose config model declares a ``policies`` field keeps the
    key: it is then the connector's own.
    """
    fields = getattr(getattr(connector, "config_model", None), "model_fields", {})
    if "policies" not in raw or "policies" in fields:
        return dict(raw), None
    rest = dict(raw)
    return rest, rest.pop("policies")


def personal_marks(model: type[BaseModel]) -> dict[str, str]:
    """The fields of ``model`` marked personal, by attribute name, with their kind."""
    marks: dict[str, str] = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, Mapping) and extra.get(MARK):
            value = extra[MARK]
            marks[name] = value if isinstance(value, str) else MARK
    return marks


def hash_value(key: bytes, value: Any) -> str | None:
    """HMAC-SHA256 of ``value`` under ``key``, as hex; ``None`` stays ``None``.

    Text is hashed as its UTF-8 bytes; anything else as its canonical JSON
    (sorted keys), so a value hashes the same whether it was validated or raw.
    """
    if value is None:
        return None
    data = value.encode() if isinstance(value, str) else _canonical(value)
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def mask_value(value: Any, kind: str | None = None) -> str | None:
    """``value`` masked: an email keeps its first character and domain, anything
    else of eight characters or more its last four; ``None`` stays ``None``."""
    if value is None:
        return None
    text = value if isinstance(value, str) else _canonical(value).decode()
    if kind == "email" and "@" in text:
        local, _, domain = text.rpartition("@")
        return f"{local[:1]}***@{domain}"
    return "****" + text[-4:] if len(text) >= 8 else "****"


def _canonical(value: Any) -> bytes:
    return orjson.dumps(to_jsonable_python(value), option=orjson.OPT_SORT_KEYS)


def _names_of(name: str, info: Any) -> set[str]:
    """Every key a raw record may hold the field under: its name and its aliases."""
    names = {name}
    for alias in (info.alias, info.serialization_alias):
        if isinstance(alias, str):
            names.add(alias)
    validation = info.validation_alias
    if isinstance(validation, str):
        names.add(validation)
    else:
        for choice in getattr(validation, "choices", ()):
            if isinstance(choice, str):
                names.add(choice)
    return names


LOCAL_KEY_FILE = "policy.key"


def local_key() -> bytes:
    """This installation's own policy key: ``policy.key`` in the data directory
    (``$TAPYARD_HOME``), created on first use from 32 random bytes, mode 0600.

    The same file gives the same hashes in every later run; losing it changes
    them. Raises :class:`ConfigError` when the file can be neither read nor made.
    """
    from tapyard_credentials import data_dir

    path = data_dir() / LOCAL_KEY_FILE
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written whole under another name, then linked into place: a run
            # racing this one either links first or reads the finished file.
            draft = path.with_name(f".{LOCAL_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_hex(32) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                with contextlib.suppress(FileExistsError):
                    os.link(draft, path)
            finally:
                draft.unlink(missing_ok=True)
        key = path.read_text().strip().encode()
    except OSError as exc:
        raise ConfigError(
            f"a hash policy needs a key and {path} cannot be made ({exc.strerror or exc}): "
            f"set {ENV_POLICY_KEY}, or name a vault credential holding one with --policy-key"
        ) from None
    if len(key) < 32:
        raise ConfigError(f"{path} holds no usable policy key: remove it, or set {ENV_POLICY_KEY}")
    return key


class StreamPolicy:
    """The actions for one stream's fields, and the model the destination receives.

    :meth:`apply` turns a validated page into instances of :attr:`model`, the
    stream's model with dropped fields removed and hashed or masked ones as
    ``str | None``; unpoliced values are carried over as they are.
    """

    def __init__(
        self, stream: str, model: type[BaseModel], actions: Mapping[str, str], key: bytes | None
    ) -> None:
        self.stream = stream
        self.source_model = model
        self.actions = dict(actions)
        marks = personal_marks(model)
        self._kinds = {
            name: marks.get(name) or ("email" if "email" in name.lower() else None)
            for name in self.actions
        }
        self._key = key
        fields: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            action = self.actions.get(name, "keep")
            if action == "drop":
                continue
            if action == "keep":
                fields[name] = (info.annotation, info)
                continue
            fields[name] = (
                str | None,
                Field(
                    None,
                    alias=info.alias,
                    serialization_alias=info.serialization_alias,
                    description=info.description,
                    json_schema_extra={MARK: marks.get(name) or MARK, "policy": action},
                ),
            )
        # Computed fields become plain ones: their values are taken from the
        # validated record, so the destination sees what it would have.
        self._computed = list(model.model_computed_fields)
        for name, computed in model.model_computed_fields.items():
            annotation = computed.return_type
            fields[name] = (
                Any if annotation is PydanticUndefined else annotation,
                Field(None, alias=computed.alias),
            )
        # Aliases were resolved into each field already; generating them again
        # would rename the hashed and masked fields.
        config = ConfigDict(**{k: v for k, v in model.model_config.items() if k != "alias_generator"})  # type: ignore[typeddict-item]
        self.model: type[BaseModel] = create_model(
            model.__name__, __config__=config, __module__=model.__module__, **fields
        )
        self._kept = [n for n in model.model_fields if self.actions.get(n, "keep") == "keep"]
        declared = model.model_fields
        self._changed = [(n, a) for n, a in self.actions.items() if a in ("hash", "mask") and n in declared]
        # A name the model does not declare is a key its extra="allow" records may carry.
        self._raw_names = {
            name: _names_of(name, declared[name]) if name in declared else {name}
            for name, action in self.actions.items()
            if action != "keep"
        }

    def _value(self, name: str, action: str, value: Any) -> Any:
        if action == "hash":
            assert self._key is not None
            return hash_value(self._key, value)
        return mask_value(value, self._kinds.get(name))

    def _by_key(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """``record`` with the policies applied to the keys that name a policied field."""
        out = dict(record)
        for name, action in self.actions.items():
            for key in self._raw_names.get(name, ()):
                if key in out:
                    if action == "drop":
                        del out[key]
                    else:
                        out[key] = self._value(name, action, out[key])
        return out

    def apply(
        self, items: Sequence[BaseModel], dead: Sequence[DeadLetter]
    ) -> tuple[list[BaseModel], list[DeadLetter]]:
        """The page with this stream's policies applied to its records and dead letters."""
        construct = self.model.model_construct
        kept, changed, computed = self._kept, self._changed, self._computed
        out: list[BaseModel] = []
        for item in items:
            source = item.__dict__
            values = {name: source[name] for name in kept if name in source}
            for name, action in changed:
                values[name] = self._value(name, action, source.get(name))
            for name in computed:
                values[name] = getattr(item, name)
            made = construct(_fields_set=set(values), **values)
            extra = item.__pydantic_extra__
            if extra:
                # Undeclared keys a model keeps (extra="allow") are policied by name too.
                object.__setattr__(made, "__pydantic_extra__", self._by_key(extra))
            out.append(made)
        return out, [DeadLetter(raw=self.raw(d.raw), error=d.error, holds_cursor=d.holds_cursor) for d in dead]

    def raw(self, raw: Any) -> Any:
        """A raw record (a dead letter's payload) with the policies applied by key."""
        if not isinstance(raw, Mapping):
            return {
                "_tapyard_withheld": f"a {type(raw).__name__}, not an object: withheld because "
                f"stream {self.stream!r} has column policies"
            }
        return self._by_key(raw)


class _PolicyValidator(PageValidator):
    """Validates a page against the stream's own model, then applies its policy."""

    def __init__(self, policy: StreamPolicy, primary_key: Sequence[str]) -> None:
        super().__init__(policy.source_model, primary_key)
        self.policy = policy

    def validate(self, records: Sequence[Any]) -> tuple[list[BaseModel], list[DeadLetter]]:
        items, dead = super().validate(records)
        return self.policy.apply(items, dead)


@dataclass
class Policies:
    """The policies of one run: rules, the key for ``hash``, and which rules matched.

    Build with :meth:`from_spec`; an empty one changes nothing.
    """

    rules: list[_Rule] = field(default_factory=list)
    key: bytes | None = None
    _used: set[str] = field(default_factory=set)
    _streams: dict[str, StreamPolicy | None] = field(default_factory=dict)
    _fields: set[str] = field(default_factory=set)

    @classmethod
    def from_spec(
        cls,
        spec: Mapping[str, Any] | str | Iterable[str] | None,
        key: str | bytes | None = None,
    ) -> Policies:
        """Parse ``spec`` (see :func:`parse_policies`); the key defaults to ``TAPYARD_POLICY_KEY``.

        When a rule hashes and no key is given, the key is :func:`local_key`:
        never an unkeyed hash, which anyone could reverse by hashing guesses.
        """
        rules = parse_policies(spec)
        if key is None:
            key = os.environ.get(ENV_POLICY_KEY) or None
        raw_key = key.encode() if isinstance(key, str) else key
        if any(rule.action == "hash" for rule in rules) and not raw_key:
            raw_key = local_key()
        return cls(rules=rules, key=raw_key)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def for_stream(self, stream: str, model: type[BaseModel]) -> StreamPolicy | None:
        """The policy of ``stream`` (whose schema is ``model``), or ``None`` if no rule applies."""
        if not self.rules:
            return None
        if stream in self._streams:
            return self._streams[stream]
        marks = personal_marks(model)
        self._fields.update(model.model_fields)
        chosen: dict[str, tuple[int, str]] = {}
        for rule in self.rules:
            if rule.stream is not None and rule.stream != stream:
                continue
            if rule.field is not None:
                # Records of an extra="allow" model may hold undeclared keys: those count too.
                extra = model.model_config.get("extra") == "allow"
                names = [rule.field] if rule.field in model.model_fields or extra else []
                if not names and rule.stream is not None:
                    known = ", ".join(model.model_fields) or "none"
                    hint = did_you_mean(rule.field, model.model_fields)
                    raise ConfigError(
                        f"policy {_quoted(rule.selector)}: stream {stream!r} has no field "
                        f"{rule.field!r}; " + (hint or f"fields: {known}")
                    )
            elif rule.kind == "*":
                names = list(marks)
            else:
                names = [name for name, kind in marks.items() if kind == rule.kind]
            for name in names:
                self._used.add(rule.selector)
                current = chosen.get(name)
                if current is None or rule.rank < current[0]:
                    chosen[name] = (rule.rank, rule.action)
        actions = {name: action for name, (_, action) in chosen.items() if action != "keep"}
        policy = StreamPolicy(stream, model, actions, self.key) if actions else None
        self._streams[stream] = policy
        return policy

    def validator(self, stream: Any, model: type[BaseModel]) -> PageValidator:
        """The page validator of ``stream`` (a :class:`~tapyard.Stream`): validation, then
        the stream's policy if it has one.

        Refuses a policy on the primary key or the cursor field: rows are
        upserted on the one and ordered by the other.
        """
        primary_key = tuple(stream.primary_key)
        policy = self.for_stream(stream.name, model)
        if policy is None:
            return PageValidator(model, primary_key)
        for role, names in (("primary key", primary_key), ("cursor field", (stream.cursor_field,))):
            touched = [name for name in names if name and policy.actions.get(name)]
            if touched:
                raise ConfigError(
                    f"stream {stream.name!r}: its {role} {', '.join(touched)} cannot be hashed, "
                    "masked or dropped (rows are upserted on the primary key and ordered by the cursor)"
                )
        return _PolicyValidator(policy, primary_key)

    def columns(self, stream: Any, model: type[BaseModel]) -> list[Column]:
        """The destination columns of ``stream`` once its policy is applied."""
        policy = self.for_stream(stream.name, model)
        return columns_of(policy.model if policy is not None else model)

    def known_streams(self, names: Iterable[str]) -> Policies:
        """Refuse a rule naming a stream the connector does not have; return ``self``.

        A rule for a stream that exists but is not selected in this run is fine.
        """
        known = set(names)
        for rule in self.rules:
            if rule.stream is not None and rule.stream not in known:
                raise ConfigError(
                    f"policy {_quoted(rule.selector)}: no stream named {rule.stream!r} "
                    f"(streams: {', '.join(sorted(known)) or 'none'})"
                )
        return self

    def check_used(self) -> None:
        """Refuse a rule that matched no field of the streams it could apply to: a
        typo would otherwise let the personal data it meant to protect through."""
        unused = [
            rule.selector
            for rule in self.rules
            if rule.selector not in self._used and (rule.stream is None or rule.stream in self._streams)
        ]
        if unused:
            hint = did_you_mean(unused[0].rpartition(".")[2], self._fields)
            raise ConfigError(
                f"policy {_quoted(unused[0])} matches no field of the selected streams; "
                + (hint or "check the name with `tapyard discover`")
            )
