"""Errors of the customers domain."""

from crm_core.errors import Conflict, ValidationFailed


class InvalidPhoneNumber(ValidationFailed):
    code = "invalid_phone_number"


class InvalidEmail(ValidationFailed):
    code = "invalid_email"


class DuplicateCustomer(Conflict):
    """Creating would duplicate existing customers; `details["candidates"]` lists them."""

    code = "duplicate_customer"
