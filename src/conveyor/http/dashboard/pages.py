"""The dashboard's endpoints: sign-in, pages, the fragments and events that keep them live,
and the forms that steer batches and webhooks (docs/dashboard.md).

Every page but sign-in belongs to the account of the signed-in key, looked up on each
request, so a revoked key's sessions end at once. Every form posts a CSRF token. Reads go to
a worker thread; the pages' scripts poll fragments rendered by the same templates as the
page, so there is one way to draw a row.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote

import anyio
import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import iterate_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from conveyor.batches.progress_feed import ProgressEventKind, ProgressFeed
from conveyor.batches.results_view import BatchResultsView
from conveyor.batches.service import BatchService
from conveyor.batches.webhooks import WebhookService
from conveyor.domain import problems
from conveyor.domain.accounts import Account
from conveyor.domain.clock import Clock
from conveyor.domain.ids import key_hash
from conveyor.domain.problems import FieldError, Problem
from conveyor.domain.steps import FollowUp, Step
from conveyor.http.auth import KeyCache
from conveyor.http.dashboard.reads import DashboardReads
from conveyor.http.dashboard.session import COOKIE_NAME, Session, SessionCodec, new_session
from conveyor.http.dashboard.views import (
    MEMBER_STATUSES,
    Page,
    batch_summary,
    delivery_view,
    duration_text,
    offset_param,
    utc_now,
)
from conveyor.http.limits import InProcessLimiter
from conveyor.http.problems import problem_for
from conveyor.http.streams import HeldEvents
from conveyor.observability.logs import note_account

log = logging.getLogger("conveyor.dashboard")
T = TypeVar("T")

PREFIX = "/dashboard"
BATCHES_PER_PAGE = 25
FAILURES_PER_PAGE = 25
AUDIENCES_PER_PAGE = 50
DELIVERIES_PER_PAGE = 25
# A form is a few fields; anything bigger is not one of ours.
MAX_FORM_BYTES = 16 * 1024
ASSETS = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
}
# Scripts and styles from this server only; no inline script can run.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
Dispatch = Callable[[Iterable[FollowUp]], None]


class _NotSignedIn(Exception):
    """No session, an expired one, or one whose key was revoked."""


@dataclass
class DashboardPages:
    reads: DashboardReads
    batches: BatchService
    webhooks: WebhookService
    keys: KeyCache
    codec: SessionCodec
    dispatch: Dispatch
    clock: Clock
    # The API root (`…/3.0`) a request reaches this server by: where retries run, and
    # what the archive's signed URL is built on.
    api_root: Callable[[Request], str]
    event_streams: InProcessLimiter
    progress_interval_seconds: float = 0.5
    _templates: Environment = field(init=False)

    def __post_init__(self) -> None:
        self._templates = Environment(
            loader=PackageLoader("conveyor.http.dashboard", "templates"),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._templates.filters["duration"] = duration_text
        self._templates.globals["prefix"] = PREFIX
        self._templates.globals["member_statuses"] = MEMBER_STATUSES

    def routes(self) -> list[Route]:
        one_batch = PREFIX + "/batches/{batch_id}"
        one_webhook = PREFIX + "/webhooks/{webhook_id}"
        return [
            Route(PREFIX, self.home, methods=["GET"]),
            Route(PREFIX + "/", self.home, methods=["GET"]),
            Route(PREFIX + "/static/{name}", self.asset, methods=["GET"]),
            Route(PREFIX + "/sign-in", self.sign_in_page, methods=["GET"]),
            Route(PREFIX + "/sign-in", self.sign_in, methods=["POST"]),
            Route(PREFIX + "/sign-out", self.sign_out, methods=["POST"]),
            Route(PREFIX + "/batches", self.batch_list, methods=["GET"]),
            Route(PREFIX + "/batches/rows", self.batch_rows, methods=["GET"]),
            Route(one_batch, self.batch_page, methods=["GET"]),
            Route(one_batch + "/panel", self.batch_panel, methods=["GET"]),
            Route(one_batch + "/progress", self.batch_progress, methods=["GET"]),
            Route(one_batch + "/archive", self.batch_archive, methods=["GET"]),
            Route(one_batch + "/results.ndjson", self.batch_ndjson, methods=["GET"]),
            Route(one_batch + "/cancel", self.batch_cancel, methods=["POST"]),
            Route(one_batch + "/retry", self.batch_retry, methods=["POST"]),
            Route(PREFIX + "/webhooks", self.webhook_list, methods=["GET"]),
            Route(PREFIX + "/webhooks", self.webhook_add, methods=["POST"]),
            Route(one_webhook, self.webhook_page, methods=["GET"]),
            Route(one_webhook + "/delete", self.webhook_delete, methods=["POST"]),
            Route(
                one_webhook + "/deliveries/{delivery_id}/redeliver",
                self.webhook_redeliver,
                methods=["POST"],
            ),
            Route(PREFIX + "/audiences", self.audiences, methods=["GET"]),
            # Last: any other path under the dashboard is its own "not found" page.
            Route(PREFIX + "/{rest:path}", self.not_found, methods=["GET"]),
        ]

    # --- plumbing ------------------------------------------------------------------------

    def _session(self, request: Request) -> Session | None:
        return self.codec.loads(request.cookies.get(COOKIE_NAME))

    async def _account(self, request: Request) -> tuple[Account, Session]:
        session = self._session(request)
        if session is None or session.key_hash is None:
            raise _NotSignedIn
        digest = session.key_hash
        account = await _in_thread(lambda: self.reads.account(digest))
        if account is None:
            raise _NotSignedIn
        note_account(account.account_id, request.path_params.get("batch_id"))
        return account, session

    def _render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        *,
        status: int = 200,
        session: Session | None = None,
    ) -> HTMLResponse:
        page = self._templates.get_template(template).render(
            request=request, session=session, **context
        )
        return _secured(HTMLResponse(page, status_code=status))

    def _with_cookie(self, request: Request, response: Response, session: Session | None) -> None:
        if session is None:
            response.delete_cookie(COOKIE_NAME, path=PREFIX, httponly=True, samesite="strict")
            return
        response.set_cookie(
            COOKIE_NAME,
            self.codec.dumps(session),
            max_age=self.codec.max_age_seconds,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    async def _page(
        self,
        request: Request,
        draw: Callable[[Account, Session], Awaitable[Response]],
    ) -> Response:
        """A page of the signed-in account: sign-in first for a visitor without a session;
        a problem (a batch of another account, say) drawn as an error page."""
        try:
            account, session = await self._account(request)
        except _NotSignedIn:
            if request.method == "GET" and _is_page(request):
                target = f"{PREFIX}/sign-in?next={quote(_here(request), safe='/')}"
                return _secured(RedirectResponse(target, status_code=303))
            return self._error(request, None, _signed_out())
        try:
            if request.method == "POST":
                form = await _form(request)
                if not session.accepts(form.get("csrf_token")):
                    raise Problem(
                        403,
                        "Forbidden",
                        "The form's security token did not match; reload the page and retry.",
                    )
                request.state.form = form
            return await draw(account, session)
        except Exception as exc:
            problem = problem_for(exc)
            if problem is None:
                log.exception("dashboard page failed: %s", request.url.path)
                problem = problems.internal_error()
            return self._error(request, session, problem)

    def _error(self, request: Request, session: Session | None, problem: Problem) -> Response:
        return self._render(
            request,
            "error.html",
            {"problem": problem},
            status=problem.status,
            session=session,
        )

    # --- assets, sign-in, sign-out -------------------------------------------------------

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        media_type = ASSETS.get(name)
        if media_type is None:
            return self._error(request, None, problems.not_found())
        body = resources.files("conveyor.http.dashboard").joinpath("static", name).read_bytes()
        response = Response(body, media_type=media_type)
        response.headers["Cache-Control"] = "public, max-age=300"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    async def not_found(self, request: Request) -> Response:
        return self._error(request, self._session(request), problems.not_found())

    async def home(self, request: Request) -> Response:
        return _secured(RedirectResponse(PREFIX + "/batches", status_code=303))

    async def sign_in_page(self, request: Request) -> Response:
        session = self._session(request)
        if session is None or session.signed_in:
            # A fresh token for the form (a signed-in visitor may sign in with another key).
            session = new_session()
        response = self._render(
            request,
            "sign_in.html",
            {"next": _safe_next(request.query_params.get("next")), "failed": False},
            session=session,
        )
        self._with_cookie(request, response, session)
        return response

    async def sign_in(self, request: Request) -> Response:
        session = self._session(request)
        form = await _form(request)
        next_page = _safe_next(form.get("next"))
        if not _sign_in_allowed(request, session, form.get("csrf_token")):
            problem = Problem(
                403,
                "Forbidden",
                "The sign-in form expired or came from elsewhere; reload it and sign in again.",
            )
            return self._error(request, None, problem)
        session = session or new_session()
        key = (form.get("api_key") or "").strip()
        # Not the key cache: a key revoked a moment ago must not sign in.
        account = await _in_thread(lambda: self.keys.lookup(key)) if key else None
        if account is None:
            log.info("dashboard sign-in refused")
            return self._render(
                request,
                "sign_in.html",
                {"next": next_page, "failed": True},
                status=401,
                session=session,
            )
        note_account(account.account_id, None)
        log.info("dashboard sign-in")
        response = _secured(RedirectResponse(next_page, status_code=303))
        self._with_cookie(request, response, new_session(key_hash(key)))
        return response

    async def sign_out(self, request: Request) -> Response:
        session = self._session(request)
        form = await _form(request)
        if session is None or not session.accepts(form.get("csrf_token")):
            problem = Problem(403, "Forbidden", "The form's security token did not match.")
            return self._error(request, None, problem)
        response = _secured(RedirectResponse(PREFIX + "/sign-in", status_code=303))
        self._with_cookie(request, response, None)
        return response

    # --- batches -------------------------------------------------------------------------

    async def batch_list(self, request: Request) -> Response:
        async def draw(account: Account, session: Session) -> Response:
            offset = offset_param(request.query_params.get("offset"))
            batches, page = await _in_thread(
                lambda: self.reads.batch_page(account, BATCHES_PER_PAGE, offset)
            )
            context = {"batches": batches, "page": page, "account": account, "section": "batches"}
            return self._render(request, "batches.html", context, session=session)

        return await self._page(request, draw)

    async def batch_rows(self, request: Request) -> Response:
        """The list's rows alone, for its script to redraw while batches run."""

        async def draw(account: Account, session: Session) -> Response:
            offset = offset_param(request.query_params.get("offset"))
            batches, page = await _in_thread(
                lambda: self.reads.batch_page(account, BATCHES_PER_PAGE, offset)
            )
            response = self._render(
                request, "_batch_rows.html", {"batches": batches, "page": page}, session=session
            )
            response.headers["X-Conveyor-Running"] = (
                "true" if any(batch.running for batch in batches) else "false"
            )
            return response

        return await self._page(request, draw)

    def _failures_query(self, request: Request) -> tuple[str, int]:
        text = (request.query_params.get("q") or "").strip()[:200]
        return text, offset_param(request.query_params.get("offset"))

    async def _batch_context(self, request: Request, account: Account) -> dict[str, Any]:
        batch_id = request.path_params["batch_id"]
        text, offset = self._failures_query(request)

        def read() -> dict[str, Any]:
            batch = self.reads.batch(account, batch_id)
            failures, page = self.reads.failures(account, batch.id, text, FAILURES_PER_PAGE, offset)
            return {"batch": batch, "failures": failures, "page": page, "q": text}

        context = await _in_thread(read)
        context["account"] = account
        context["section"] = "batches"
        return context

    async def batch_page(self, request: Request) -> Response:
        async def draw(account: Account, session: Session) -> Response:
            context = await self._batch_context(request, account)
            return self._render(request, "batch.html", context, session=session)

        return await self._page(request, draw)

    async def batch_panel(self, request: Request) -> Response:
        """The batch's actions and failures alone: redrawn by the page when it finishes."""

        async def draw(account: Account, session: Session) -> Response:
            context = await self._batch_context(request, account)
            return self._render(request, "_batch_panel.html", context, session=session)

        return await self._page(request, draw)

    async def batch_progress(self, request: Request) -> Response:
        """Server-sent events of the batch's progress, with the rate over the last seconds
        and the time left (the same feed as the API's `/events`)."""

        async def draw(account: Account, session: Session) -> Response:
            batch_id = request.path_params["batch_id"]
            batch = await _in_thread(lambda: self.batches.get(account, batch_id))
            feed = ProgressFeed(
                read=lambda: self.batches.find(account, batch.id),
                clock=self.clock,
                read_in_thread=True,
                interval_seconds=self.progress_interval_seconds,
            )
            with ExitStack() as held:
                if not held.enter_context(self.event_streams.slot(account.pk)):
                    raise problems.too_many_requests(
                        "Too many live pages are open for this account; close one."
                    )
                response = HeldEvents(self._progress_events(feed), ping=15, send_timeout=30)
                response.keep(held.pop_all())
            return response

        return await self._page(request, draw)

    async def _progress_events(self, feed: ProgressFeed) -> AsyncIterator[dict[str, str]]:
        async for event in feed.events():
            if event.kind is ProgressEventKind.DELETED or event.batch is None:
                yield {"event": "deleted", "data": "{}"}
                return
            summary = batch_summary(event.batch, utc_now(self.clock)).as_json()
            summary["rate"] = event.rate.ops_per_second
            summary["eta"] = duration_text(event.rate.eta_seconds)
            yield {"event": event.kind.value, "data": orjson.dumps(summary).decode()}

    async def batch_archive(self, request: Request) -> Response:
        """To the archive by a freshly signed URL (a URL is good for ten minutes only)."""

        async def draw(account: Account, session: Session) -> Response:
            batch_id = request.path_params["batch_id"]
            batch = await _in_thread(lambda: self.batches.get(account, batch_id))
            server_root = self.api_root(request).removesuffix("/3.0")
            url = self.batches.download_url(batch, server_root)
            if not url:
                raise Problem(
                    409, "Not Finished", "The archive is written when the batch finishes."
                )
            return RedirectResponse(url, status_code=303)

        return await self._page(request, draw)

    async def batch_ndjson(self, request: Request) -> Response:
        async def draw(account: Account, session: Session) -> Response:
            batch_id = request.path_params["batch_id"]
            view = BatchResultsView(self.reads.database, self.batches.store, self.reads.results)
            batch = await _in_thread(lambda: view.check_results(account, batch_id))
            return StreamingResponse(
                iterate_in_threadpool(view.ndjson_pages(batch.id)),
                media_type="application/x-ndjson",
                headers={
                    "Content-Disposition": f'attachment; filename="{batch.id}-results.ndjson"'
                },
            )

        return await self._page(request, draw)

    async def batch_cancel(self, request: Request) -> Response:
        async def draw(account: Account, session: Session) -> Response:
            batch_id = request.path_params["batch_id"]
            batch, canceled = await _in_thread(lambda: self.batches.cancel(account, batch_id))
            if canceled:
                self.dispatch([FollowUp(Step.FINALIZE, batch.id)])
            return _secured(RedirectResponse(f"{PREFIX}/batches/{batch.id}", status_code=303))

        return await self._page(request, draw)

    async def batch_retry(self, request: Request) -> Response:
        async def draw(account: Account, session: Session) -> Response:
            batch_id = request.path_params["batch_id"]
            retried = await self.batches.retry(account, batch_id, self.api_root(request), None)
            self.dispatch([FollowUp(Step.PREPROCESS, retried.id)])
            return _secured(RedirectResponse(f"{PREFIX}/batches/{retried.id}", status_code=303))

        return await self._page(request, draw)

    # --- webhooks ------------------------------------------------------------------------

    async def _webhook_list(
        self,
        request: Request,
        account: Account,
        session: Session,
        *,
        status: int = 200,
        problem: Problem | None = None,
        url: str = "",
    ) -> Response:
        rows, total = await _in_thread(lambda: self.webhooks.list_webhooks(account.pk, 100, 0))
        context = {
            "webhooks": rows,
            "total": total,
            "account": account,
            "section": "webhooks",
            "problem": problem,
            "url": url,
            "max_webhooks": self.webhooks.max_webhooks,
        }
        return self._render(request, "webhooks.html", context, status=status, session=session)

    async def webhook_list(self, request: Request) -> Response:
        async def draw(account: Account, session: Session) -> Response:
            return await self._webhook_list(request, account, session)

        return await self._page(request, draw)

    async def webhook_add(self, request: Request) -> Response:
        async def draw(account: Account, session: Session) -> Response:
            url = (request.state.form.get("url") or "").strip()
            try:
                if not url:
                    raise problems.invalid_resource(
                        [FieldError("url", "Enter the URL to send deliveries to.")],
                        "Enter the URL to send deliveries to.",
                    )
                await _in_thread(lambda: self.webhooks.check_room(account.pk))
                # The same check as the API's: the URL must answer a GET with a 2xx.
                await self.webhooks.require_reachable(url)
                created = await _in_thread(lambda: self.webhooks.create(account.pk, url, True))
            except Problem as problem:
                return await self._webhook_list(
                    request, account, session, status=problem.status, problem=problem, url=url
                )
            log.info("dashboard added webhook %s", created.id)
            target = f"{PREFIX}/webhooks/{created.id}"
            return _secured(RedirectResponse(target, status_code=303))

        return await self._page(request, draw)

    async def webhook_page(self, request: Request) -> Response:
        async def draw(account: Account, session: Session) -> Response:
            webhook_id = request.path_params["webhook_id"]
            offset = offset_param(request.query_params.get("offset"))
            webhook, deliveries, total = await _in_thread(
                lambda: self.webhooks.deliveries(
                    account.pk, webhook_id, DELIVERIES_PER_PAGE, offset
                )
            )
            context = {
                "webhook": webhook,
                "deliveries": [delivery_view(row) for row in deliveries],
                "page": Page(offset, DELIVERIES_PER_PAGE, total),
                "account": account,
                "section": "webhooks",
            }
            return self._render(request, "webhook.html", context, session=session)

        return await self._page(request, draw)

    async def webhook_delete(self, request: Request) -> Response:
        async def draw(account: Account, session: Session) -> Response:
            webhook_id = request.path_params["webhook_id"]
            await _in_thread(lambda: self.webhooks.delete(account.pk, webhook_id))
            return _secured(RedirectResponse(PREFIX + "/webhooks", status_code=303))

        return await self._page(request, draw)

    async def webhook_redeliver(self, request: Request) -> Response:
        async def draw(account: Account, session: Session) -> Response:
            webhook_id = request.path_params["webhook_id"]
            delivery_id = request.path_params["delivery_id"]
            await _in_thread(lambda: self.webhooks.redeliver(account.pk, webhook_id, delivery_id))
            self.dispatch([FollowUp(Step.DELIVER, delivery_id)])
            target = f"{PREFIX}/webhooks/{webhook_id}"
            return _secured(RedirectResponse(target, status_code=303))

        return await self._page(request, draw)

    # --- audiences -----------------------------------------------------------------------

    async def audiences(self, request: Request) -> Response:
        async def draw(account: Account, session: Session) -> Response:
            offset = offset_param(request.query_params.get("offset"))
            email = (request.query_params.get("email") or "").strip()[:320]

            def read() -> dict[str, Any]:
                audiences, page = self.reads.audiences(account, AUDIENCES_PER_PAGE, offset)
                found = self.reads.find_member(account, email) if email else []
                return {"audiences": audiences, "page": page, "email": email, "found": found}

            context = await _in_thread(read)
            context.update(account=account, section="audiences")
            return self._render(request, "audiences.html", context, session=session)

        return await self._page(request, draw)


# --- helpers -----------------------------------------------------------------------------


async def _in_thread(work: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)


def _signed_out() -> Problem:
    return Problem(
        401,
        "Signed Out",
        "Sign in to the dashboard again: the session ended or its key was revoked.",
    )


R = TypeVar("R", bound=Response)


def _secured(response: R) -> R:
    """What every dashboard answer says to the browser: no framing, no sniffing, scripts
    and styles from this server only, and nothing cached (pages show one account's data)."""
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "same-origin"
    headers["Cache-Control"] = "no-store"
    return response


def _is_page(request: Request) -> bool:
    """A page a browser navigates to (a redirect to sign-in helps), not a fragment or a
    stream a script fetches (those get a 401)."""
    path = request.url.path
    return not path.endswith(("/rows", "/panel", "/progress"))


def _sign_in_allowed(request: Request, session: Session | None, token: str | None) -> bool:
    """Whether a sign-in POST may go on. The form's token when it sent one; without one (a
    script that posts `api_key` alone), only a request no other site started: a browser
    names the page a cross-site form came from in `Origin` (else `Referer`), so signing a
    visitor into someone else's account from another site stays refused."""
    if token:
        return session is not None and session.accepts(token)
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None:
        return True
    own = f"{request.url.scheme}://{request.url.netloc}"
    return origin == own or origin.startswith(own + "/")


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _safe_next(raw: str | None) -> str:
    """Where to go after sign-in: a dashboard page of this server, never elsewhere (an
    open redirect would lend the server's name to phishing)."""
    if raw and raw.startswith(PREFIX + "/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return PREFIX + "/batches"


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the first value of each)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise problems.payload_too_large(MAX_FORM_BYTES)
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise problems.bad_request("The form could not be read.") from None
    return {name: values[0] for name, values in fields.items()}
