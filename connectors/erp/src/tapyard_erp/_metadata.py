"""OData ``$metadata`` (EDMX, versions 2.0 and 4.0): entity sets, their keys and
their property types, and the pydantic record models built from them."""

from __future__ import annotations

import datetime as dt
import decimal
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

__all__ = ["EntitySet", "Property", "parse_metadata", "record_model"]

#: EDM primitive types and the Python types their values validate to.
_EDM_TYPES: dict[str, Any] = {
    "Edm.String": str,
    "Edm.Guid": str,
    "Edm.Boolean": bool,
    "Edm.Byte": int,
    "Edm.SByte": int,
    "Edm.Int16": int,
    "Edm.Int32": int,
    "Edm.Int64": int,
    "Edm.Decimal": decimal.Decimal,
    "Edm.Double": float,
    "Edm.Single": float,
    "Edm.DateTimeOffset": dt.datetime,
    "Edm.DateTime": dt.datetime,  # OData v2
    "Edm.Date": dt.date,
    "Edm.TimeOfDay": str,
    "Edm.Time": str,  # OData v2: an ISO 8601 duration such as PT12H30M00S
    "Edm.Duration": str,
    "Edm.Binary": str,
}

#: Property names that usually hold the last-modified time, most specific first.
MODIFIED_CANDIDATES = (
    "lastModifiedDateTime",  # Business Central, Microsoft Graph
    "LastChangeDateTime",  # SAP S/4HANA
    "modifiedAt",  # SAP CAP's managed aspect
    "ModifiedDateTime",  # Dynamics 365 Finance and Operations
    "modifiedon",  # Dataverse
    "SystemModifiedAt",
    "LastChangeDate",  # SAP, date only
    "ChangedOn",
)
_DATE_TYPES = frozenset({"Edm.DateTimeOffset", "Edm.DateTime", "Edm.Date"})


@dataclass(frozen=True)
class Property:
    """One structural property of an entity type."""

    name: str
    type: str
    nullable: bool = True

    @property
    def is_date(self) -> bool:
        return self.type in _DATE_TYPES


@dataclass
class EntitySet:
    """An entity set of the service, with its entity type's key and properties."""

    name: str
    entity_type: str
    key: tuple[str, ...]
    properties: dict[str, Property] = field(default_factory=dict)

    def modified_field(self) -> str | None:
        """The first property named like a last-modified time that holds a date."""
        for name in MODIFIED_CANDIDATES:
            prop = self.properties.get(name)
            if prop is not None and prop.is_date:
                return name
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def parse_metadata(xml: bytes | str) -> tuple[str, dict[str, EntitySet]]:
    """The OData version (``"2.0"`` or ``"4.0"``) and the entity sets of a ``$metadata`` document.

    Namespaces are matched by local name, so EDMX 1.0 (v2, with the
    ``DataServiceVersion`` attribute) and EDMX 4.0 both work. Raises
    ``ValueError`` when the document is not EDMX.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ValueError(f"not XML ({exc})") from exc
    if _local(root.tag) != "Edmx":
        raise ValueError(f"not an EDMX document (root element {_local(root.tag)!r})")
    version = "4.0" if root.get("Version", "").startswith("4") else "2.0"
    types: dict[str, tuple[tuple[str, ...], dict[str, Property]]] = {}
    containers: list[ET.Element] = []
    aliases: dict[str, str] = {}
    for services in _children(root, "DataServices"):
        for schema in _children(services, "Schema"):
            namespace = schema.get("Namespace", "")
            if schema.get("Alias"):
                aliases[schema.get("Alias", "")] = namespace
            for entity_type in _children(schema, "EntityType"):
                keys = tuple(
                    ref.get("Name", "")
                    for key in _children(entity_type, "Key")
                    for ref in _children(key, "PropertyRef")
                )
                props = {
                    p.get("Name", ""): Property(
                        p.get("Name", ""), p.get("Type", "Edm.String"), p.get("Nullable", "true") != "false"
                    )
                    for p in _children(entity_type, "Property")
                }
                types[f"{namespace}.{entity_type.get('Name')}"] = (keys, props)
            containers.extend(_children(schema, "EntityContainer"))
    sets: dict[str, EntitySet] = {}
    for container in containers:
        for entity_set in _children(container, "EntitySet"):
            type_name = entity_set.get("EntityType", "")
            prefix, _, short = type_name.rpartition(".")
            type_name = f"{aliases.get(prefix, prefix)}.{short}"
            if type_name not in types:
                continue
            keys, props = types[type_name]
            name = entity_set.get("Name", "")
            sets[name] = EntitySet(name, type_name, keys, dict(props))
    return version, sets


def _annotation(prop: Property) -> Any:
    if prop.type.startswith("Collection("):
        kind: Any = list[Any]
    else:
        # Enumerations and complex types arrive as strings and objects.
        kind = _EDM_TYPES.get(prop.type, Any)
    return kind | None


def _field_name(name: str) -> str:
    return re.sub(r"\W", "_", name)


def record_model(entity_set: EntitySet, selected: list[str] | None = None) -> type[BaseModel]:
    """A pydantic model of one record of ``entity_set`` (only ``selected`` properties, if given).

    Every property is optional except the key (servers omit nulls, and
    ``$select`` may leave fields out); annotations such as ``@odata.etag``
    and OData v2's ``__metadata`` are ignored.
    """
    fields: dict[str, Any] = {}
    for name, prop in entity_set.properties.items():
        if selected is not None and name not in selected and name not in entity_set.key:
            continue
        if name in entity_set.key:
            fields[name] = (_EDM_TYPES.get(prop.type, Any), ...)
        else:
            fields[name] = (_annotation(prop), None)
    model_name = "".join(part.capitalize() for part in re.split(r"\W+", entity_set.name) if part)
    return create_model(
        model_name or "Record",
        __config__=ConfigDict(extra="ignore", protected_namespaces=()),
        **{_field_name(k): v for k, v in fields.items()},
    )
