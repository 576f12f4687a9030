"""For receivers of batch webhooks: decode the form body, check the signature.

A delivery is ``application/x-www-form-urlencoded`` in PHP's query-string style::

    type=batch_operation_completed&fired_at=2017-02-10 14:59:37
    &data[id]=1234ab56cd&data[status]=finished&data[total_operations]=3 …
    &data[_links][0][rel]=parent&data[_links][0][href]=https://…

:func:`parse_webhook_body` turns that into the nested dict it stands for; numbers arrive as
strings and the known counters become ints again. Verify the signature on the *raw* bytes,
before parsing: re-encoding a parsed form never gives the same bytes back.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import parse_qsl

from conveyor.client.models import Batch
from conveyor.domain import webhook_signature
from conveyor.domain.webhook_signature import DEFAULT_TOLERANCE_SECONDS

SIGNATURE_HEADER = webhook_signature.HEADER

# Only fields known to be counts are converted: a blanket "digits become ints" would turn a
# ZIP code "02134" into 2134 and an all-digit batch or list id into a number.
INT_FIELDS: frozenset[str] = frozenset(
    {"total_operations", "finished_operations", "errored_operations", "web_id"}
)

_KEY = re.compile(r"([^\[\]]*)((?:\[[^\[\]]*\])*)")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_CANONICAL_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")


def _key_path(key: str) -> list[str]:
    match = _KEY.fullmatch(key)
    if match is None or not match.group(1):
        # Not "name[a][b]" (an unclosed bracket, a leading "["): the key is taken literally.
        return [key]
    return [match.group(1), *_SEGMENT.findall(match.group(2))]


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _listify(value) for key, value in node.items()}
    keys = list(converted)
    if keys and all(key.isascii() and key.isdigit() for key in keys):
        indexes = sorted(int(key) for key in keys)
        # Only 0..n-1 becomes a list; sparse indexes stay a dict so that nothing is renumbered.
        if indexes == list(range(len(indexes))):
            return [converted[str(index)] for index in indexes]
    return converted


def parse_webhook_body(
    raw: bytes | str, *, int_fields: Collection[str] = INT_FIELDS
) -> dict[str, Any]:
    """Decode a form-encoded webhook body into a nested dict.

    ``data[_links][0][rel]=self`` becomes ``{"data": {"_links": [{"rel": "self"}]}}``;
    ``key[]`` appends. Values of keys named in ``int_fields`` become ints when they are
    integers. A key used both as a value and as a container raises ``ValueError``.
    """
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        path = _key_path(key)
        node = root
        for depth, segment in enumerate(path):
            if segment == "" and depth:
                # "key[]" appends, as PHP does: the next free index of this container.
                segment = str(len(node))
            last = depth == len(path) - 1
            if last:
                if isinstance(node.get(segment), dict):
                    raise ValueError(f"{key!r} sets a value where other keys put a group")
                if segment in int_fields and _CANONICAL_INT.fullmatch(value):
                    node[segment] = int(value)
                else:
                    node[segment] = value
            else:
                child = node.setdefault(segment, {})
                if not isinstance(child, dict):
                    raise ValueError(f"{key!r} puts a group where another key set a value")
                node = child
    # The top level stays a dict whatever its keys: callers index it by field name.
    return {key: _listify(value) for key, value in root.items()}


def batch_from_webhook(payload: Mapping[str, Any]) -> Batch:
    """The batch a parsed ``batch_operation_completed`` delivery reports."""
    data = payload.get("data")
    if not isinstance(data, Mapping):
        raise ValueError("the webhook body has no data[...] fields")
    return Batch.from_json(data)


def verify_signature(
    secret: bytes | str,
    header_value: str | None,
    raw_body: bytes | str,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Check ``X-Mailchimp-Signature: t=<unix>,v1=<hex>`` against the raw request body.

    False for a missing, malformed, wrong or too old (``tolerance`` seconds) signature.
    ``raw_body`` must be the bytes as received; a ``str`` is taken as their UTF-8 decoding.
    """
    key = secret.encode() if isinstance(secret, str) else secret
    body = raw_body.encode() if isinstance(raw_body, str) else raw_body
    return webhook_signature.verify(key, header_value, body, tolerance=tolerance, now=now)
