"""Where signed-off results go: the DICOM destinations of ``MEDVISION_DICOM_DESTINATIONS``.

The setting is a JSON list; each entry names a PACS node reached by C-STORE
(``{"name", "type": "c-store", "host", "port", "ae_title"}``, optionally
``calling_ae_title``, default ``MEDVISION_DICOM_AE_TITLE``) or by STOW-RS
(``{"name", "type": "stow-rs", "url", "token"}``).
Entries are validated at start-up (pydantic), so a typo stops the process with a message
naming the entry and the field, not a failed send hours later. The token is a secret: it is
never printed (``SecretStr``) and never audited.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)
from pydantic_settings import NoDecode

__all__ = ["CStoreDestination", "DicomDestination", "DicomDestinations", "StowDestination"]

#: Destination names appear in the exports list and the audit log: short and plain.
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _ae_title(value: str) -> str:
    """An AE title: 1-16 printable ASCII characters, no backslash, not only spaces."""
    stripped = value.strip()
    if not stripped or len(value) > 16 or "\\" in value or not value.isascii():
        raise ValueError("must be 1-16 ASCII characters without a backslash")
    if not all(32 <= ord(char) < 127 for char in value):
        raise ValueError("must not contain control characters")
    return stripped


class CStoreDestination(BaseModel):
    """A DICOM node that accepts C-STORE (a PACS's storage SCP)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN)
    type: Literal["c-store"]
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    ae_title: str
    #: The AE title MedVision calls with (the PACS may accept only known callers); default
    #: the listener's own, ``MEDVISION_DICOM_AE_TITLE``.
    calling_ae_title: str | None = None

    @field_validator("ae_title", "calling_ae_title")
    @classmethod
    def _check_ae(cls, value: str | None) -> str | None:
        return None if value is None else _ae_title(value)


class StowDestination(BaseModel):
    """A DICOMweb server that accepts STOW-RS (``POST {url}/studies``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN)
    type: Literal["stow-rs"]
    #: The DICOMweb root (the part before ``/studies``).
    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    token: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")


DicomDestination = Annotated[CStoreDestination | StowDestination, Field(discriminator="type")]


def check_unique_names(
    destinations: list[CStoreDestination | StowDestination],
) -> list[CStoreDestination | StowDestination]:
    """``destinations`` unchanged when their names are unique; ValueError naming a repeat."""
    seen: set[str] = set()
    for destination in destinations:
        if destination.name in seen:
            raise ValueError(f"destination name {destination.name!r} is used twice")
        seen.add(destination.name)
    return destinations


def _parse_json(value: object) -> object:
    """The environment's text parsed as JSON, with a message that says so when it is not."""
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else []
        except json.JSONDecodeError as exc:
            raise ValueError(f"must be a JSON list of destinations ({exc.msg})") from None
    return value


#: The type of ``Settings.dicom_destinations``: a JSON list with unique names.
DicomDestinations = Annotated[
    list[DicomDestination],
    NoDecode,
    BeforeValidator(_parse_json),
    AfterValidator(check_unique_names),
]


def find_destination(
    destinations: list[CStoreDestination | StowDestination], name: str
) -> CStoreDestination | StowDestination | None:
    """The configured destination called ``name``, or None (it was removed from settings)."""
    return next((item for item in destinations if item.name == name), None)
