"""The configuration the object-store connectors (aws, azure, gcp) share, apart from
:mod:`tapyard.sources._objects` so that loading a connector's config model imports no
HTTP or SDK code."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from tapyard.files import FORMATS, FileFormat

__all__ = ["ObjectStoreConfig"]


def _worded(text: str, model: type[Any]) -> str:
    """``text`` with the store's own words (:attr:`ObjectStoreConfig.words`) in it."""
    for word, meaning in {**ObjectStoreConfig.words, **getattr(model, "words", {})}.items():
        text = text.replace("{" + word + "}", meaning)
    return text


def _in_the_store_s_words(schema: dict[str, Any], model: type[Any]) -> None:
    """Put the store's own words into the JSON Schema's descriptions of the shared fields."""
    for spec in schema.get("properties", {}).values():
        if isinstance(spec.get("description"), str):
            spec["description"] = _worded(spec["description"], model)


class ObjectStoreConfig(BaseModel):
    """What an object-store connector's configuration holds whatever the store: the
    objects under a prefix, the file formats its records stream reads, a row schema,
    rows per page, and a request rate; and its endpoint URLs, checked the same way.

    A connector subclasses it with its own fields (where the store is, its client's
    retries and timeouts) and says in :attr:`words` what the store calls its objects
    and their keys, and the name of its records stream: its JSON Schema's descriptions
    speak of them (``{objects}``, ``{key}`` and ``{records}`` in the fields'
    descriptions are those words).
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=_in_the_store_s_words)

    #: the store's words, put into the descriptions of the JSON Schema
    words: ClassVar[dict[str, str]] = {"objects": "objects", "key": "key", "records": "records"}
    #: fields holding an endpoint URL: each must start with ``http://`` or ``https://``
    #: and is kept without a trailing ``/``
    url_fields: ClassVar[frozenset[str]] = frozenset()

    prefix: str = Field("", description="Only {objects} whose {key} starts with this.")
    formats: list[FileFormat] = Field(
        list(FORMATS), description="File formats {records} reads (by suffix: .csv, .jsonl/.ndjson, .parquet)."
    )
    record_schema: dict[str, Any] | None = Field(
        None,
        description="A JSON Schema of one row: {records} then writes typed columns and sends rows "
        "that do not fit to dead letters. Without it each row is kept whole in a JSON column 'data'.",
    )
    records_page_size: int = Field(1000, ge=1, le=100_000, description="Rows of {records} per page.")
    requests_per_second: float | None = Field(
        None, gt=0, description="Requests per second at most, for every run of the credential (--rate overrides it)."
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """The store's words in its fields' descriptions too, for code that reads them
        from ``model_fields`` (the JSON Schema gets them from ``_in_the_store_s_words``)."""
        super().__pydantic_init_subclass__(**kwargs)
        for name, info in cls.model_fields.items():
            inherited = ObjectStoreConfig.model_fields.get(name)
            # a field shared with the base's (not copied) keeps the template: the base
            # and every other store read it too
            if info.description and info is not inherited:
                info.description = _worded(info.description, cls)

    @field_validator("*")
    @classmethod
    def _url(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name not in cls.url_fields or value is None:
            return value
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ValueError(f"{info.field_name} must start with http:// or https://")
        return value.rstrip("/") if value else value
