"""HTTP endpoints of batch webhooks (`/3.0/batch-webhooks`), plus the delivery log."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import orjson
from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.batches import webhook_store
from conveyor.batches.engine import FollowUp, Step
from conveyor.batches.webhook_store import DeliveryRow, WebhookRow
from conveyor.batches.webhooks import WebhookService
from conveyor.domain import problems
from conveyor.domain.fields import apply_field_selection
from conveyor.domain.problems import FieldError, Problem
from conveyor.domain.webhook_targets import RefusedTarget, parse_webhook_url
from conveyor.http.api import ApiGate, new_request_id
from conveyor.http.responses import problem_response, reply_response
from conveyor.marketing.common import link, paging, schema_url, validate
from conveyor.marketing.routing import Account
from conveyor.marketing.schemas import Body


class WebhookCreate(Body):
    url: str = Field(min_length=1, max_length=2000)
    enabled: bool = True


class WebhookPatch(Body):
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    enabled: bool | None = None


@dataclass
class WebhookEndpoints:
    gate: ApiGate
    service: WebhookService
    dispatch: Callable[[Iterable[FollowUp]], None]
    max_webhooks: int

    def routes(self) -> list[Route]:
        base = "/3.0/batch-webhooks"
        one = base + "/{webhook_id}"
        return [
            Route(base, self.create, methods=["POST"]),
            Route(base, self.list, methods=["GET"]),
            Route(one, self.get, methods=["GET"]),
            Route(one, self.patch, methods=["PATCH"]),
            Route(one, self.delete, methods=["DELETE"]),
            Route(one + "/deliveries", self.deliveries, methods=["GET"]),
            Route(one + "/deliveries/{delivery_id}/redeliver", self.redeliver, methods=["POST"]),
        ]

    async def _guarded(
        self, request: Request, work: Callable[[Account], Any], *, select_fields: bool = False
    ) -> Response:
        request_id = new_request_id()
        try:
            account = await self.gate.authenticate(request)
            with self.gate.limiter.slot(account.pk) as granted:
                if not granted:
                    raise problems.too_many_requests(
                        "You have exceeded the limit of "
                        f"{self.gate.settings.limits.max_concurrent_requests} "
                        "simultaneous connections."
                    )
                status, body = await work(account)
        except Problem as problem:
            return problem_response(problem, request_id)
        if select_fields and isinstance(body, dict):
            query = request.query_params
            body = apply_field_selection(body, query.get("fields"), query.get("exclude_fields"))
        return reply_response(status, body, request_id)

    async def _json(self, request: Request) -> dict[str, Any]:
        raw = await self.gate.read_body(request, self.gate.settings.limits.max_body_bytes)
        if not raw.strip():
            return {}
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise problems.json_parse_error() from None
        if not isinstance(value, dict):
            raise problems.invalid_resource(
                [FieldError("", "The request body must be a JSON object.")]
            )
        return value

    async def _checked_url(self, url: str) -> str:
        try:
            parse_webhook_url(url)
        except RefusedTarget as exc:
            raise problems.invalid_resource([FieldError("url", str(exc))], str(exc)) from None
        failure = await anyio.to_thread.run_sync(self.service.check_url, url)
        if failure:
            raise problems.invalid_resource([FieldError("url", failure)], failure)
        return url

    async def _db(self, work: Callable[[Any], Any], *, write: bool = False) -> Any:
        database = self.gate.database

        def run() -> Any:
            with database.write() if write else database.read() as conn:
                return work(conn)

        return await anyio.to_thread.run_sync(run)

    async def _own(self, request: Request, account: Account) -> WebhookRow:
        webhook_id = request.path_params["webhook_id"]
        found: WebhookRow | None = await self._db(
            lambda conn: webhook_store.get_webhook(conn, account.pk, webhook_id)
        )
        if found is None:
            raise problems.not_found()
        return found

    # --- routes --------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        async def work(account: Account) -> tuple[int, Any]:
            body = validate(WebhookCreate, await self._json(request))
            count = await self._db(lambda conn: webhook_store.count_webhooks(conn, account.pk))
            if count >= self.max_webhooks:
                raise problems.bad_request(
                    f"An account may have at most {self.max_webhooks} batch webhooks."
                )
            url = await self._checked_url(body.url)
            created: WebhookRow = await self._db(
                lambda conn: webhook_store.create_webhook(conn, account.pk, url, body.enabled),
                write=True,
            )
            rendered = self._render(request, created)
            # Shown once: receivers need it to verify X-Mailchimp-Signature.
            rendered["secret"] = created.secret
            return 200, rendered

        return await self._guarded(request, work)

    async def list(self, request: Request) -> Response:
        async def work(account: Account) -> tuple[int, Any]:
            count, offset = paging(request.query_params)
            rows, total = await self._db(
                lambda conn: webhook_store.list_webhooks(conn, account.pk, count, offset)
            )
            root = self.gate.api_root(request)
            return 200, {
                "webhooks": [self._render(request, row) for row in rows],
                "total_items": total,
                "_links": [
                    link("self", f"{root}/batch-webhooks", "GET"),
                    link("create", f"{root}/batch-webhooks", "POST"),
                ],
            }

        return await self._guarded(request, work, select_fields=True)

    async def get(self, request: Request) -> Response:
        async def work(account: Account) -> tuple[int, Any]:
            return 200, self._render(request, await self._own(request, account))

        return await self._guarded(request, work, select_fields=True)

    async def patch(self, request: Request) -> Response:
        async def work(account: Account) -> tuple[int, Any]:
            webhook = await self._own(request, account)
            body = validate(WebhookPatch, await self._json(request))
            values: dict[str, Any] = {}
            if body.url is not None and body.url != webhook.url:
                values["url"] = await self._checked_url(body.url)
            if body.enabled is not None:
                values["enabled"] = body.enabled
            if values:
                await self._db(
                    lambda conn: webhook_store.update_webhook(conn, webhook.id, values),
                    write=True,
                )
            return 200, self._render(request, await self._own(request, account))

        return await self._guarded(request, work)

    async def delete(self, request: Request) -> Response:
        async def work(account: Account) -> tuple[int, Any]:
            webhook = await self._own(request, account)
            await self._db(lambda conn: webhook_store.delete_webhook(conn, webhook.id), write=True)
            return 204, None

        return await self._guarded(request, work)

    async def deliveries(self, request: Request) -> Response:
        async def work(account: Account) -> tuple[int, Any]:
            webhook = await self._own(request, account)
            count, offset = paging(request.query_params)
            rows, total = await self._db(
                lambda conn: webhook_store.list_deliveries(conn, webhook.id, count, offset)
            )
            root = self.gate.api_root(request)
            return 200, {
                "deliveries": [_render_delivery(row) for row in rows],
                "total_items": total,
                "_links": [
                    link("self", f"{root}/batch-webhooks/{webhook.id}/deliveries", "GET"),
                    link("parent", f"{root}/batch-webhooks/{webhook.id}", "GET"),
                ],
            }

        return await self._guarded(request, work, select_fields=True)

    async def redeliver(self, request: Request) -> Response:
        async def work(account: Account) -> tuple[int, Any]:
            webhook = await self._own(request, account)
            delivery_id = request.path_params["delivery_id"]
            delivery: DeliveryRow | None = await self._db(
                lambda conn: webhook_store.get_delivery(conn, delivery_id)
            )
            if delivery is None or delivery.webhook_id != webhook.id:
                raise problems.not_found()
            requeued = await self._db(
                lambda conn: webhook_store.requeue(conn, delivery_id), write=True
            )
            if not requeued:
                raise problems.bad_request("This delivery is being sent right now.")
            self.dispatch([FollowUp(Step.DELIVER, delivery_id)])
            fresh = await self._db(lambda conn: webhook_store.get_delivery(conn, delivery_id))
            return 200, _render_delivery(fresh)

        return await self._guarded(request, work)

    def _render(self, request: Request, webhook: WebhookRow) -> dict[str, Any]:
        root = self.gate.api_root(request)
        href = f"{root}/batch-webhooks/{webhook.id}"
        schema = schema_url(root, "Definitions/BatchWebhooks/Response")
        return {
            "id": webhook.id,
            "url": webhook.url,
            "enabled": webhook.enabled,
            "_links": [
                link("self", href, "GET", schema),
                link("parent", f"{root}/batch-webhooks", "GET"),
                link("update", href, "PATCH", schema),
                link("delete", href, "DELETE"),
                link("deliveries", f"{href}/deliveries", "GET"),
            ],
        }


def _iso(ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, UTC).replace(microsecond=0).isoformat()


def _render_delivery(row: DeliveryRow) -> dict[str, Any]:
    pending = row.state in webhook_store.PENDING_STATES
    return {
        "id": row.id,
        "batch_id": row.batch_id,
        "state": row.state,
        "attempts": row.attempts,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error or "",
        "created_at": _iso(row.created_ts),
        "delivered_at": _iso(row.delivered_ts),
        "next_attempt_at": _iso(row.next_attempt_ts) if pending else "",
        "history": [
            {
                "at": _iso(entry["at"]),
                "status_code": entry["status_code"],
                "error": entry["error"] or "",
                "duration_ms": entry["duration_ms"],
            }
            for entry in orjson.loads(row.history)
        ],
    }
