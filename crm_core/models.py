"""Imports every model so the one metadata (and Alembic) sees all tables."""

from crm_core.audit.models import AuditEntry
from crm_core.calls.codes import PauseReason
from crm_core.calls.followups import MissedCallFollowUp
from crm_core.calls.models import CallbackRequest, CallLeg, CallLog, Disposition
from crm_core.calls.wrapups import WrapUpDraft
from crm_core.customers.import_jobs import ImportJob
from crm_core.customers.models import Customer, CustomerEmail, CustomerPhone, Note, Payment, Tag
from crm_core.db import Base
from crm_core.kb.models import KbSolution, KbTicketSolution
from crm_core.pbx.models import PbxUserMapping
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
    SmsAutomation,
    SmsAutomationSend,
    SmsCampaign,
    SmsCampaignRecipient,
    SmsConsentChange,
    SmsConversation,
    SmsMessage,
    SmsSender,
)
from crm_core.tickets.csat_models import IntakeThrottle, TicketCsat
from crm_core.tickets.models import Ticket, TicketLink, TicketMessage, TicketTag, TicketWatcher
from crm_core.tokens.models import ApiToken
from crm_core.users.models import LoginThrottle, Role, User
from crm_core.webhooks.models import WebhookDelivery, WebhookSubscription

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
    "IntakeThrottle",
    "KbSolution",
    "KbTicketSolution",
    "KeywordPhrase",
    "LegalHold",
    "LoginThrottle",
    "MissedCallFollowUp",
    "Note",
    "PauseReason",
    "Payment",
    "PbxUserMapping",
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
    "SmsAutomation",
    "SmsAutomationSend",
    "SmsCampaign",
    "SmsCampaignRecipient",
    "SmsConsentChange",
    "SmsConversation",
    "SmsMessage",
    "SmsSender",
    "Tag",
    "Ticket",
    "TicketCsat",
    "TicketLink",
    "TicketMessage",
    "TicketTag",
    "TicketWatcher",
    "Transcript",
    "User",
    "WebhookDelivery",
    "WebhookSubscription",
    "WrapUpDraft",
]
