"""Reference documents shipped with Conveyor: Mailchimp's OpenAPI subset (see SOURCE.md).

Read through `importlib.resources`, so they are found in a checkout, an editable install and
a wheel alike.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

MARKETING_SUBSET = "mailchimp-marketing-subset.openapi.json"


def marketing_subset_text() -> str:
    """The OpenAPI document of the paths Conveyor serves, as Mailchimp publishes them."""
    return (files(__name__) / MARKETING_SUBSET).read_text(encoding="utf-8")


def marketing_subset() -> dict[str, Any]:
    """The same document parsed; a fresh copy on every call, so callers may change it."""
    document: dict[str, Any] = json.loads(marketing_subset_text())
    return document
