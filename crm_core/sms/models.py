"""SMS messages to and from customers (the outbox too), the conversations they form, and opt-out changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.db import Base, new_id, utcnow

# An outbound message's life: written `queued` before anything is sent, `sending` while one worker holds it,
# `accepted` once the provider gave it an id, then what the status callbacks say. Inbound ones are `received`.
OUTBOUND_STATUSES = ("queued", "sending", "accepted", "sent", "delivered", "undelivered", "failed", "opted_out")
FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed", "opted_out"})


class SmsConversation(Base):
    """A thread with one customer's number: open until an agent closes it; a new text reopens a new one."""

    __tablename__ = "sms_conversations"
    __table_args__ = (
        Index("ix_sms_conversations_number_status", "number", "status"),
        Index("ix_sms_conversations_status_assignee", "status", "assignee_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    customer_id: Mapped[str | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), default=None, index=True
    )
    number: Mapped[str] = mapped_column(String(20))  # the customer's, E.164
    our_number: Mapped[str] = mapped_column(String(40))  # the sender the customer wrote to (or a Messaging Service)
    status: Mapped[str] = mapped_column(String(8), default="open")  # open | closed
    assignee_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    queue: Mapped[str | None] = mapped_column(String(64), default=None)
    last_message_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_body: Mapped[str] = mapped_column(String(160), default="")
    unread: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)


class SmsMessage(Base):
    __tablename__ = "sms_messages"
    __table_args__ = (
        Index("ix_sms_messages_customer_created", "customer_id", "created_at"),
        Index("ix_sms_messages_status_due", "status", "due_at"),
        Index("ix_sms_messages_conversation_created", "conversation_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"), default=None)
    conversation_id: Mapped[str | None] = mapped_column(
        ForeignKey("sms_conversations.id", ondelete="SET NULL"), default=None
    )
    direction: Mapped[str] = mapped_column(String(8))  # inbound | outbound
    from_number: Mapped[str] = mapped_column(String(40))
    to_number: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="received")
    provider_sid: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    encoding: Mapped[str] = mapped_column(String(8), default="GSM-7")  # GSM-7 | UCS-2
    segments: Mapped[int] = mapped_column(Integer, default=1)
    author_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime | None] = mapped_column(default=None)  # when a queued message may be sent
    # the latest moment the provider may still deliver it (a campaign's quiet hours start then)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    error_code: Mapped[str | None] = mapped_column(String(32), default=None)  # ours: opted_out, invalid_number …
    provider_error: Mapped[int | None] = mapped_column(Integer, default=None)  # Twilio's: 21610, 30003 …
    error_detail: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)


class SmsConsentChange(Base):
    """Every opt-out and opt-in of a number, with when and why (a keyword, a provider refusal, an agent)."""

    __tablename__ = "sms_consent_changes"
    __table_args__ = (Index("ix_sms_consent_changes_number_at", "number", "at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(String(20))
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"), default=None)
    opted_out: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(16))  # keyword | provider | agent
    detail: Mapped[str] = mapped_column(String(64), default="")  # the keyword, the provider's code, the agent
    message_id: Mapped[str | None] = mapped_column(String(32), default=None)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class SmsCampaign(Base):
    """A marketer's campaign: one template sent from one sender to an audience, outside each recipient's quiet
    hours (in the recipient's own time zone)."""

    __tablename__ = "sms_campaigns"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    template: Mapped[str] = mapped_column(Text)
    sender: Mapped[str] = mapped_column(String(40))
    # draft | running | paused | cancelled | done
    status: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    quiet_start_hour: Mapped[int] = mapped_column(Integer, default=21)  # no message from 21:00 …
    quiet_end_hour: Mapped[int] = mapped_column(Integer, default=9)  # … to 09:00, recipient's local time
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    # several senders sharing the campaign (each recipient keeps one of them); empty: `sender` alone, and an empty
    # `sender` too means each recipient's country default
    sender_pool: Mapped[list[str]] = mapped_column(JSON, default=list)
    scheduled_at: Mapped[datetime | None] = mapped_column(default=None)  # nothing goes before this moment
    audience: Mapped[str] = mapped_column(String(200), default="")  # how the audience was chosen, for the screens
    # an uploaded CSV's refused rows ([line, why], the first 1,000) and how many duplicates were dropped
    audience_report: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class SmsCampaignRecipient(Base):
    """One recipient of a campaign. `pending` until the dispatcher writes its message into the outbox (in the same
    transaction as it marks the recipient `queued`: a crash does both or neither); then the message's own status
    is the recipient's."""

    __tablename__ = "sms_campaign_recipients"
    __table_args__ = (
        UniqueConstraint("campaign_id", "number"),
        Index("ix_sms_campaign_recipients_status_due", "status", "due_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("sms_campaigns.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"), default=None)
    number: Mapped[str] = mapped_column(String(20))
    # pending | queued | opted_out | failed | skipped
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(String(255), default=None)
    message_id: Mapped[str | None] = mapped_column(String(32), default=None)
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    # merge values from an uploaded CSV row (a number without a customer record has no other)
    merge_values: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


SENDER_KINDS = ("long_code", "toll_free", "short_code", "messaging_service")


class SmsSender(Base):
    """A number or Messaging Service we send from, with its own rate (segments a second), its price per segment,
    and whether it is the default for its country. A US long code must be registered for A2P 10DLC before any
    campaign may use it."""

    __tablename__ = "sms_senders"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    address: Mapped[str] = mapped_column(String(40), unique=True)  # E.164, a short code's digits, or MG…
    kind: Mapped[str] = mapped_column(String(20))  # one of SENDER_KINDS
    country: Mapped[str] = mapped_column(String(2))  # ISO 3166 alpha-2
    label: Mapped[str] = mapped_column(String(100), default="")
    mps: Mapped[float] = mapped_column(Float, default=1.0)
    price_per_segment: Mapped[float] = mapped_column(Float, default=0.0079)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    a2p_10dlc_registered: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SmsAutomation(Base):
    """A switchable automatic text: `missed_call` (text-back after an abandoned call), `ticket_created`,
    `ticket_resolved`, `feedback` (a thank-you some days after a contact)."""

    __tablename__ = "sms_automations"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    template: Mapped[str] = mapped_column(Text)
    delay_days: Mapped[int] = mapped_column(Integer, default=0)  # the feedback request waits this long
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SmsAutomationSend(Base):
    """One automatic text for one occasion (a call's Linkedid, a ticket's event): the unique key makes it once."""

    __tablename__ = "sms_automation_sends"
    __table_args__ = (UniqueConstraint("automation", "occasion"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    automation: Mapped[str] = mapped_column(String(32))
    occasion: Mapped[str] = mapped_column(String(100))
    customer_id: Mapped[str | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), default=None, index=True
    )
    message_id: Mapped[str | None] = mapped_column(String(32), default=None)
    outcome: Mapped[str] = mapped_column(String(16))  # queued | opted_out | no_number | failed
    detail: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
