"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright with
the system browser: nothing is downloaded), against a real `conveyor serve` process.

Each test writes screenshots of the pages it visits to SCREENSHOTS (build/screenshots/
dashboard/ in the repository, or $CONVEYOR_TEST_SCREENSHOTS); docs/images/ holds the ones
the README shows.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.conftest import IN_CI, LIST_BODY
from tests.e2e.server import ServerProcess, run_cli
from tests.webhooks.receiver import running_receiver

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(
    os.environ.get("CONVEYOR_TEST_SCREENSHOTS", ROOT / "build" / "screenshots" / "dashboard")
)
ADMIN_TOKEN = "browser-tests-admin-token"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Long enough for a slow shared machine; a passing run waits far less.
WAIT_MS = 30_000


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message + " (CI=true: a missing browser fails the run)")
        pytest.skip(message)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    # The admin token turns on the test controls: the pace that makes a batch last seconds,
    # a pause after each group; groups of 10 make the progress move in small steps.
    env = {"CONVEYOR_ADMIN_TOKEN": ADMIN_TOKEN, "CONVEYOR_BATCH_GROUP_SIZE": "10"}
    with ServerProcess(tmp_path / "server", env=env) as started:
        yield started


class Api:
    """The account's API, as any client uses it, and the server's test controls."""

    def __init__(self, server: ServerProcess, key: str) -> None:
        self.client = httpx.Client(base_url=server.api_url, auth=("x", key), timeout=30)
        self.controls = httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )

    def close(self) -> None:
        self.client.close()
        self.controls.close()

    def pace(self, operations_per_second: float) -> None:
        response = self.controls.post(
            "/_conveyor/pace", json={"operations_per_second": operations_per_second}
        )
        assert response.status_code == 200, response.text

    def new_list(self) -> str:
        response = self.client.post("/lists", json=LIST_BODY)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def submit(self, list_id: str, good: int, bad: int) -> str:
        """A batch of `good + bad` adds; the bad addresses spread evenly, `bad<i>` at
        position i, so that each fails as an invalid address."""
        total = good + bad
        bad_at = set(range(0, total, total // bad)[:bad]) if bad else set()
        operations = [
            {
                "method": "POST",
                "path": f"/lists/{list_id}/members",
                "operation_id": f"add-{i}",
                "body": json.dumps(
                    {
                        "email_address": f"bad{i}" if i in bad_at else f"person{i}@example.org",
                        "status": "subscribed",
                    }
                ),
            }
            for i in range(total)
        ]
        response = self.client.post("/batches", json={"operations": operations})
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def wait_finished(self, batch_id: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.batch(batch_id)["status"] != "finished":
            assert time.monotonic() < deadline, f"batch {batch_id} did not finish"
            time.sleep(0.05)  # the poll interval of a client following a real server

    def batch(self, batch_id: str) -> dict[str, Any]:
        return dict(self.client.get(f"/batches/{batch_id}").json())


@pytest.fixture
def api(server: ServerProcess) -> Iterator[Api]:
    """The first account's API (the key the server printed)."""
    opened = Api(server, server.key)
    yield opened
    opened.close()


def sign_in(page: Any, server: ServerProcess, key: str) -> None:
    page.goto(f"{server.base_url}/dashboard")
    assert "/dashboard/sign-in" in page.url
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/dashboard/batches")


def shot(page: Any, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def progress_value(page: Any) -> float:
    return float(page.eval_on_selector("#batch-progress", "bar => bar.value"))


def test_a_running_batch_moves_without_a_reload_then_its_failures_are_retried(
    browser: Any, server: ServerProcess, api: Api
) -> None:
    list_id = api.new_list()
    api.pace(25)  # 150 operations: about six seconds
    batch_id = api.submit(list_id, good=140, bad=10)
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    sign_in(page, server, server.key)

    # The list: the batch's row redraws itself while it runs.
    row = page.locator(f'tr[data-batch-id="{batch_id}"]')
    row.wait_for()
    page.evaluate("window.__sameDocument = true")
    first = row.locator('[data-field="finished"]').inner_text()
    page.wait_for_function(
        """([id, before]) => {
            const row = document.querySelector(`tr[data-batch-id="${id}"]`);
            const cell = row && row.querySelector('[data-field="finished"]');
            return cell && cell.textContent !== before;
        }""",
        arg=[batch_id, first],
        timeout=WAIT_MS,
    )
    shot(page, "batches-running")
    assert page.evaluate("window.__sameDocument") is True

    # The batch: its bar, counts, rate and time left move by server-sent events.
    row.get_by_role("link", name=batch_id).click()
    page.wait_for_url(f"**/dashboard/batches/{batch_id}")
    page.evaluate("window.__sameDocument = true")
    seen = {progress_value(page)}
    while len(seen) < 3 and api.batch(batch_id)["status"] != "finished":
        before = max(seen)
        page.wait_for_function(
            "before => document.querySelector('#batch-progress').value > before",
            arg=before,
            timeout=WAIT_MS,
        )
        seen.add(progress_value(page))
        if len(seen) == 2:
            shot(page, "batch-running")
    assert len(seen) >= 2, seen
    assert page.locator('[data-field="rate"]').inner_text() != ""

    # Finished: the status says so, the failures and the retry button appear, all in place.
    page.locator('#progress [data-field="status"]', has_text="finished").wait_for(timeout=WAIT_MS)
    failures = page.locator("table.failures tbody tr")
    failures.first.wait_for(timeout=WAIT_MS)
    assert page.evaluate("window.__sameDocument") is True
    assert failures.count() == 10
    assert "Invalid Resource" in failures.first.inner_text()
    assert page.get_by_text("150 of 150 finished, 10 errored").is_visible() or (
        "150" in page.locator("#progress-text").inner_text()
    )
    shot(page, "batch-finished")

    # The filter narrows the failures to what matches.
    page.get_by_label("Filter by operation id, status code or message").fill("bad15")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**q=bad15**")
    assert page.locator("table.failures tbody tr").count() == 1

    api.pace(0)
    page.get_by_role("button", name="Retry 10 failed").click()
    page.wait_for_url(lambda url: batch_id not in url and "/dashboard/batches/" in url)
    retried = page.url.rsplit("/", 1)[1]
    page.locator('#progress [data-field="status"]', has_text="finished").wait_for(timeout=WAIT_MS)
    page.locator("table.failures tbody tr").first.wait_for(timeout=WAIT_MS)
    assert page.get_by_text(f"Retries the failures of {batch_id}").is_visible()
    assert api.batch(retried)["total_operations"] == 10
    shot(page, "batch-retried")

    # Readable on a phone: nothing wider than the screen but the tables, which scroll.
    phone = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    small = phone.new_page()
    sign_in(small, server, server.key)
    small.goto(f"{server.base_url}/dashboard/batches/{batch_id}")
    overflow = small.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, overflow
    shot(small, "batch-phone")
    phone.close()
    context.close()


def test_webhooks_are_added_delivered_and_redelivered(
    browser: Any, server: ServerProcess, api: Api
) -> None:
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    sign_in(page, server, server.key)
    with running_receiver() as receiver:
        page.get_by_role("link", name="Webhooks").click()
        page.get_by_label("URL").fill(receiver.url)
        page.get_by_role("button", name="Add webhook").click()
        page.wait_for_url("**/dashboard/webhooks/*")
        assert page.get_by_text("No deliveries yet").is_visible()
        batch_id = api.submit(api.new_list(), good=3, bad=0)
        receiver.wait_for_posts(1)
        row = page.locator(f'tr:has(a:text("{batch_id}"))')
        for _ in range(100):
            page.reload()
            if row.count() and "delivered" in row.inner_text():
                break
            page.wait_for_timeout(100)  # a delivery's row is written after its POST
        assert "delivered" in row.inner_text()
        shot(page, "webhook-deliveries")
        row.get_by_role("button", name="Redeliver").click()
        page.wait_for_url("**/dashboard/webhooks/*")
        posts = receiver.wait_for_posts(2)
        # The same batch told again (its archive URL freshly signed).
        assert all(f"data%5Bid%5D={batch_id}".encode() in post.body for post in posts)
        page.get_by_role("link", name="Webhooks").first.click()
        assert page.get_by_role("rowheader", name=receiver.url).is_visible()
        shot(page, "webhooks")
        page.get_by_role("button", name=f"Remove {receiver.url}").click()
        page.get_by_text("No batch webhooks yet").wait_for()
    context.close()


def test_audiences_show_counts_and_find_a_member(
    browser: Any, server: ServerProcess, api: Api
) -> None:
    list_id = api.new_list()
    api.wait_finished(api.submit(list_id, good=12, bad=0))
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    sign_in(page, server, server.key)
    page.get_by_role("link", name="Audiences").click()
    row = page.locator(f'tr[data-list-id="{list_id}"]')
    assert row.locator('[data-field="members"]').inner_text() == "12"
    page.get_by_label("Email address").fill("Person3@Example.org")
    page.get_by_role("button", name="Find").click()
    members = page.locator("table.members tbody tr")
    members.first.wait_for()
    assert "person3@example.org" in members.first.inner_text()
    assert "subscribed" in members.first.inner_text()
    shot(page, "audiences")
    context.close()


def test_a_second_account_sees_nothing_and_a_wrong_key_is_refused(
    browser: Any, server: ServerProcess, api: Api
) -> None:
    batch_id = api.submit(api.new_list(), good=2, bad=1)
    created = run_cli("keys", "create", "--data-dir", str(server.data_dir))
    assert created.returncode == 0, created.stderr
    other_key = created.stdout.strip()
    assert other_key != server.key

    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.goto(f"{server.base_url}/dashboard/sign-in")
    page.get_by_label("API key").fill("0123456789abcdef0123456789abcdef-us1")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    assert "not valid" in alert.inner_text()
    assert "/dashboard/sign-in" in page.url
    shot(page, "sign-in-refused")

    sign_in(page, server, other_key)
    assert batch_id not in page.content()
    assert page.get_by_text("No batches yet").is_visible()
    # A batch this account submits shows up on the open list, without a reload.
    page.evaluate("window.__sameDocument = true")
    other = Api(server, other_key)
    own_batch = other.submit(other.new_list(), good=1, bad=0)
    other.close()
    page.locator(f'tr[data-batch-id="{own_batch}"]').wait_for(timeout=WAIT_MS)
    assert page.evaluate("window.__sameDocument") is True
    assert batch_id not in page.content()
    response = page.goto(f"{server.base_url}/dashboard/batches/{batch_id}")
    assert response is not None and response.status == 404
    assert page.get_by_role("heading", name="Resource Not Found").is_visible()

    # The first account's key still shows its batch in a session of its own.
    owner = browser.new_context(viewport=LAPTOP)
    owner_page = owner.new_page()
    sign_in(owner_page, server, server.key)
    assert owner_page.locator(f'tr[data-batch-id="{batch_id}"]').count() == 1
    # Signing out ends the session: the pages send the visitor to sign in again.
    owner_page.get_by_role("button", name="Sign out").click()
    owner_page.wait_for_url("**/dashboard/sign-in")
    owner_page.goto(f"{server.base_url}/dashboard/batches")
    assert "/dashboard/sign-in" in owner_page.url
    owner.close()
    context.close()


def test_every_page_passes_axe_accessibility_checks(
    browser: Any, server: ServerProcess, api: Api
) -> None:
    """axe-core (the engine of the browsers' accessibility audits) on every page, laptop
    and phone: labels, headings, landmarks, contrast, names of links and buttons."""
    list_id = api.new_list()
    batch_id = api.submit(list_id, good=8, bad=2)
    api.wait_finished(batch_id)
    pages = ["/dashboard/batches", f"/dashboard/batches/{batch_id}", "/dashboard/webhooks"]
    pages.append("/dashboard/audiences?email=person1%40example.org")
    axe = Axe()
    for viewport in (LAPTOP, PHONE):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.goto(f"{server.base_url}/dashboard/sign-in")
        found = {"sign-in": axe.run(page)}
        sign_in(page, server, server.key)
        with running_receiver() as receiver:
            page.goto(f"{server.base_url}/dashboard/webhooks")
            page.get_by_label("URL").fill(receiver.url)
            page.get_by_role("button", name="Add webhook").click()
            page.wait_for_url("**/dashboard/webhooks/*")
            found["webhook"] = axe.run(page)
        for path in pages:
            page.goto(server.base_url + path)
            found[path] = axe.run(page)
        reports = {
            name: result.generate_report()
            for name, result in found.items()
            if result.violations_count
        }
        assert not reports, "\n\n".join(
            f"{name} ({viewport}):\n{report}" for name, report in reports.items()
        )
        context.close()
