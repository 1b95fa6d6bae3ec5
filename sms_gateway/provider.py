"""The SMS provider port: send one message and get the provider's id, or a typed SmsSendError."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    """One message as the outbox hands it to a provider. `reference` is our id of it (the outbox row)."""

    reference: str
    to: str
    sender: str
    body: str
    status_callback: str | None = None
    validity_period_s: int | None = None


@dataclass(frozen=True, slots=True)
class AcceptedSms:
    provider_id: str
    to: str
    sender: str
    body: str
    created_at: datetime | None


class SmsProvider(Protocol):
    async def send(self, message: OutgoingSms) -> str:
        """Hand the message over; return the provider's id for it or raise SmsSendError."""

    async def accepted_since(self, *, to: str, sender: str, since: datetime) -> list[AcceptedSms]:
        """Messages to `to` from `sender` the provider accepted since `since` (to settle sends a crash cut off)."""

    async def close(self) -> None: ...
