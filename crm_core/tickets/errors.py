"""Errors of the tickets domain."""

from crm_core.errors import ValidationFailed


class InvalidTicketChange(ValidationFailed):
    code = "invalid_ticket_change"
