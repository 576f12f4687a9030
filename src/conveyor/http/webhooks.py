"""Batch webhooks over HTTP: CRUD, the delivery log and redelivery, over `WebhookService`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.batches.webhooks import WebhookService
from conveyor.domain import problems
from conveyor.domain.links import schema_url
from conveyor.domain.problems import FieldError
from conveyor.domain.steps import FollowUp, Step
from conveyor.http.gate import Answer, ApiGate, RequestContext
from conveyor.marketing.common import link, paging, validate
from conveyor.marketing.schemas import Body
from conveyor.storage.webhooks import DeliveryRow, WebhookRow


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

    def routes(self) -> list[Route]:
        base = "/3.0/batch-webhooks"
        one = base + "/{webhook_id}"
        return [
            Route(base, self.create, methods=["POST"]),
            Route(base, self.list_webhooks, methods=["GET"]),
            Route(one, self.get, methods=["GET"]),
            Route(one, self.patch, methods=["PATCH"]),
            Route(one, self.delete, methods=["DELETE"]),
            Route(one + "/deliveries", self.deliveries, methods=["GET"]),
            Route(one + "/deliveries/{delivery_id}/redeliver", self.redeliver, methods=["POST"]),
        ]

    async def _json(self, request: Request) -> dict[str, Any]:
        raw = await self.gate.read_body(request)
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

    # --- routes --------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            body = validate(WebhookCreate, await self._json(request))
            account_pk = context.account.pk
            await self.gate.in_thread(lambda: self.service.check_room(account_pk))
            await self.service.require_reachable(body.url)
            created = await self.gate.in_thread(
                lambda: self.service.create(account_pk, body.url, body.enabled)
            )
            rendered = self._render(request, created)
            # Shown once: receivers need it to verify X-Mailchimp-Signature.
            rendered["secret"] = created.secret
            return 200, rendered

        return await self.gate.guarded(request, work)

    async def list_webhooks(self, request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            count, offset = paging(request.query_params)
            rows, total = await self.gate.in_thread(
                lambda: self.service.list_webhooks(context.account.pk, count, offset)
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

        return await self.gate.guarded(request, work, select_fields=True)

    async def get(self, request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            webhook_id = request.path_params["webhook_id"]
            found = await self.gate.in_thread(
                lambda: self.service.get(context.account.pk, webhook_id)
            )
            return 200, self._render(request, found)

        return await self.gate.guarded(request, work, select_fields=True)

    async def patch(self, request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            webhook_id = request.path_params["webhook_id"]
            # 404 before the body is looked at, as for any other unknown resource.
            current = await self.gate.in_thread(
                lambda: self.service.get(context.account.pk, webhook_id)
            )
            body = validate(WebhookPatch, await self._json(request))
            if body.url is not None and body.url != current.url:
                await self.service.require_reachable(body.url)
            updated = await self.gate.in_thread(
                lambda: self.service.update(context.account.pk, webhook_id, body.url, body.enabled)
            )
            return 200, self._render(request, updated)

        return await self.gate.guarded(request, work)

    async def delete(self, request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            webhook_id = request.path_params["webhook_id"]
            await self.gate.in_thread(lambda: self.service.delete(context.account.pk, webhook_id))
            return 204, None

        return await self.gate.guarded(request, work)

    async def deliveries(self, request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            webhook_id = request.path_params["webhook_id"]
            count, offset = paging(request.query_params)
            webhook, rows, total = await self.gate.in_thread(
                lambda: self.service.deliveries(context.account.pk, webhook_id, count, offset)
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

        return await self.gate.guarded(request, work, select_fields=True)

    async def redeliver(self, request: Request) -> Response:
        async def work(context: RequestContext) -> Answer:
            webhook_id = request.path_params["webhook_id"]
            delivery_id = request.path_params["delivery_id"]
            fresh = await self.gate.in_thread(
                lambda: self.service.redeliver(context.account.pk, webhook_id, delivery_id)
            )
            self.dispatch([FollowUp(Step.DELIVER, delivery_id)])
            return 200, _render_delivery(fresh)

        return await self.gate.guarded(request, work)

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
    pending = row.is_pending
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
