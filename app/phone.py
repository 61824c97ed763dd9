"""Phone numbers to E.164, with the phonenumbers library.

rtb_e164() in schema.sql writes carriers' numbers the same way, more simply;
tests/test_shared_rules.py feeds both the same numbers.
"""

from __future__ import annotations

import phonenumbers


class InvalidNumber(ValueError):
    pass


def to_e164(raw: str, region: str = "US") -> str:
    """'(202) 555-0123', '2025550123' and '+1 202-555-0123' all become '+12025550123'."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as error:
        raise InvalidNumber(f"{raw!r} is not a phone number") from error
    if not phonenumbers.is_valid_number(number):
        raise InvalidNumber(f"{raw!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
