"""Imports every model so the one metadata (and Alembic) sees all tables."""

from crm_core.audit.models import AuditEntry
from crm_core.calls.codes import PauseReason
from crm_core.calls.followups import MissedCallFollowUp
from crm_core.calls.models import CallbackRequest, CallLeg, CallLog, Disposition
from crm_core.calls.wrapups import WrapUpDraft
from crm_core.customers.import_jobs import ImportJob
from crm_core.customers.models import Customer, CustomerEmail, CustomerPhone, Note, Payment, Tag
from crm_core.db import Base
from crm_core.segments.models import Segment
from crm_core.sms.models import (
    SmsCampaign,
    SmsCampaignRecipient,
    SmsConsentChange,
    SmsConversation,
    SmsMessage,
)
from crm_core.tickets.models import Ticket, TicketLink
from crm_core.users.models import Role, User

__all__ = [
    "AuditEntry",
    "Base",
    "CallLeg",
    "CallLog",
    "CallbackRequest",
    "Customer",
    "CustomerEmail",
    "CustomerPhone",
    "Disposition",
    "ImportJob",
    "MissedCallFollowUp",
    "Note",
    "PauseReason",
    "Payment",
    "Role",
    "Segment",
    "SmsCampaign",
    "SmsCampaignRecipient",
    "SmsConsentChange",
    "SmsConversation",
    "SmsMessage",
    "Tag",
    "Ticket",
    "TicketLink",
    "User",
    "WrapUpDraft",
]
