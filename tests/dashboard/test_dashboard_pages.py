"""The dashboard over HTTP, in process, on SQLite and PostgreSQL: sign-in and sessions,
CSRF, what each page shows, the forms that steer batches and webhooks, and that an account
sees nothing of another's. The browser tests (test_browser.py) drive the same pages in
Chromium."""

from __future__ import annotations

import io
import json
import logging
import tarfile

import httpx2
import orjson
import pytest
from starlette.testclient import TestClient

from conveyor.composition import Services
from conveyor.domain.ids import key_hash
from conveyor.http.app import create_app
from conveyor.http.dashboard.session import COOKIE_NAME, SessionCodec
from conveyor.runtime.embedded import EmbeddedRuntime
from tests.batches.support import create_list, get_batch, member_posts, submit
from tests.dashboard.conftest import NewVisitor, Visitor
from tests.dashboard.support import csrf_token, text_of
from tests.webhooks.receiver import running_receiver


def failing_batch(visitor: Visitor, good: int, bad: int) -> tuple[str, str]:
    """A list and a finished-to-be batch of `good` adds and `bad` invalid addresses, the bad
    ones interleaved (every third operation while they last)."""
    list_id = create_list(visitor.api)
    operations = member_posts(list_id, good)
    for i in range(bad):
        operations.insert(
            min(3 * i, len(operations)),
            {
                "method": "POST",
                "path": f"lists/{list_id}/members",
                "operation_id": f"broken-{i}",
                "body": json.dumps(
                    {"email_address": f"not-an-address-{i}", "status": "subscribed"}
                ),
            },
        )
    return list_id, submit(visitor.api, operations)["id"]


# --- sign-in, sessions, CSRF -------------------------------------------------------------


def test_the_sign_in_cookie_is_signed_httponly_and_strict(visitor: Visitor) -> None:
    browser = visitor.browser
    page = browser.page("/dashboard/sign-in")
    assert 'name="api_key"' in page and '<label for="api_key">' in page
    response = browser.post_form("/dashboard/sign-in", {"api_key": visitor.key})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/batches"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(COOKIE_NAME + "=")
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/dashboard"):
        assert attribute.lower() in cookie.lower()
    # The key is nowhere in the cookie, in any form a reader could take it from.
    assert visitor.key not in cookie and visitor.key.split("-")[0] not in cookie
    assert "Conveyor" in browser.page("/dashboard/batches")


def test_a_wrong_key_is_refused(visitor: Visitor) -> None:
    browser = visitor.browser
    for wrong in ("nonsense", "0" * 32 + "-us1", visitor.key + "x", ""):
        response = browser.sign_in(wrong)
        assert response.status_code == 401, wrong
        assert "not valid" in text_of(response.text)
        # Still signed out: the pages send the visitor to sign in.
        page = browser.get("/dashboard/batches")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/dashboard/sign-in")


def test_pages_send_a_visitor_to_sign_in_and_back(visitor: Visitor) -> None:
    browser = visitor.browser
    response = browser.get("/dashboard/audiences?email=a%40b.org")
    assert response.status_code == 303
    assert response.headers["location"] == (
        "/dashboard/sign-in?next=/dashboard/audiences%3Femail%3Da%2540b.org"
    )
    signed = browser.sign_in(visitor.key, next_page="/dashboard/audiences?email=a%40b.org")
    assert signed.headers["location"] == "/dashboard/audiences?email=a%40b.org"
    # Fragments and streams a script fetches get a 401 instead of a redirect.
    browser.client.cookies.clear()
    assert browser.get("/dashboard/batches/rows").status_code == 401


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/dashboard/", "/\\evil.example", "/3.0/ping"]
)
def test_sign_in_never_redirects_elsewhere(visitor: Visitor, target: str) -> None:
    response = visitor.browser.sign_in(visitor.key, next_page=target)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/batches"


def test_forms_without_the_sessions_token_are_refused(visitor: Visitor, services: Services) -> None:
    browser = visitor.browser
    # Sign-in itself: another session's token, or none from another site's form.
    browser.page("/dashboard/sign-in")
    assert (
        browser.post_form(
            "/dashboard/sign-in", {"api_key": visitor.key}, token="forged"
        ).status_code
        == 403
    )
    for header in ("origin", "referer"):
        cross_site = browser.client.post(
            "/dashboard/sign-in",
            data={"api_key": visitor.key},
            headers={header: "https://evil.example/page"},
        )
        assert cross_site.status_code == 403, header
    browser.client.cookies.clear()
    no_cookie = browser.client.post(
        "/dashboard/sign-in", data={"api_key": visitor.key, "csrf_token": "x"}
    )
    assert no_cookie.status_code == 403
    assert browser.get("/dashboard/batches").status_code == 303
    visitor.signed_in()
    # A steering form: refused, and the batch untouched.
    batch_id = _pending_batch(visitor, services, create_list(visitor.api))
    refused = browser.post_form(f"/dashboard/batches/{batch_id}/cancel", token="not-the-token")
    assert refused.status_code == 403
    assert "security token" in text_of(refused.text)
    assert get_batch(visitor.api, batch_id)["status"] == "pending"
    assert browser.post_form("/dashboard/sign-out", token="nope").status_code == 403


def test_a_script_may_sign_in_with_the_key_alone(visitor: Visitor) -> None:
    """No form fetched first, no token: what `curl -d api_key=…` does. A browser posting
    from the server's own page is let in too; another site's page is not (above)."""
    browser = visitor.browser
    response = browser.client.post(
        "/dashboard/sign-in", data={"api_key": visitor.key}, follow_redirects=False
    )
    assert response.status_code == 303
    assert browser.get("/dashboard/batches").status_code == 200
    browser.client.cookies.clear()
    own = browser.client.post(
        "/dashboard/sign-in",
        data={"api_key": visitor.key},
        headers={"origin": "http://testserver"},
        follow_redirects=False,
    )
    assert own.status_code == 303
    browser.client.cookies.clear()
    wrong = browser.client.post("/dashboard/sign-in", data={"api_key": "nope"})
    assert wrong.status_code == 401


def test_a_token_from_before_sign_in_does_not_work_after_it(visitor: Visitor) -> None:
    browser = visitor.browser
    browser.page("/dashboard/sign-in")
    before = csrf_token(browser.last_page)
    visitor.signed_in()
    response = browser.post_form(
        "/dashboard/webhooks", {"url": "http://127.0.0.1:9/"}, token=before
    )
    assert response.status_code == 403


def test_a_tampered_or_foreign_cookie_is_no_session(visitor: Visitor) -> None:
    browser = visitor.signed_in()
    cookie = browser.cookie
    assert cookie is not None
    genuine = SessionCodec(b"test-secret", 3600).loads(cookie)
    assert genuine is not None and genuine.key_hash == key_hash(visitor.key)
    forged = [
        cookie[:-3] + ("AAA" if not cookie.endswith("AAA") else "BBB"),
        # The right key's hash, signed with another secret.
        SessionCodec(b"another-secret", 3600).dumps(genuine),
        "",
        "garbage",
    ]
    for value in forged:
        browser.client.cookies.clear()
        browser.client.cookies.set(COOKIE_NAME, value)
        assert browser.get("/dashboard/batches").status_code == 303, value
    browser.client.cookies.clear()
    browser.client.cookies.set(COOKIE_NAME, cookie)
    assert browser.get("/dashboard/batches").status_code == 200


def test_sign_out_ends_the_session(visitor: Visitor) -> None:
    browser = visitor.signed_in()
    stolen = browser.cookie
    browser.page("/dashboard/batches")
    response = browser.post_form("/dashboard/sign-out")
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/sign-in"
    assert browser.get("/dashboard/batches").status_code == 303
    # The cookie is cleared in the browser; a copy kept elsewhere still names a live key
    # until it expires, as any signed cookie does (revoke the key to end those too).
    assert stolen is not None


def test_revoking_the_key_ends_its_sessions_at_once(visitor: Visitor, services: Services) -> None:
    browser = visitor.signed_in()
    assert browser.get("/dashboard/batches").status_code == 200
    with services.database.write() as conn:
        assert services.accounts.revoke_key(conn, visitor.key)
    response = browser.get("/dashboard/batches")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/dashboard/sign-in")
    assert browser.sign_in(visitor.key).status_code == 401
    assert browser.get("/dashboard/webhooks").status_code == 303


def test_no_api_key_reaches_the_logs(visitor: Visitor, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    visitor.browser.sign_in("f" * 32 + "-us9")
    visitor.signed_in()
    visitor.browser.page("/dashboard/batches")
    logged = "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    assert "dashboard sign-in" in logged
    assert visitor.key not in logged and "f" * 32 not in logged


# --- what the pages show ------------------------------------------------------------------


def test_the_batch_list_shows_each_batch_newest_first(
    visitor: Visitor, runtime: EmbeddedRuntime
) -> None:
    _, first = failing_batch(visitor, good=5, bad=2)
    runtime.join()
    list_id = create_list(visitor.api)
    second = submit(visitor.api, member_posts(list_id, 4))["id"]
    runtime.join()
    browser = visitor.signed_in()
    page = browser.page("/dashboard/batches")
    assert page.index(second) < page.index(first)
    rows = browser.get("/dashboard/batches/rows")
    assert rows.headers["X-Conveyor-Running"] == "false"
    text = text_of(rows.text)
    assert f"{first} finished 100% 100% 7 2 7" in text
    assert f"{second} finished 100% 100% 4 0 4" in text
    assert "Content-Security-Policy" in rows.headers and rows.headers["Cache-Control"] == "no-store"


def test_the_list_marks_running_batches_for_its_script(
    visitor: Visitor, services: Services
) -> None:
    # No runtime dispatch for this batch: it waits, pending, until the sweep.
    list_id = create_list(visitor.api)
    batch_id = _pending_batch(visitor, services, list_id)
    browser = visitor.signed_in()
    rows = browser.get("/dashboard/batches/rows")
    assert rows.headers["X-Conveyor-Running"] == "true"
    assert f'data-batch-id="{batch_id}" data-running="true"' in rows.text


def _pending_batch(visitor: Visitor, services: Services, list_id: str) -> str:
    """A batch stored through an app with no runtime: it stays pending (nothing is sent to
    the workers and the sweep is an hour away)."""
    with TestClient(create_app(services), base_url="http://testserver") as idle:
        idle.auth = httpx2.BasicAuth("x", visitor.key)
        return str(submit(idle, member_posts(list_id, 5))["id"])


def test_a_batch_page_lists_its_failures_with_paging_and_a_filter(
    visitor: Visitor, runtime: EmbeddedRuntime
) -> None:
    _, batch_id = failing_batch(visitor, good=20, bad=30)
    runtime.join()
    browser = visitor.signed_in()
    page = text_of(browser.page(f"/dashboard/batches/{batch_id}"))
    assert "finished" in page and "50 of 50 finished, 30 errored" in page
    assert "Retry 30 failed" in page
    assert "1\N{EN DASH}25 of 30" in page
    assert "broken-0" in page and "Invalid Resource" in page
    assert "not-an-address-0 looks fake or invalid" in page
    second = text_of(browser.page(f"/dashboard/batches/{batch_id}?offset=25"))
    assert "26\N{EN DASH}30 of 30" in second and "broken-29" in second and "broken-0 " not in second
    # By part of the operation id, by status code, by the words of the detail.
    one = text_of(browser.page(f"/dashboard/batches/{batch_id}?q=broken-17"))
    assert "broken-17" in one and "broken-1 " not in one
    assert "26\N{EN DASH}30" not in one
    by_code = text_of(browser.page(f"/dashboard/batches/{batch_id}?q=400"))
    assert "1\N{EN DASH}25 of 30" in by_code
    by_detail = text_of(browser.page(f"/dashboard/batches/{batch_id}?q=NOT-AN-ADDRESS-2"))
    assert "broken-2 " in by_detail and "broken-20" in by_detail and "broken-3 " not in by_detail
    nothing = text_of(browser.page(f"/dashboard/batches/{batch_id}?q=%25_%5C"))
    assert "No failed operation matches" in nothing


def test_retry_failed_runs_only_the_failures(visitor: Visitor, runtime: EmbeddedRuntime) -> None:
    _, batch_id = failing_batch(visitor, good=4, bad=3)
    runtime.join()
    browser = visitor.signed_in()
    browser.page(f"/dashboard/batches/{batch_id}")
    response = browser.post_form(f"/dashboard/batches/{batch_id}/retry")
    assert response.status_code == 303
    retried = response.headers["location"].rsplit("/", 1)[1]
    assert retried != batch_id
    runtime.join()
    batch = visitor.api.get(f"/3.0/batches/{retried}").json()
    assert (batch["total_operations"], batch["errored_operations"]) == (3, 3)
    assert batch["retry_of"] == batch_id
    page = text_of(browser.page(f"/dashboard/batches/{retried}"))
    assert f"Retries the failures of {batch_id}" in page


def test_cancel_stops_a_batch_that_has_not_run(
    visitor: Visitor, services: Services, runtime: EmbeddedRuntime
) -> None:
    list_id = create_list(visitor.api)
    batch_id = _pending_batch(visitor, services, list_id)
    browser = visitor.signed_in()
    page = browser.page(f"/dashboard/batches/{batch_id}")
    assert "Cancel batch" in page
    assert browser.post_form(f"/dashboard/batches/{batch_id}/cancel").status_code == 303
    runtime.join()
    batch = visitor.api.get(f"/3.0/batches/{batch_id}").json()
    assert batch["status"] == "finished" and batch["canceled_at"]
    assert batch["finished_operations"] == 0
    page = text_of(browser.page(f"/dashboard/batches/{batch_id}"))
    assert "(canceled)" in page and "Cancel batch" not in page


def test_the_archive_and_ndjson_links_download_the_results(
    visitor: Visitor, runtime: EmbeddedRuntime
) -> None:
    _, batch_id = failing_batch(visitor, good=6, bad=2)
    runtime.join()
    browser = visitor.signed_in()
    to_archive = browser.get(f"/dashboard/batches/{batch_id}/archive")
    assert to_archive.status_code == 303
    url = to_archive.headers["location"]
    assert f"/3.0/batches/{batch_id}-response.tar.gz?" in url
    archive = browser.client.get(url)
    assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        names = tar.getnames()
    assert names
    ndjson = browser.get(f"/dashboard/batches/{batch_id}/results.ndjson")
    assert ndjson.status_code == 200
    assert ndjson.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in ndjson.content.splitlines()]
    assert len(lines) == 8
    assert sum(1 for line in lines if line["status_code"] != 200) == 2


def test_an_account_sees_nothing_of_another(
    new_visitor: NewVisitor, runtime: EmbeddedRuntime
) -> None:
    owner, other = new_visitor(), new_visitor()
    list_id, batch_id = failing_batch(owner, good=3, bad=1)
    runtime.join()
    member = "user1@example.org"
    with running_receiver() as receiver:
        owner_browser = owner.signed_in()
        owner_browser.page("/dashboard/webhooks")
        added = owner_browser.post_form("/dashboard/webhooks", {"url": receiver.url})
        webhook_path = added.headers["location"]
    browser = other.signed_in()
    assert batch_id not in browser.page("/dashboard/batches")
    for path in (
        f"/dashboard/batches/{batch_id}",
        f"/dashboard/batches/{batch_id}/panel",
        f"/dashboard/batches/{batch_id}/archive",
        f"/dashboard/batches/{batch_id}/results.ndjson",
        f"/dashboard/batches/{batch_id}/progress",
        webhook_path,
    ):
        response = browser.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert batch_id not in response.text or "batches/" in path
    browser.page("/dashboard/batches")
    for action in ("cancel", "retry"):
        assert browser.post_form(f"/dashboard/batches/{batch_id}/{action}").status_code == 404
    assert browser.post_form(webhook_path + "/delete").status_code == 404
    audiences = browser.page(f"/dashboard/audiences?email={member}")
    assert list_id not in audiences
    assert "No audience of this account has a member" in text_of(audiences)
    assert receiver.url not in browser.page("/dashboard/webhooks")
    # The owner still has everything.
    assert owner_browser.get(webhook_path).status_code == 200
    assert list_id in owner_browser.page(f"/dashboard/audiences?email={member}")


# --- webhooks -----------------------------------------------------------------------------


def test_webhooks_add_deliver_redeliver_and_remove(
    visitor: Visitor, runtime: EmbeddedRuntime
) -> None:
    browser = visitor.signed_in()
    with running_receiver() as receiver:
        browser.page("/dashboard/webhooks")
        added = browser.post_form("/dashboard/webhooks", {"url": receiver.url})
        assert added.status_code == 303, added.text
        webhook_path = added.headers["location"]
        assert [r.method for r in receiver.requests] == ["GET"]  # validated on creation
        page = text_of(browser.page(webhook_path))
        assert "No deliveries yet" in page
        list_id = create_list(visitor.api)
        batch_id = submit(visitor.api, member_posts(list_id, 2))["id"]
        runtime.join()
        receiver.wait_for_posts(1)
        page = text_of(browser.page(webhook_path))
        assert f"{batch_id} delivered 1 200" in page
        delivery = _delivery_id(browser.last_page)
        redelivered = browser.post_form(f"{webhook_path}/deliveries/{delivery}/redeliver")
        assert redelivered.status_code == 303
        runtime.join()
        posts = receiver.wait_for_posts(2)
        assert posts[0].body == posts[1].body
        # A redelivery is a fresh round of attempts: its first one succeeded.
        assert f"{batch_id} delivered 1 200" in text_of(browser.page(webhook_path))
        listing = browser.page("/dashboard/webhooks")
        assert receiver.url in listing
        removed = browser.post_form(f"{webhook_path}/delete")
        assert removed.status_code == 303
    assert receiver.url not in browser.page("/dashboard/webhooks")
    assert browser.get(webhook_path).status_code == 404


def _delivery_id(page: str) -> str:
    marker = 'data-delivery-id="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def test_a_webhook_url_that_fails_validation_is_explained(visitor: Visitor) -> None:
    browser = visitor.signed_in()
    with running_receiver() as receiver:
        receiver.get_status = 500
        browser.page("/dashboard/webhooks")
        refused = browser.post_form("/dashboard/webhooks", {"url": receiver.url})
    assert refused.status_code == 400
    text = text_of(refused.text)
    assert "must answer a GET request with a 2xx status; it answered 500" in text
    assert f'value="{receiver.url}"' in refused.text  # the form keeps what was typed
    browser.last_page = refused.text
    for bad in ("", "ftp://example.org/x", "not a url"):
        response = browser.post_form("/dashboard/webhooks", {"url": bad})
        assert response.status_code in (400, 422), bad
        assert 'role="alert"' in response.text
    assert "No batch webhooks yet" in text_of(browser.page("/dashboard/webhooks"))


# --- audiences ------------------------------------------------------------------------------


def test_audiences_show_member_counts_and_find_a_member(
    visitor: Visitor, runtime: EmbeddedRuntime
) -> None:
    list_id = create_list(visitor.api)
    operations = member_posts(list_id, 5)
    operations.append(
        {
            "method": "PATCH",
            "path": f"lists/{list_id}/members/user3@example.org",
            "body": json.dumps({"status": "unsubscribed"}),
        }
    )
    operations.append(
        {
            "method": "POST",
            "path": f"lists/{list_id}/members/user1@example.org/tags",
            "body": json.dumps({"tags": [{"name": "VIP", "status": "active"}]}),
        }
    )
    submit(visitor.api, operations)
    runtime.join()
    browser = visitor.signed_in()
    page = browser.page("/dashboard/audiences")
    row = text_of(page[page.index(f'data-list-id="{list_id}"') :].split("</tr>")[0])
    # subscribed, unsubscribed, cleaned, pending, transactional, archived, members
    assert row.endswith("4 1 0 0 0 0 5"), row
    found = text_of(browser.page("/dashboard/audiences?email=USER1%40Example.org"))
    assert "Newsletter" in found and "user1@example.org subscribed" in found and "VIP" in found
    missing = text_of(browser.page("/dashboard/audiences?email=nobody%40example.org"))
    assert "No audience of this account has a member with the address nobody@example.org" in missing


# --- the rest --------------------------------------------------------------------------------


def test_unknown_pages_and_a_disabled_dashboard(visitor: Visitor, services: Services) -> None:
    browser = visitor.signed_in()
    assert browser.get("/dashboard/batches/0000000000").status_code == 404
    unknown = browser.get("/dashboard/no/such/page")
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("text/html")
    assert browser.get("/dashboard/static/../../settings.py").status_code == 404
    assert browser.get("/dashboard/static/dashboard.css").status_code == 200
    off = services.with_settings(services.settings.model_copy(update={"dashboard_enabled": False}))
    with TestClient(create_app(off), base_url="http://testserver") as client:
        assert client.get("/dashboard/sign-in").status_code == 404


def test_metrics_label_dashboard_pages_by_their_template(
    visitor: Visitor, runtime: EmbeddedRuntime
) -> None:
    browser = visitor.signed_in()
    for n in range(30):
        browser.get(f"/dashboard/batches/{n:010d}")
    metrics = browser.client.get("/metrics").text
    routes = {
        line.split('route="')[1].split('"')[0]
        for line in metrics.splitlines()
        if line.startswith("conveyor_http_requests_total{") and "/dashboard" in line
    }
    assert "/dashboard/batches/{batch_id}" in routes
    assert not any(route[-1].isdigit() for route in routes), routes
