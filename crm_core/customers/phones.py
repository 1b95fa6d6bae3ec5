"""Phone numbers to E.164 and back: the one place that parses what people and PBXes write as a number."""

from __future__ import annotations

import phonenumbers

from crm_core.customers.errors import InvalidPhoneNumber


def normalize_phone(raw: str, region: str) -> str:
    """Return `raw` in E.164 (+15551230001) or raise InvalidPhoneNumber saying why."""
    text = (raw or "").strip()
    if not text:
        raise InvalidPhoneNumber("The phone number is empty.", number=raw)
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"{raw!r} is not a phone number: {exc._msg}", number=raw) from None
    if not phonenumbers.region_codes_for_country_code(parsed.country_code or 0):
        raise InvalidPhoneNumber(f"{raw!r} has an unknown country code +{parsed.country_code}.", number=raw)
    # Possible (right length for its country), not "valid": the numbering-plan metadata lags behind new ranges,
    # and a call center must not refuse a customer's real number because a library has not heard of it yet.
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhoneNumber(f"{raw!r} has the wrong number of digits for its country.", number=raw)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def caller_id_to_e164(caller_id: str, region: str) -> str | None:
    """Best-effort E.164 of a caller ID from the PBX; None for anonymous, internal or unparseable IDs."""
    if not caller_id or not any(ch.isdigit() for ch in caller_id) or len(caller_id.strip("+")) < 6:
        return None
    try:
        return normalize_phone(caller_id, region)
    except InvalidPhoneNumber:
        return None
