"""Property-based fuzzing of the whole HTTP app: whatever the headers, paths, queries and
bodies, never a 5xx, and every 4xx is a Mailchimp problem document.

Header values are any bytes a client can put on the wire (latin-1 text to the app, so
non-ASCII too); bodies are JSON-ish values with every kind of character, lone surrogates
included (escaped as JSON allows), NUL, huge and negative numbers, and raw bytes that are not
JSON at all; batch bodies are operation arrays built from the same parts.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from starlette.testclient import TestClient

from conveyor.composition import Services
from conveyor.http.app import create_app
from conveyor.reference import marketing_subset
from conveyor.settings import BatchSettings, Settings
from tests.api.support import PROBLEM_KEYS, PROBLEM_TYPE, add_member, md5
from tests.api.test_schemathesis import four_xx_is_a_problem_document
from tests.conftest import ApiUser
from tests.webhooks.receiver import running_receiver

EXAMPLES = 120
FUZZ = hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret="test-secret",
        # A URL a generated body names is looked up and called: over in half a second.
        batches=BatchSettings(webhook_timeout_seconds=0.5),
    )


@pytest.fixture
def bare_client(services: Services) -> Iterator[TestClient]:
    """A client that sends no credentials of its own: the test writes Authorization."""
    with TestClient(create_app(services), base_url="http://testserver") as client:
        yield client


@pytest.fixture
def targets(api: ApiUser, list_id: str) -> Iterator[dict[str, str]]:
    """Real ids, so that generated requests reach the handlers behind the 404s."""
    add_member(api, list_id, "fuzz@example.org", tags=["t"])
    batch = api.client.post("/3.0/batches", json={"operations": [{"method": "GET", "path": "/"}]})
    with running_receiver() as receiver:
        hook = api.client.post("/3.0/batch-webhooks", json={"url": receiver.url})
        assert hook.status_code == 200, hook.text
        yield {
            "list": list_id,
            "member": md5("fuzz@example.org"),
            "batch": batch.json()["id"],
            "webhook": hook.json()["id"],
        }


def check(response: httpx2.Response, *, forced_500: bool = False) -> None:
    """No 5xx (unless X-Trigger-Error asked for one); a 4xx is a problem document."""
    if forced_500 and response.status_code == 500:
        return
    assert response.status_code < 500, (response.request.method, response.request.url,
                                        response.text[:500])  # fmt: skip
    if response.status_code >= 400 and response.request.method != "HEAD":
        assert response.headers["content-type"] == PROBLEM_TYPE, response.headers
        body = response.json()
        assert set(body) >= PROBLEM_KEYS, body
        assert body["status"] == response.status_code
        assert body["instance"] == response.headers["x-request-id"]


# --- the parts ---------------------------------------------------------------------------

# Every byte a header value can carry on the wire: not CR, LF or NUL, everything else.
HEADER_BYTES = st.binary(max_size=60).map(
    lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")
)
ANY_CHARACTER = st.characters(exclude_categories=())  # lone surrogates included
TEXT = st.text(ANY_CHARACTER, max_size=30)
FIELD_NAMES = st.sampled_from(
    [
        "email_address", "status", "status_if_new", "merge_fields", "FNAME", "ADDRESS",
        "name", "contact", "campaign_defaults", "permission_reminder", "email_type_option",
        "url", "enabled", "tags", "members", "update_existing", "type", "tag", "options",
        "operations", "method", "path", "body", "params", "operation_id", "language", "vip",
        "interests", "location", "count", "offset",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
    st.sampled_from(["subscribed", "pending", "GET", "POST", "/lists", "a@b.co", "\x00", ""]),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(FIELD_NAMES, TEXT), inner, max_size=5),
    ),
    max_leaves=15,
)


def json_text(value: Any) -> bytes:
    # ensure_ascii: every lone surrogate and NUL goes on the wire as a JSON escape.
    return json.dumps(value, ensure_ascii=True).encode("ascii")


BODIES = st.one_of(
    JSON_VALUES.map(json_text),
    st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=6).map(json_text),
    st.binary(max_size=200),
)

OPERATIONS = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "method": st.one_of(st.sampled_from(["GET", "post", "PUT", "PATCH", "DELETE"]), TEXT),
            "path": st.one_of(st.sampled_from(["/lists", "lists/x/members", "/", ""]), TEXT),
            "params": st.one_of(st.dictionaries(TEXT, SCALARS, max_size=3), JSON_VALUES),
            "body": st.one_of(JSON_VALUES.map(json.dumps), JSON_VALUES),
            "operation_id": st.one_of(TEXT, SCALARS),
        },
    ),
    max_size=5,
)
BATCH_BODIES = st.one_of(
    OPERATIONS.map(lambda ops: json_text({"operations": ops})),
    st.dictionaries(st.one_of(st.just("operations"), TEXT), JSON_VALUES, max_size=3).map(json_text),
    BODIES,
)

ROUTES = [
    ("GET", "/3.0/"),
    ("GET", "/3.0/ping"),
    ("GET", "/3.0/lists"),
    ("POST", "/3.0/lists"),
    ("GET", "/3.0/lists/{list}"),
    ("PATCH", "/3.0/lists/{list}"),
    ("POST", "/3.0/lists/{list}"),
    ("GET", "/3.0/lists/{list}/members"),
    ("POST", "/3.0/lists/{list}/members"),
    ("GET", "/3.0/lists/{list}/members/{member}"),
    ("PUT", "/3.0/lists/{list}/members/{member}"),
    ("PATCH", "/3.0/lists/{list}/members/{member}"),
    ("POST", "/3.0/lists/{list}/members/{member}/tags"),
    ("GET", "/3.0/lists/{list}/members/{member}/tags"),
    ("POST", "/3.0/lists/{list}/merge-fields"),
    ("PATCH", "/3.0/lists/{list}/merge-fields/1"),
    ("GET", "/3.0/batches"),
    ("GET", "/3.0/batches/{batch}"),
    ("POST", "/3.0/batch-webhooks"),
    ("GET", "/3.0/batch-webhooks"),
    ("PATCH", "/3.0/batch-webhooks/{webhook}"),
    ("GET", "/3.0/batch-webhooks/{webhook}/deliveries"),
]


# --- the properties ----------------------------------------------------------------------


@given(
    authorization=st.one_of(
        HEADER_BYTES,
        st.tuples(
            st.sampled_from([b"Basic ", b"Bearer ", b"bearer ", b"apikey "]), HEADER_BYTES
        ).map(b"".join),
        st.tuples(st.binary(max_size=12), st.binary(max_size=40)).map(
            lambda pair: b"Basic " + base64.b64encode(pair[0] + b":" + pair[1])
        ),
    ),
    trigger=st.one_of(
        st.none(),
        HEADER_BYTES,
        st.sampled_from([b"APIKeyMissing", b"InternalServerError", b" TooManyRequests "]),
    ),
    route=st.sampled_from(ROUTES),
)
@FUZZ
def test_any_authorization_and_trigger_header(
    bare_client: TestClient, targets: dict[str, str], authorization: bytes,
    trigger: bytes | None, route: tuple[str, str],
) -> None:  # fmt: skip
    method, template = route
    headers = [(b"Authorization", authorization)]
    if trigger is not None:
        headers.append((b"X-Trigger-Error", trigger))
    response = bare_client.request(method, template.format(**targets), headers=headers)
    forced = trigger is not None and trigger.strip() == b"InternalServerError"
    check(response, forced_500=forced)


@given(route=st.sampled_from(ROUTES), body=BODIES, content_type=st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]))  # fmt: skip
@FUZZ
def test_any_body_on_every_route(
    api: ApiUser, targets: dict[str, str], route: tuple[str, str], body: bytes, content_type: str
) -> None:
    method, template = route
    headers = {"content-type": content_type} if content_type else {}
    check(api.client.request(method, template.format(**targets), content=body, headers=headers))


@given(body=BATCH_BODIES)
@FUZZ
def test_any_batch_body(api: ApiUser, body: bytes) -> None:
    response = api.client.post(
        "/3.0/batches", content=body, headers={"content-type": "application/json"}
    )
    check(response)


@given(
    segments=st.lists(TEXT, min_size=1, max_size=4),
    query=st.dictionaries(
        st.one_of(st.sampled_from(["count", "offset", "fields", "exclude_fields", "status"]), TEXT),
        TEXT,
        max_size=3,
    ),
    method=st.sampled_from(["GET", "HEAD", "DELETE", "POST", "OPTIONS"]),
    under=st.sampled_from(["/3.0/", "/3.0/lists/{list}/", "/3.0/batches/", "/3.0/batch-webhooks/"]),
)
@FUZZ
def test_any_path_and_query(
    api: ApiUser, targets: dict[str, str], segments: list[str], query: dict[str, str],
    method: str, under: str,
) -> None:  # fmt: skip
    # Percent-encoded as a client would (surrogates as the bytes Python escapes them to).
    path = under.format(**targets) + "/".join(
        quote(segment.encode("utf-8", "surrogatepass"), safe="") for segment in segments
    )
    encoded = "&".join(
        f"{quote(k.encode('utf-8', 'surrogatepass'))}={quote(v.encode('utf-8', 'surrogatepass'))}"
        for k, v in query.items()
    )
    url = f"{path}?{encoded}" if encoded else path
    check(api.client.request(method, url))


# --- the Batch operations, generated from Mailchimp's spec ----------------------------------

BATCH_PATHS = r"^/batch"


def _batch_operations() -> list[tuple[str, str]]:
    schema: Any = schemathesis.openapi.from_dict(marketing_subset())
    schema = schema.include(path_regex=BATCH_PATHS)
    found = []
    for result in schema.get_all_operations():
        operation = result.ok()
        found.append((operation.method.upper(), operation.path))
    return found


# Shapes and status codes of the Batch endpoint are checked by its own tests (413, 504 and
# the like are not in Mailchimp's spec): here only that nothing fails and errors are problems.
def _no_5xx_and_problems(ctx: Any, response: Any, case: Any) -> bool | None:
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
    four_xx_is_a_problem_document(ctx, response, case)
    return True


@pytest.mark.parametrize(("method", "path"), _batch_operations(), ids=lambda v: str(v))
def test_batch_operations_from_the_spec(
    method: str, path: str, api: ApiUser, targets: dict[str, str], services: Services
) -> None:
    schema = schemathesis.openapi.from_dict(marketing_subset()).include(path_regex=BATCH_PATHS)
    schema.app = create_app(services)
    operation = schema[path][method]
    names = {p.name for p in operation.path_parameters}
    real = {"batch_id": targets["batch"], "batch_webhook_id": targets["webhook"]}
    pinned = {name: value for name, value in real.items() if name in names}
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=pinned),
        operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=pinned),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )
    headers = {"Authorization": f"Bearer {api.key}"}

    @given(case=strategy)
    @hypothesis_settings(
        max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=[_no_5xx_and_problems])

    run()


# --- hostile webhook URLs, end to end ---------------------------------------------------------

HOSTILE_URLS = [
    "http://exa\x00mple.org/hook",
    "http://example.org/ho\x00ok",
    "http://exa\x7fmple.org/hook",
    "http://example.org/ho\x7fok",
    "http://example..org/hook",
    "http://.example.org/hook",
    "http://" + "a" * 64 + ".example.org/hook",
    "http://" + ("a" * 60 + ".") * 5 + "org/hook",  # over 253 characters
    "http://exa\tmple.org/hook",
    "http://example.org\r\nX-Injected: 1/hook",
    "http://ex ample.org/hook",
    "http://exämple.org/hook",
    "http://[::1%25eth0]/hook",
    "http://user:pw@example.org/hook",
    "http://\ud800.example.org/hook",
]


@pytest.mark.parametrize("url", HOSTILE_URLS, ids=repr)
def test_hostile_webhook_urls_are_refused_with_a_problem(
    api: ApiUser, targets: dict[str, str], url: str
) -> None:
    body = json_text({"url": url})  # escaped as JSON allows, the surrogate too
    for method, path in (
        ("POST", "/3.0/batch-webhooks"),
        ("PATCH", f"/3.0/batch-webhooks/{targets['webhook']}"),
    ):
        response = api.client.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
        check(response)
        assert response.status_code == 400, response.text
    assert api.client.get("/3.0/batch-webhooks").json()["total_items"] == 1
    hook = api.client.get(f"/3.0/batch-webhooks/{targets['webhook']}").json()
    assert hook["url"].startswith("http://127.0.0.1:")
