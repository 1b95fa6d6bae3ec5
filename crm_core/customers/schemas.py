"""Typed inputs and outputs of the customers service."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class PhoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str
    label: str = "mobile"
    is_primary: bool = False


class CustomerIn(BaseModel):
    """What a person (or an import row) gives to create or update a customer."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    kind: Literal["person", "company"] = "person"
    parent_id: str | None = None
    title: str | None = None
    phones: list[PhoneIn] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    street: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: str | None = Field(default=None, min_length=2, max_length=2)
    timezone: str | None = None
    language: str | None = None
    tags: list[str] = Field(default_factory=list)
    owner_id: str | None = None
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    vip_tier: str | None = None


class DuplicateCandidate(BaseModel):
    id: str
    name: str
    reason: str
