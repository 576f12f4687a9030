"""Batch webhooks: URL validation and delivery from the outbox, with retries and signatures."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import orjson

from conveyor.batches import webhook_store
from conveyor.batches.engine import FollowUp, Step
from conveyor.batches.webhook_http import Attempt, send
from conveyor.domain.retry import RetryPolicy
from conveyor.domain.signing import build_download_url
from conveyor.domain.webhook_payload import CompletedBatch, encode_form, form_fields
from conveyor.domain.webhook_signature import sign
from conveyor.domain.webhook_targets import TargetPolicy
from conveyor.storage.database import Database

log = logging.getLogger("conveyor.webhooks")

SIGNATURE_HEADER = "X-Mailchimp-Signature"


@dataclass
class WebhookService:
    database: Database
    client: httpx.Client
    policy: TargetPolicy
    retry: RetryPolicy
    download_secret: bytes
    url_ttl_seconds: int
    timeout_seconds: float = 10.0
    lease_seconds: float = 60.0

    def check_url(self, url: str) -> str | None:
        """None if `url` answers a GET with a 2xx, else why not (for a problem's detail)."""
        attempt = send(self.client, "GET", url, self.policy, timeout=self.timeout_seconds)
        if attempt.ok:
            return None
        if attempt.error:
            return f"The webhook URL could not be validated: {attempt.error}"
        return (
            "The webhook URL must answer a GET request with a 2xx status; "
            f"it answered {attempt.status_code}."
        )

    def deliver(self, delivery_id: str) -> list[FollowUp]:
        with self.database.write() as conn:
            if not webhook_store.claim_delivery(conn, delivery_id, self.lease_seconds):
                return []  # not due, already sent, or another sender has it
            delivery = webhook_store.get_delivery(conn, delivery_id)
            webhook = (
                webhook_store.webhook_for_delivery(conn, delivery.webhook_id) if delivery else None
            )
            if delivery is None:
                return []
            if webhook is None or not webhook.enabled:
                webhook_store.cancel(conn, delivery_id)
                return []
        batch = CompletedBatch.from_json(orjson.loads(delivery.payload))
        body = encode_form(form_fields(batch, self._download_url(batch), datetime.now(UTC)))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            SIGNATURE_HEADER: sign(webhook.secret.encode(), body, int(time.time())),
        }
        attempt = send(
            self.client,
            "POST",
            webhook.url,
            self.policy,
            content=body,
            headers=headers,
            timeout=self.timeout_seconds,
        )
        return self._record(delivery, attempt)

    def _record(self, delivery: webhook_store.DeliveryRow, attempt: Attempt) -> list[FollowUp]:
        attempts_made = delivery.attempts + 1
        delay = None if attempt.ok else self.retry.delay_after(attempts_made)
        if attempt.ok:
            state = webhook_store.DELIVERED
        elif delay is None:
            state = webhook_store.FAILED
        else:
            state = webhook_store.QUEUED
        next_at = time.time() + (delay or 0.0)
        with self.database.write() as conn:
            webhook_store.record_attempt(
                conn,
                delivery,
                state=state,
                status_code=attempt.status_code,
                error=attempt.error,
                duration_ms=attempt.duration_ms,
                next_attempt_ts=next_at,
            )
        if state == webhook_store.QUEUED:
            log.info(
                "webhook delivery %s failed (attempt %d: %s); next in %.1fs",
                delivery.id, attempts_made, attempt.error or attempt.status_code, delay,
            )  # fmt: skip
            return [FollowUp(Step.DELIVER, delivery.id, delay_seconds=delay or 0.0)]
        if state == webhook_store.FAILED:
            log.warning("webhook delivery %s failed after %d attempts", delivery.id, attempts_made)
        return []

    def _download_url(self, batch: CompletedBatch) -> str:
        self_link = next((link for link in batch.links if link.get("rel") == "self"), None)
        if self_link is None:
            return ""
        base = self_link["href"].rsplit("/3.0/", 1)[0]
        return build_download_url(
            base, self.download_secret, batch.id, time.time(), self.url_ttl_seconds
        )

    def sweep(self, *, idle_seconds: float) -> list[FollowUp]:
        with self.database.read() as conn:
            overdue = webhook_store.overdue_deliveries(conn, time.time() - idle_seconds)
        return [FollowUp(Step.DELIVER, delivery_id) for delivery_id in overdue]
