"""Typed inputs and outputs of the customers service; text limits are the columns' own (crm_core.inputs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from crm_core.calls.models import CallLog
from crm_core.customers.models import Customer, CustomerEmail, CustomerPhone, Tag
from crm_core.inputs import LONG_TEXT, MULTI_LINE, SINGLE_LINE, column_length


def _line(attribute: Any, *, min_length: int = 0) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=column_length(attribute))


MAX_PHONES = 20
MAX_EMAILS = 20
MAX_TAGS = 50
RAW_NUMBER_LENGTH = 64  # as typed, before E.164 (spaces, dashes, brackets)

Name = Annotated[str, _line(Customer.name, min_length=1), SINGLE_LINE]
Title = Annotated[str, _line(Customer.title), SINGLE_LINE]
Street = Annotated[str, _line(Customer.street), SINGLE_LINE]
City = Annotated[str, _line(Customer.city), SINGLE_LINE]
PostalCode = Annotated[str, _line(Customer.postal_code), SINGLE_LINE]
Country = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{2}$"), SINGLE_LINE]
TimeZone = Annotated[str, _line(Customer.timezone), SINGLE_LINE]
Language = Annotated[str, _line(Customer.language), SINGLE_LINE]
VipTier = Annotated[str, _line(Customer.vip_tier), SINGLE_LINE]
RecordId = Annotated[str, _line(Customer.id), SINGLE_LINE]
Email = Annotated[str, _line(CustomerEmail.email), SINGLE_LINE]
TagName = Annotated[str, _line(Tag.name), SINGLE_LINE]
RawNumber = Annotated[str, StringConstraints(strip_whitespace=True, max_length=RAW_NUMBER_LENGTH), SINGLE_LINE]
PhoneLabel = Annotated[str, _line(CustomerPhone.label, min_length=1), SINGLE_LINE]
Linkedid = Annotated[str, _line(CallLog.linkedid), SINGLE_LINE]
NoteText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=LONG_TEXT), MULTI_LINE]


class PhoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: RawNumber
    label: PhoneLabel = "mobile"
    is_primary: bool = False


class CustomerIn(BaseModel):
    """What a person (or an import row) gives to create or update a customer."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name
    kind: Literal["person", "company"] = "person"
    parent_id: RecordId | None = None
    title: Title | None = None
    phones: list[PhoneIn] = Field(default_factory=list, max_length=MAX_PHONES)
    emails: list[Email] = Field(default_factory=list, max_length=MAX_EMAILS)
    street: Street | None = None
    city: City | None = None
    postal_code: PostalCode | None = None
    country: Country | None = None
    timezone: TimeZone | None = None
    language: Language | None = None
    tags: list[TagName] = Field(default_factory=list, max_length=MAX_TAGS)
    owner_id: RecordId | None = None
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    vip_tier: VipTier | None = None


class NewCustomerRequest(BaseModel):
    """What the agent desktop posts to create a customer from a pop: one phone, one email, maybe the call."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    phone: RawNumber = ""
    email: Email = ""
    linkedid: Linkedid | None = None
    allow_duplicate: bool = False


class CustomerChange(BaseModel):
    """The fields a person may change on the customer page; an empty text clears the field (the name excepted)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    title: Title | None = None
    street: Street | None = None
    city: City | None = None
    postal_code: PostalCode | None = None
    country: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^([A-Za-z]{2})?$")] | None = None
    timezone: TimeZone | None = None
    language: Language | None = None
    vip_tier: VipTier | None = None
    phones: list[RawNumber] | None = Field(default=None, max_length=MAX_PHONES)


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: NoteText


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merge_id: RecordId


class DuplicateCandidate(BaseModel):
    id: str
    name: str
    reason: str
