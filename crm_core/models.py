"""Imports every model so the one metadata (and Alembic) sees all tables."""

from crm_core.audit.models import AuditEntry
from crm_core.calls.codes import PauseReason
from crm_core.calls.followups import MissedCallFollowUp
from crm_core.calls.models import CallbackRequest, CallLeg, CallLog, Disposition
from crm_core.calls.wrapups import WrapUpDraft
from crm_core.customers.import_jobs import ImportJob
from crm_core.customers.models import Customer, CustomerEmail, CustomerPhone, Note, Payment, Tag
from crm_core.db import Base
from crm_core.recordings.models import (
    CallKeywordHit,
    KeywordPhrase,
    LegalHold,
    Recording,
    RecordingJob,
    RetentionRule,
    Transcript,
)
from crm_core.segments.models import Segment
from crm_core.sla.models import SlaCalendar, SlaClock, SlaEscalation, SlaEscalationRule, SlaPolicy
from crm_core.sms.models import (
    SmsCampaign,
    SmsCampaignRecipient,
    SmsConsentChange,
    SmsConversation,
    SmsMessage,
)
from crm_core.tickets.models import Ticket, TicketLink, TicketMessage
from crm_core.tokens.models import ApiToken
from crm_core.users.models import LoginThrottle, Role, User

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Base",
    "CallKeywordHit",
    "CallLeg",
    "CallLog",
    "CallbackRequest",
    "Customer",
    "CustomerEmail",
    "CustomerPhone",
    "Disposition",
    "ImportJob",
    "KeywordPhrase",
    "LegalHold",
    "LoginThrottle",
    "MissedCallFollowUp",
    "Note",
    "PauseReason",
    "Payment",
    "Recording",
    "RecordingJob",
    "RetentionRule",
    "Role",
    "Segment",
    "SlaCalendar",
    "SlaClock",
    "SlaEscalation",
    "SlaEscalationRule",
    "SlaPolicy",
    "SmsCampaign",
    "SmsCampaignRecipient",
    "SmsConsentChange",
    "SmsConversation",
    "SmsMessage",
    "Tag",
    "Ticket",
    "TicketLink",
    "TicketMessage",
    "Transcript",
    "User",
    "WrapUpDraft",
]
