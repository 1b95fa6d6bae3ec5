"""Errors of the SLA domain."""

from crm_core.errors import ValidationFailed


class InvalidCalendar(ValidationFailed):
    code = "invalid_calendar"


class InvalidHolidayFile(ValidationFailed):
    code = "invalid_holiday_file"


class InvalidPolicy(ValidationFailed):
    code = "invalid_sla_policy"
