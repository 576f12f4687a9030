"""The client's HTTP behaviour against scripted answers (httpx.MockTransport): base URLs,
auth, retries, errors, polling."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest

from conveyor.client import (
    Batch,
    BatchNotFinished,
    Client,
    ConfigurationError,
    ConveyorApiError,
    ConveyorConnectionError,
    InvalidOperation,
    WaitTimeout,
)
from conveyor.client.client import api_root, datacenter_of

KEY = "0123456789abcdef0123456789abcdef-us6"
PROBLEM = {
    "type": "https://mailchimp.com/developer/marketing/docs/errors/",
    "title": "Invalid Resource",
    "status": 400,
    "detail": "The resource submitted could not be validated.",
    "instance": "req-1",
    "errors": [{"field": "operations[0].method", "message": "is required"}],
}


def batch_json(status: str = "pending", finished: int = 0, **extra: object) -> dict[str, object]:
    return {
        "id": "1234ab56cd",
        "status": status,
        "total_operations": 10,
        "finished_operations": finished,
        "errored_operations": 0,
        "submitted_at": "2026-01-01T00:00:00+00:00",
        "completed_at": "",
        "response_body_url": "",
        "_links": [],
        **extra,
    }


class FakeTime:
    """A clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def client_for(
    handler: Callable[[httpx.Request], httpx.Response],
    fake: FakeTime | None = None,
    **options: object,
) -> Client:
    fake = fake or FakeTime()
    return Client(
        KEY,
        base_url=str(options.pop("base_url", "http://conveyor.test")),
        transport=httpx.MockTransport(handler),
        sleep=fake.sleep,
        clock=fake.clock,
        **options,  # type: ignore[arg-type]
    )


def test_base_url_from_the_key_or_given() -> None:
    assert datacenter_of(KEY) == "us6"
    assert Client(KEY).base_url == "https://us6.api.mailchimp.com/3.0"
    for given in ("http://h:8000", "http://h:8000/", "http://h:8000/3.0", "http://h:8000/3.0/"):
        assert api_root(given) == "http://h:8000/3.0"
    assert Client(KEY, base_url="https://proxy.example/mc").base_url == (
        "https://proxy.example/mc/3.0"
    )
    for bad_key in ("0123456789abcdef", "abc-", "abc-US6!"):
        with pytest.raises(ConfigurationError):
            Client(bad_key)
    with pytest.raises(ConfigurationError):
        Client()
    with pytest.raises(ConfigurationError):
        Client(KEY, base_url="ftp://h")
    with pytest.raises(ConfigurationError):
        Client(KEY, base_url="http://h/3.0?x=1")


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCHIMP_API_KEY", KEY)
    monkeypatch.setenv("CONVEYOR_URL", "http://127.0.0.1:9/")
    assert Client.from_env().base_url == "http://127.0.0.1:9/3.0"
    monkeypatch.delenv("CONVEYOR_URL")
    assert Client.from_env().base_url == "https://us6.api.mailchimp.com/3.0"


def test_submit_sends_a_normalized_body_with_basic_auth_and_a_length() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(200, json=batch_json())

    def operations() -> Iterator[dict[str, object]]:
        yield {"method": "post", "path": "lists/L/members", "body": {"email_address": "a@b.c"}}
        yield {"method": "GET", "path": "/ping", "operation_id": None, "params": {"count": 1}}

    with client_for(handler) as client:
        batch = client.submit(operations())
    assert batch == Batch.from_json(batch_json())
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "http://conveyor.test/3.0/batches"
    user_password = base64.b64decode(request.headers["Authorization"].split()[1]).decode()
    assert user_password.endswith(":" + KEY)
    assert request.headers["Content-Length"] == str(len(request.content))
    assert "Transfer-Encoding" not in request.headers
    assert orjson.loads(request.content) == {
        "operations": [
            {"method": "POST", "path": "lists/L/members", "body": '{"email_address":"a@b.c"}'},
            {"method": "GET", "path": "/ping", "params": {"count": 1}},
        ]
    }


def test_an_invalid_operation_is_refused_before_anything_is_sent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    with client_for(handler) as client, pytest.raises(InvalidOperation, match=r"operations\[1\]"):
        client.submit([{"method": "GET", "path": "/ping"}, {"path": "/ping"}])


def test_429_and_5xx_are_retried_with_growing_delays_and_retry_after() -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "7"}, json={"title": "TooManyRequests"}),
        httpx.Response(503, text="unavailable"),
        httpx.Response(502, text="bad gateway"),
        httpx.Response(200, json=batch_json()),
    ]
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        return answers.pop(0)

    fake = FakeTime()
    with client_for(handler, fake, backoff=1.0, max_backoff=30.0) as client:
        assert client.submit([{"method": "GET", "path": "/ping"}]).id == "1234ab56cd"
    # The whole body was sent again on every attempt (the spooled file is rewound).
    assert len(bodies) == 4 and len(set(bodies)) == 1 and bodies[0].startswith(b'{"operations"')
    assert fake.sleeps[0] == 7.0  # Retry-After wins
    assert 1.0 <= fake.sleeps[1] <= 2.0  # then equal-jitter exponential steps
    assert 2.0 <= fake.sleeps[2] <= 4.0


def test_retries_are_bounded_and_the_last_answer_raises_typed() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(
            500,
            json={**PROBLEM, "title": "InternalServerError", "status": 500, "detail": "boom"},
            headers={"Content-Type": "application/problem+json; charset=utf-8"},
        )

    fake = FakeTime()
    with client_for(handler, fake, max_retries=2) as client, pytest.raises(ConveyorApiError) as e:
        client.get("1234ab56cd")
    assert calls == 3
    assert len(fake.sleeps) == 2
    assert (e.value.status, e.value.title, e.value.detail) == (500, "InternalServerError", "boom")


def test_problem_documents_become_typed_errors_without_retrying() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(400, json=PROBLEM, headers={"X-Request-Id": "req-1"})

    with client_for(handler) as client, pytest.raises(ConveyorApiError) as caught:
        client.submit([{"method": "GET", "path": "/ping"}])
    error = caught.value
    assert calls == 1
    assert error.status == 400
    assert error.title == "Invalid Resource"
    assert error.detail == PROBLEM["detail"]
    assert error.instance == "req-1"
    assert error.type == PROBLEM["type"]
    assert [(f.field, f.message) for f in error.errors] == [("operations[0].method", "is required")]
    assert error.document == PROBLEM
    assert error.message == (
        "Invalid Resource: The resource submitted could not be validated. "
        "(operations[0].method: is required)"
    )
    assert str(error).startswith("400 Invalid Resource")


def test_a_non_problem_error_body_still_gives_a_useful_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, text="<Error><Code>AccessDenied</Code></Error>")

    with client_for(handler) as client, pytest.raises(ConveyorApiError) as caught:
        client.get("x")
    assert caught.value.title == "Forbidden"
    assert "AccessDenied" in caught.value.detail


def test_transport_errors_resend_only_what_is_safe() -> None:
    attempts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request.method)
        if len(attempts) == 1:
            raise httpx.ConnectError("refused", request=request)
        raise httpx.ReadTimeout("slow", request=request)

    # A GET may run twice: connect error and read timeouts are retried up to the bound.
    with client_for(handler, max_retries=3) as client, pytest.raises(ConveyorConnectionError):
        client.get("x")
    assert attempts == ["GET"] * 4

    # A POST that may have reached the server is not sent again; one that never left is.
    attempts.clear()
    with client_for(handler, max_retries=3) as client, pytest.raises(ConveyorConnectionError):
        client.add_webhook("https://example.org/hook")
    assert attempts == ["POST", "POST"]


def test_submit_sends_an_idempotency_key_that_its_retries_repeat() -> None:
    keys: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("Idempotency-Key"))
        if len(keys) == 2:
            # The request went out and its answer was lost: the server may have made the
            # batch, and only the key keeps the resend from making a second one.
            raise httpx.ReadError("connection reset", request=request)
        return httpx.Response(200, json=batch_json())

    with client_for(handler, max_retries=3) as client:
        client.submit([{"method": "GET", "path": "/ping"}])
        client.submit([{"method": "GET", "path": "/ping"}])
        client.submit([{"method": "GET", "path": "/ping"}], idempotency_key="chunk-7")
    first, second, second_again, third = keys
    assert first and second and re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second, "every submit has a key of its own"
    assert second_again == second, "a retry repeats the key"
    assert third == "chunk-7"


def test_the_missing_key_message_names_what_each_constructor_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILCHIMP_API_KEY", KEY)
    with pytest.raises(ConfigurationError) as direct:
        Client()
    assert "pass api_key" in str(direct.value)
    assert "set MAILCHIMP_API_KEY" not in str(direct.value)
    monkeypatch.delenv("MAILCHIMP_API_KEY")
    with pytest.raises(ConfigurationError) as from_env:
        Client.from_env()
    assert "set MAILCHIMP_API_KEY" in str(from_env.value)


def test_a_field_error_that_repeats_the_detail_is_shown_once() -> None:
    detail = "127.0.0.1 is a loopback address, refused by policy."
    problem = {**PROBLEM, "detail": detail, "errors": [{"field": "url", "message": detail}]}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json=problem)

    with client_for(handler) as client, pytest.raises(ConveyorApiError) as caught:
        client.add_webhook("http://127.0.0.1/")
    assert caught.value.message == f"Invalid Resource: {detail}"


def test_wait_polls_with_growing_intervals_up_to_the_cap() -> None:
    statuses = ["pending"] * 8 + ["started", "finalizing", "finished"]
    seen: list[Batch] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status = statuses.pop(0)
        return httpx.Response(200, json=batch_json(status, 10 if status == "finished" else 0))

    fake = FakeTime()
    with client_for(handler, fake) as client:
        done = client.wait("1234ab56cd", interval=1.0, max_interval=4.0, progress=seen.append)
    assert done.done
    assert [b.status for b in seen][-3:] == ["started", "finalizing", "finished"]
    assert fake.sleeps[:5] == [1.0, 1.5, 2.25, 3.375, 4.0]
    assert set(fake.sleeps[4:]) == {4.0}
    assert len(fake.sleeps) == 10


def test_wait_raises_at_the_deadline_with_the_last_batch() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=batch_json("started", 4))

    fake = FakeTime()
    with client_for(handler, fake) as client, pytest.raises(WaitTimeout) as caught:
        client.wait("1234ab56cd", timeout=10.0, interval=1.0, max_interval=3.0)
    assert caught.value.batch.finished_operations == 4
    assert sum(fake.sleeps) == pytest.approx(10.0)  # never sleeps past the deadline
    assert "still started after 10 s" in str(caught.value)


def test_results_of_an_unfinished_batch_raise() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=batch_json("started", 3))

    with client_for(handler) as client, pytest.raises(BatchNotFinished, match="3/10"):
        client.results("1234ab56cd")


def test_delete_list_webhooks_and_ids_are_quoted() -> None:
    requests: list[tuple[str, str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append((request.method, str(request.url), request.read()))
        path = request.url.path
        if request.method == "DELETE":
            return httpx.Response(204)
        if path == "/3.0/batches":
            return httpx.Response(200, json={"batches": [batch_json()], "total_items": 1})
        if path == "/3.0/batch-webhooks" and request.method == "GET":
            hook = {"id": "w1", "url": "https://h/x", "enabled": False, "_links": []}
            return httpx.Response(200, json={"webhooks": [hook], "total_items": 1})
        if path == "/3.0/batch-webhooks":
            hook = {"id": "w2", "url": "https://h/y", "enabled": True, "secret": "s3cr3t"}
            return httpx.Response(200, json=hook)
        return httpx.Response(200, json={"id": "w1", "url": "https://h/z", "enabled": True})

    with client_for(handler) as client:
        client.delete("a/b")
        page = client.list(count=5, offset=10)
        hooks = client.list_webhooks()
        created = client.add_webhook("https://h/y")
        updated = client.update_webhook("w1", enabled=True)
        client.delete_webhook("w1")
    assert requests[0][:2] == ("DELETE", "http://conveyor.test/3.0/batches/a%2Fb")
    assert requests[1][1] == "http://conveyor.test/3.0/batches?count=5&offset=10"
    assert page.total_items == 1 and page.batches[0].id == "1234ab56cd"
    assert hooks.webhooks[0].enabled is False and hooks.webhooks[0].secret is None
    assert created.secret == "s3cr3t"
    assert orjson.loads(requests[3][2]) == {"url": "https://h/y", "enabled": True}
    assert orjson.loads(requests[4][2]) == {"enabled": True}
    assert updated.url == "https://h/z"
    assert requests[5][:2] == ("DELETE", "http://conveyor.test/3.0/batch-webhooks/w1")
