"""Timestamps as the Marketing API takes them, and the one form it answers with.

Mailchimp's spec lets a member's `timestamp_opt` / `timestamp_signup` be ISO 8601, or
`YYYY-MM-DD HH:MM[:SS]`, or `YYYY-MM-DDTHH:MM:SS[.mmm]+hhmm`, or `YYYY-MM-DD HH:MM:SS ZONE`;
filters such as `since_last_changed` take ISO 8601. Conveyor stores and answers every one of
them as `YYYY-MM-DDTHH:MM:SS+00:00`, the form the real service answers with, so stored
timestamps compare correctly as text.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_SPACED = re.compile(r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}(?::\d{2})?)")
_ZONED = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) ([A-Z][A-Z0-9+\-]{1,4})")
# Zone names the spec's `YYYY-MM-DD HH:MM:SS ZONE` form may carry that have one meaning.
_ZONES = {
    "UTC": 0, "GMT": 0, "Z": 0,
    "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
}  # fmt: skip


def parse_timestamp(text: str) -> datetime | None:
    """The moment `text` names, in UTC, or None when it is none of the accepted forms. A
    time without a zone is taken as UTC."""
    text = text.strip()
    if found := _ZONED.fullmatch(text):
        hours = _ZONES.get(found.group(2))
        if hours is None:
            return None
        local = _fromisoformat(found.group(1))
        if local is None:
            return None
        return local.replace(tzinfo=timezone(timedelta(hours=hours))).astimezone(UTC)
    if found := _SPACED.fullmatch(text):
        text = f"{found.group(1)}T{found.group(2)}"
    moment = _fromisoformat(text)
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _fromisoformat(text: str) -> datetime | None:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ][0-9:.,+\-Z]+)?", text):
        return None  # fromisoformat takes forms (week dates, bare years) the API does not
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def answer_form(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS+00:00`, the form the real service answers with."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()
