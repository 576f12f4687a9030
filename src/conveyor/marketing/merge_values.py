"""A member's merge field values as Mailchimp checks them: one rule per field type.

`merge_value(field, value)` answers the value as stored, or raises `InvalidMergeValue` with
the message the real service puts in the `errors` array of its "Your merge fields were
invalid." answer. The messages for text, number, address, date, birthday, dropdown and
radio fields and for a missing required value are the real service's, as recorded in public
client code; those for phone, URL and zip fields are Conveyor's (docs/compatibility.md).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from conveyor.domain.audience import MergeFieldDef

REQUIRED_MESSAGE = "Please enter a value"
NUMBER_MESSAGE = "Please enter a number"
ADDRESS_MESSAGE = "Please enter a complete address"
DATE_MESSAGE = "Please enter the date"
BIRTHDAY_MESSAGE = "Please enter a month (01-12) and a day (01-31)"
PHONE_MESSAGE = "Please enter a valid phone number"
URL_MESSAGE = "Please enter a valid URL"
ZIP_MESSAGE = "Please enter a valid zip code"


class InvalidMergeValue(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def merge_value(field: MergeFieldDef, value: Any) -> Any:
    """`value` for `field` as stored; "" always clears a field (required ones are checked
    apart, see `member_rules`)."""
    if field.type == "address":
        return _address(value)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidMergeValue(REQUIRED_MESSAGE)
    if value == "":
        return value
    check = _RULES.get(field.type)
    return value if check is None else check(field, value)


def _number(field: MergeFieldDef, value: str | int | float) -> Any:
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            raise InvalidMergeValue(NUMBER_MESSAGE) from None
    return value


_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_SLASHED_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")


def _date(field: MergeFieldDef, value: str | int | float) -> str:
    """A calendar date, as YYYY-MM-DD (how the real service answers dates), from that form
    or the field's own (`MM/DD/YYYY` unless its `date_format` says `DD/MM/YYYY`)."""
    text = str(value).strip() if isinstance(value, str) else ""
    if found := _ISO_DATE.fullmatch(text):
        year, month, day = (int(part) for part in found.groups())
    elif found := _SLASHED_DATE.fullmatch(text):
        first, second, year = (int(part) for part in found.groups())
        month, day = (second, first) if _day_first(field) else (first, second)
    else:
        raise InvalidMergeValue(DATE_MESSAGE)
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        raise InvalidMergeValue(DATE_MESSAGE) from None


_BIRTHDAY = re.compile(r"(\d{1,2})/(\d{1,2})")


def _birthday(field: MergeFieldDef, value: str | int | float) -> str:
    """A month and a day in the field's form (`MM/DD` unless `date_format` is `DD/MM`),
    zero-padded; 02/29 is a birthday, 02/30 is not."""
    found = _BIRTHDAY.fullmatch(value.strip()) if isinstance(value, str) else None
    if found is None:
        raise InvalidMergeValue(BIRTHDAY_MESSAGE)
    first, second = (int(part) for part in found.groups())
    month, day = (second, first) if _day_first(field) else (first, second)
    try:
        date(2000, month, day)  # a leap year: every birthday exists in it
    except ValueError:
        raise InvalidMergeValue(BIRTHDAY_MESSAGE) from None
    if _day_first(field):
        return f"{day:02d}/{month:02d}"
    return f"{month:02d}/{day:02d}"


def _day_first(field: MergeFieldDef) -> bool:
    return field.date_format.upper().startswith("DD")


_PHONE = re.compile(r"\+?[0-9 ().\-/]*[0-9][0-9 ().\-/]*(\s*(x|ext\.?)\s*[0-9]+)?", re.IGNORECASE)


def _phone(field: MergeFieldDef, value: str | int | float) -> str:
    """Digits with the usual punctuation and an optional extension; a US-format field needs
    ten digits (an eleventh, a leading 1, is the country code)."""
    text = str(value).strip()
    if not _PHONE.fullmatch(text):
        raise InvalidMergeValue(PHONE_MESSAGE)
    if field.phone_format.upper() == "US":
        number = re.split(r"(?i)\s*(?:x|ext\.?)\s*", text)[0]
        digits = re.sub(r"\D", "", number)
        if len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        if len(digits) != 10:
            raise InvalidMergeValue(PHONE_MESSAGE)
    return text


def _url(field: MergeFieldDef, value: str | int | float) -> str:
    """An http(s) URL with a host; the scheme may be left out, as in a form field."""
    if not isinstance(value, str) or any(c.isspace() for c in value.strip()):
        raise InvalidMergeValue(URL_MESSAGE)
    text = value.strip()
    candidate = text if "://" in text else f"http://{text}"
    try:
        parts = urlsplit(candidate)
        host = parts.hostname
    except ValueError:
        raise InvalidMergeValue(URL_MESSAGE) from None
    if parts.scheme not in ("http", "https") or not host or "." not in host.strip("."):
        raise InvalidMergeValue(URL_MESSAGE)
    return text


_ZIP = re.compile(r"\d{5}(-\d{4})?")


def _zip(field: MergeFieldDef, value: str | int | float) -> str:
    """A US zip code (the real service's zip fields are US only)."""
    text = f"{value:05d}" if isinstance(value, int) else str(value).strip()
    if not _ZIP.fullmatch(text):
        raise InvalidMergeValue(ZIP_MESSAGE)
    return text


def _choice(field: MergeFieldDef, value: str | int | float) -> Any:
    if str(value) not in field.choices:
        raise InvalidMergeValue(f"Value must be one of: {', '.join(field.choices)} (not {value})")
    return str(value)


_RULES = {
    "number": _number,
    "date": _date,
    "birthday": _birthday,
    "phone": _phone,
    "url": _url,
    "imageurl": _url,
    "zip": _zip,
    "dropdown": _choice,
    "radio": _choice,
}

_ADDRESS_PARTS = ("addr1", "addr2", "city", "state", "zip", "country")
_ADDRESS_REQUIRED = ("addr1", "city", "state", "zip")


def _address(value: Any) -> Any:
    """An address as stored: a string is kept as given (the real service takes one, its
    parts separated by two spaces); an object must give addr1, city, state and zip as text
    (a number is taken as text) and keeps only the six address parts, so nothing arbitrary
    (or arbitrarily deep) is stored."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise InvalidMergeValue(ADDRESS_MESSAGE)
    address: dict[str, str] = {}
    for part in _ADDRESS_PARTS:
        item = value.get(part, "")
        if item is None:
            item = ""
        if isinstance(item, int | float) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str):
            raise InvalidMergeValue(ADDRESS_MESSAGE)
        address[part] = item
    if any(not address[part].strip() for part in _ADDRESS_REQUIRED):
        raise InvalidMergeValue(ADDRESS_MESSAGE)
    return address
