"""Errors of the SMS domain, each with a stable code."""

from __future__ import annotations

from crm_core.errors import Conflict


class RecipientOptedOut(Conflict):
    code = "opted_out"


class ConversationClosed(Conflict):
    code = "conversation_closed"
