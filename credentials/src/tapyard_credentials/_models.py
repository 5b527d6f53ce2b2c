"""The vault's nouns: a credential with its secret fields, its description without
them, and audit log entries.

Every model is frozen and forbids unknown fields. Secret values exist only as
:class:`~pydantic.SecretStr`, so ``repr()``, ``str()`` and ``model_dump_json()``
show ``**********`` in their place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from tapyard_credentials._exceptions import CredentialValidationError
from tapyard_credentials._redact import Redactor

__all__ = [
    "AuditAction",
    "AuditEntry",
    "AuditEvent",
    "AuditOutcome",
    "Credential",
    "CredentialInfo",
    "validate_connector",
    "validate_fields",
    "validate_kind",
    "validate_name",
]

ModelT = TypeVar("ModelT", bound=BaseModel)

AuditAction = Literal["put", "get", "update_fields", "remove", "rotate_key"]
"""What was done: store or replace, read the secret, update fields, remove, re-key."""

AuditOutcome = Literal["ok", "denied", "not_found"]
"""How it ended: done, refused (connector not allowed), or no such credential."""


class CredentialInfo(BaseModel):
    """What the vault knows about a credential, without any of its values.

    Safe to print, log and serialize.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    connector: str
    kind: str
    field_names: tuple[str, ...]
    allowed_connectors: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None = None


class Credential(CredentialInfo):
    """A credential with its fields, as :meth:`Vault.get` returns it.

    ``fields`` maps field names to :class:`~pydantic.SecretStr`; printing the object
    never shows a value. Use :meth:`to_model` to turn it into a connector's own
    credential model, or ``fields[name].get_secret_value()`` for one value.
    """

    fields: dict[str, SecretStr]

    def info(self) -> CredentialInfo:
        """The same credential without its fields."""
        return CredentialInfo.model_validate(self.model_dump(exclude={"fields"}))

    def secret(self, field: str) -> str:
        """The plain value of one field. Raises :class:`CredentialValidationError` if absent."""
        try:
            return self.fields[field].get_secret_value()
        except KeyError:
            raise CredentialValidationError(
                f"credential {self.name!r} has no field {field!r}"
            ) from None

    def to_model(self, model_cls: type[ModelT], *, connector: str | None = None) -> ModelT:
        """The fields validated against a connector's pydantic credential model.

        Unknown and missing fields are refused with :class:`CredentialValidationError`,
        e.g. ``credential 'x' does not fit acme's credential model: api_key: required
        field is missing; colour: unknown field``. The message names fields and the
        rule broken, never a value. ``connector`` names the model's owner in the
        message (default: the credential's connector). Unknown fields are refused even
        if the model itself allows extras.
        """
        owner = connector or self.connector
        plain = {name: value.get_secret_value() for name, value in self.fields.items()}
        problems: list[str] = []
        known = set(model_cls.model_fields)
        known |= {f.alias for f in model_cls.model_fields.values() if isinstance(f.alias, str)}
        unknown = sorted(set(plain) - known)
        result: ModelT | None = None
        try:
            result = model_cls.model_validate(plain)
        except ValidationError as exc:
            scrub = Redactor()
            scrub.register(*plain.values())
            for error in exc.errors(include_url=False, include_input=False):
                where = ".".join(str(part) for part in error["loc"]) or "(credential)"
                if error["type"] == "missing":
                    problems.append(f"{where}: required field is missing")
                elif error["type"] == "extra_forbidden":
                    if where not in unknown:
                        problems.append(f"{where}: unknown field")
                else:
                    problems.append(f"{where}: {scrub.redact(str(error['msg']))}")
        problems.extend(f"{name}: unknown field" for name in unknown)
        if problems or result is None:
            raise CredentialValidationError(
                f"credential {self.name!r} does not fit {owner}'s credential model: "
                + "; ".join(problems)
            )
        return result


class AuditEvent(BaseModel):
    """Something that happened to a credential, as it goes into the audit log.

    Holds who (``actor``: the caller's name for itself, such as ``cli`` or
    ``scheduler``; ``user`` and ``pid``: the OS user and process), what, to which
    credential, for which connector, and how it ended. Never a value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: datetime
    actor: str
    action: AuditAction
    name: str | None
    connector: str | None
    outcome: AuditOutcome
    user: str
    pid: int


class AuditEntry(AuditEvent):
    """An audit log entry: an :class:`AuditEvent` with its position in the log."""

    id: int


# --- input rules -----------------------------------------------------------------

_CONNECTOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_KIND = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_name(name: object, what: str = "credential name") -> str:
    """``name`` if it is a usable credential name (1-200 printable characters, not padded)."""
    if not isinstance(name, str) or not name or len(name) > 200:
        raise CredentialValidationError(f"a {what} must be 1 to 200 characters")
    if _CONTROL.search(name) or name != name.strip():
        raise CredentialValidationError(
            f"a {what} may not contain control characters or start or end with spaces"
        )
    return name


def validate_connector(connector: object, what: str = "connector name") -> str:
    """``connector`` if it is a connector name (letters, digits, ``_.-``, up to 100)."""
    if not isinstance(connector, str) or not _CONNECTOR.fullmatch(connector):
        raise CredentialValidationError(
            f"{connector!r} is not a {what}: use letters, digits, '_', '.' and '-'"
            if isinstance(connector, str) and len(connector) <= 100
            else f"a {what} must be a short string of letters, digits, '_', '.' and '-'"
        )
    return connector


def validate_kind(kind: object) -> str:
    """``kind`` if it is a credential kind such as ``api_key`` (lower case, digits, ``_.-``)."""
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise CredentialValidationError(
            "a credential kind must be lower case letters, digits, '_', '.' and '-' "
            "(such as 'api_key' or 'oauth2_client_credentials')"
        )
    return kind


def validate_fields(fields: object) -> dict[str, str]:
    """Plain field values from a mapping of field names to ``str`` or ``SecretStr``.

    The error names the offending field, never its value.
    """
    if not isinstance(fields, Mapping):
        raise CredentialValidationError("fields must be a mapping of field names to strings")
    plain: dict[str, str] = {}
    for key, value in fields.items():
        validate_name(key, "field name")
        if len(key) > 100:
            raise CredentialValidationError("a field name must be 1 to 100 characters")
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str):
            raise CredentialValidationError(
                f"field {key!r} must be a string or SecretStr, not {type(value).__name__}"
            )
        plain[key] = value
    return plain
