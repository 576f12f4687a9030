"""Receiver helpers: the form body into a nested dict, X-Mailchimp-Signature checks."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

import pytest

from conveyor.client.webhooks import batch_from_webhook, parse_webhook_body, verify_signature
from conveyor.domain import webhook_signature
from conveyor.domain.webhook_signature import parse_header, sign, verify

SECRET = b"whsec-test"
NOW = 1_767_225_600

# A delivery as FACTS.md describes it (and as the server's sender encodes it).
FIELDS = [
    ("type", "batch_operation_completed"),
    ("fired_at", "2017-02-10 14:59:37"),
    ("data[id]", "1234567890"),  # all digits: must stay a string
    ("data[status]", "finished"),
    ("data[total_operations]", "3"),
    ("data[finished_operations]", "3"),
    ("data[errored_operations]", "1"),
    ("data[submitted_at]", "2017-02-10T14:44:17+00:00"),
    ("data[completed_at]", "2017-02-10T14:59:37+00:00"),
    ("data[response_body_url]", "https://x.s3.amazonaws.com/1234567890-response.tar.gz?a=1&b=2"),
    ("data[_links][0][rel]", "parent"),
    ("data[_links][0][href]", "https://us1.api.mailchimp.com/3.0/batches"),
    ("data[_links][0][method]", "GET"),
    ("data[_links][1][rel]", "self"),
    ("data[_links][1][href]", "https://us1.api.mailchimp.com/3.0/batches/1234567890"),
]
BODY = urlencode(FIELDS).encode()


def test_parse_webhook_body_nests_keys_and_restores_counters() -> None:
    parsed = parse_webhook_body(BODY)
    assert parsed == {
        "type": "batch_operation_completed",
        "fired_at": "2017-02-10 14:59:37",
        "data": {
            "id": "1234567890",
            "status": "finished",
            "total_operations": 3,
            "finished_operations": 3,
            "errored_operations": 1,
            "submitted_at": "2017-02-10T14:44:17+00:00",
            "completed_at": "2017-02-10T14:59:37+00:00",
            "response_body_url": "https://x.s3.amazonaws.com/1234567890-response.tar.gz?a=1&b=2",
            "_links": [
                {
                    "rel": "parent",
                    "href": "https://us1.api.mailchimp.com/3.0/batches",
                    "method": "GET",
                },
                {"rel": "self", "href": "https://us1.api.mailchimp.com/3.0/batches/1234567890"},
            ],
        },
    }
    assert parse_webhook_body(BODY.decode()) == parsed  # str in, same dict out
    batch = batch_from_webhook(parsed)
    assert (batch.id, batch.status, batch.errored_operations) == ("1234567890", "finished", 1)
    assert batch.done


def test_parse_webhook_body_edge_cases() -> None:
    # Not a counter: leading zeros and ids survive as text.
    parsed = parse_webhook_body("data[merges][ZIP]=02134&data[web_id]=17&data[list_id]=123")
    assert parsed == {"data": {"merges": {"ZIP": "02134"}, "web_id": 17, "list_id": "123"}}
    # key[] appends; sparse indexes stay a dict rather than being renumbered.
    assert parse_webhook_body("t[]=a&t[]=b&s[0]=x&s[2]=y") == {
        "t": ["a", "b"],
        "s": {"0": "x", "2": "y"},
    }
    # A counter that is not an integer is left as sent; an empty value is kept.
    assert parse_webhook_body("data[total_operations]=3.5&data[status]=") == {
        "data": {"total_operations": "3.5", "status": ""}
    }
    # Keys that are not name[...] are taken literally; top-level digit keys stay a dict.
    assert parse_webhook_body("a[b=1&0=x") == {"a[b": "1", "0": "x"}
    assert parse_webhook_body(b"") == {}
    with pytest.raises(ValueError):
        parse_webhook_body("data=x&data[id]=y")
    with pytest.raises(ValueError):
        parse_webhook_body("data[id]=y&data=x")


def test_sign_matches_the_documented_construction() -> None:
    header = sign(SECRET, BODY, NOW)
    expected = hmac.new(SECRET, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"
    assert parse_header(header) == (NOW, [expected])
    assert webhook_signature.HEADER == "X-Mailchimp-Signature"


def test_verify_accepts_a_fresh_signature_and_the_helper_takes_str() -> None:
    header = sign(SECRET, BODY, NOW)
    assert verify(SECRET, header, BODY, now=NOW)
    assert verify(SECRET, header, BODY, now=NOW + 300)  # exactly at the tolerance
    assert verify_signature(SECRET.decode(), header, BODY.decode(), now=NOW + 10)
    assert verify_signature(SECRET, f" t={NOW} , v1=deadbeef, v1={header.split('v1=')[1]}", BODY,
                            now=NOW)  # fmt: skip
    assert verify_signature(SECRET, header + ",v2=future-scheme", BODY, now=NOW)
    assert verify_signature(SECRET, header.upper().replace("T=", "t=").replace("V1=", "v1="),
                            BODY, now=NOW)  # fmt: skip


@pytest.mark.parametrize(
    "header, body, now, tolerance",
    [
        (None, BODY, NOW, 300),
        ("", BODY, NOW, 300),
        ("garbage", BODY, NOW, 300),
        (f"v1={'0' * 64}", BODY, NOW, 300),  # no timestamp
        (f"t={NOW}", BODY, NOW, 300),  # no signature
        ("t=abc,v1=00", BODY, NOW, 300),
        ("t=²,v1=00", BODY, NOW, 300),
        (f"t={NOW},v1=é", BODY, NOW, 300),
        ("SIGNED", BODY + b"&x=1", NOW, 300),  # body changed
        ("SIGNED", BODY, NOW + 301, 300),  # too old
        ("SIGNED", BODY, NOW - 301, 300),  # too far in the future
        ("SIGNED", BODY, NOW + 61, 60),
        ("OTHER-SECRET", BODY, NOW, 300),
        ("OTHER-TIME", BODY, NOW, 300),  # a signature replayed under another t
    ],
)
def test_verify_refuses(header: str | None, body: bytes, now: int, tolerance: int) -> None:
    if header == "SIGNED":
        header = sign(SECRET, BODY, NOW)
    elif header == "OTHER-SECRET":
        header = sign(b"another", BODY, NOW)
    elif header == "OTHER-TIME":
        header = f"t={NOW + 1}," + sign(SECRET, BODY, NOW).split(",")[1]
    assert not verify(SECRET, header, body, tolerance=tolerance, now=now)
    assert not verify_signature(SECRET, header, body, tolerance=tolerance, now=now)


def test_an_empty_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        sign(b"", BODY, NOW)
    with pytest.raises(ValueError):
        verify(b"", sign(SECRET, BODY, NOW), BODY, now=NOW)
