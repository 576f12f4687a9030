"""Batch webhooks: the account's webhooks, URL validation, and delivery from the outbox."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from conveyor.batches.webhook_http import Attempt, Outbound, send, send_async
from conveyor.domain import problems
from conveyor.domain.problems import FieldError
from conveyor.domain.retry import RetryPolicy
from conveyor.domain.signing import build_download_url
from conveyor.domain.states import DeliveryState
from conveyor.domain.steps import FollowUp, Step
from conveyor.domain.webhook_payload import CompletedBatch, encode_form, form_fields
from conveyor.domain.webhook_signature import sign
from conveyor.domain.webhook_targets import RefusedTarget, TargetPolicy, parse_webhook_url
from conveyor.storage.database import Database
from conveyor.storage.webhooks import DeliveryRow, HeldDelivery, WebhookRow, WebhookStore

log = logging.getLogger("conveyor.webhooks")

SIGNATURE_HEADER = "X-Mailchimp-Signature"
# The same on every attempt of one delivery: a receiver that sees it twice (delivery is at
# least once) has had this one already.
DELIVERY_ID_HEADER = "X-Conveyor-Delivery"
ATTEMPT_HEADER = "X-Conveyor-Delivery-Attempt"


class DeliveryOutcome(StrEnum):
    """What one run of the DELIVER step came to (for logs and metrics)."""

    DELIVERED = "delivered"  # the receiver answered 2xx
    RETRYING = "retrying"  # it did not; another attempt is scheduled
    FAILED = "failed"  # it did not, and that was the last attempt
    # Not attempted, and no attempt counted:
    DEFERRED = "deferred"  # the account has its limit of deliveries in flight
    CANCELLED = "cancelled"  # the webhook was deleted or disabled
    NOTHING_TO_DO = "nothing_to_do"  # not due, held by another sender, or ended
    # Attempted, but not recorded: another sender took the delivery over after the lease ran
    # out (this process stalled past it), and its attempt is the one that counts.
    LEASE_LOST = "lease_lost"


@dataclass(frozen=True)
class DeliveryReport:
    outcome: DeliveryOutcome
    follow_ups: list[FollowUp] = field(default_factory=list)
    attempt: Attempt | None = None


@dataclass
class WebhookService:
    """An account's batch webhooks (at most `max_webhooks`, each URL checked with a GET) and
    the sending of their deliveries: claimed under a lease, POSTed with Mailchimp's form body
    and a signature, retried on the `retry` schedule (docs/architecture.md decision 8)."""

    database: Database
    store: WebhookStore
    outbound: Outbound
    policy: TargetPolicy
    retry: RetryPolicy
    download_secret: bytes
    url_ttl_seconds: int
    max_webhooks: int = 20
    timeout_seconds: float = 10.0
    lease_margin_seconds: float = 30.0
    account_concurrency: int = 2

    @property
    def lease_seconds(self) -> float:
        """How long an attempt's claim holds: its deadline, plus time to record it."""
        return self.timeout_seconds + self.lease_margin_seconds

    # --- the account's webhooks ----------------------------------------------------------

    def check_room(self, account_pk: int) -> None:
        """Refuse a webhook beyond the account's `max_webhooks`."""
        with self.database.read() as conn:
            count = self.store.count(conn, account_pk)
        if count >= self.max_webhooks:
            raise problems.bad_request(
                f"An account may have at most {self.max_webhooks} batch webhooks."
            )

    def create(self, account_pk: int, url: str, enabled: bool) -> WebhookRow:
        """Store a webhook whose URL `require_reachable` has accepted."""
        with self.database.write() as conn:
            return self.store.create(conn, account_pk, url, enabled)

    def get(self, account_pk: int, webhook_id: str) -> WebhookRow:
        with self.database.read() as conn:
            found = self.store.get(conn, account_pk, webhook_id)
        if found is None:
            raise problems.not_found()
        return found

    def list_webhooks(
        self, account_pk: int, count: int, offset: int
    ) -> tuple[list[WebhookRow], int]:
        with self.database.read() as conn:
            return self.store.list_for_account(conn, account_pk, count, offset)

    def update(
        self, account_pk: int, webhook_id: str, url: str | None, enabled: bool | None
    ) -> WebhookRow:
        """Change a webhook; a new `url` must have been accepted by `require_reachable`."""
        webhook = self.get(account_pk, webhook_id)
        values: dict[str, Any] = {}
        if url is not None and url != webhook.url:
            values["url"] = url
        if enabled is not None:
            values["enabled"] = enabled
        if values:
            with self.database.write() as conn:
                self.store.update(conn, webhook.id, values)
        return self.get(account_pk, webhook_id)

    def delete(self, account_pk: int, webhook_id: str) -> None:
        webhook = self.get(account_pk, webhook_id)
        with self.database.write() as conn:
            self.store.delete(conn, webhook.id)

    def deliveries(
        self, account_pk: int, webhook_id: str, count: int, offset: int
    ) -> tuple[WebhookRow, list[DeliveryRow], int]:
        webhook = self.get(account_pk, webhook_id)
        with self.database.read() as conn:
            rows, total = self.store.list_deliveries(conn, webhook.id, count, offset)
        return webhook, rows, total

    def redeliver(self, account_pk: int, webhook_id: str, delivery_id: str) -> DeliveryRow:
        """Queue a fresh round of attempts; the caller sends the DELIVER step."""
        webhook = self.get(account_pk, webhook_id)
        with self.database.write() as conn:
            delivery = self.store.get_delivery(conn, delivery_id)
            if delivery is None or delivery.webhook_id != webhook.id:
                raise problems.not_found()
            if not self.store.requeue(conn, delivery_id):
                raise problems.bad_request("This delivery is being sent right now.")
            fresh = self.store.get_delivery(conn, delivery_id)
        assert fresh is not None
        return fresh

    async def require_reachable(self, url: str) -> None:
        """Refuse a URL the policy forbids or that does not answer a GET with a 2xx.

        Awaited on the event loop: the check waits on someone else's server, under a total
        deadline, without holding one of the server's threads.
        """
        try:
            parse_webhook_url(url)
        except RefusedTarget as exc:
            raise problems.invalid_resource([FieldError("url", str(exc))], str(exc)) from None
        failure = await self.check_url(url)
        if failure:
            raise problems.invalid_resource([FieldError("url", failure)], failure)

    async def check_url(self, url: str) -> str | None:
        """None if `url` answers a GET with a 2xx, else why not (for a problem's detail)."""
        attempt = await send_async(
            self.outbound, "GET", url, self.policy, timeout=self.timeout_seconds
        )
        if attempt.ok:
            return None
        if attempt.error:
            return f"The webhook URL could not be validated: {attempt.error}"
        return (
            "The webhook URL must answer a GET request with a 2xx status; "
            f"it answered {attempt.status_code}."
        )

    # --- deliveries ----------------------------------------------------------------------

    def deliver(self, delivery_id: str) -> list[FollowUp]:
        """The DELIVER step: one attempt if the delivery is due and its account has room."""
        return self.run_delivery(delivery_id).follow_ups

    def run_delivery(self, delivery_id: str) -> DeliveryReport:
        held = self._take(delivery_id)
        if isinstance(held, DeliveryReport):
            return held
        delivery, webhook = held
        now = self.store.clock.now()
        batch = CompletedBatch.from_json(orjson.loads(delivery.delivery.payload))
        fired_at = datetime.fromtimestamp(now, UTC)
        body = encode_form(form_fields(batch, self._download_url(batch, now), fired_at))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            SIGNATURE_HEADER: sign(webhook.secret.encode(), body, int(now)),
            DELIVERY_ID_HEADER: delivery.delivery.id,
            ATTEMPT_HEADER: str(delivery.delivery.attempts),
        }
        attempt = send(
            self.outbound,
            "POST",
            webhook.url,
            self.policy,
            content=body,
            headers=headers,
            timeout=self.timeout_seconds,
        )
        return self._record(delivery, attempt)

    def _take(self, delivery_id: str) -> tuple[HeldDelivery, WebhookRow] | DeliveryReport:
        """Claim the delivery for one attempt, or the report of why not."""
        store = self.store
        max_attempts = self.retry.max_attempts
        with self.database.write() as conn:
            delivery = store.get_delivery(conn, delivery_id)
            if delivery is None or not store.is_due(delivery):
                return DeliveryReport(DeliveryOutcome.NOTHING_TO_DO)
            webhook = store.for_delivery(conn, delivery.webhook_id)
            if webhook is None or not webhook.enabled:
                store.cancel(conn, delivery_id)
                return DeliveryReport(DeliveryOutcome.CANCELLED)
            if store.give_up(conn, delivery, max_attempts):
                log.warning(
                    "webhook delivery %s failed: its last attempt (%d) never finished",
                    delivery_id, delivery.attempts,
                )  # fmt: skip
                return DeliveryReport(DeliveryOutcome.FAILED)
            store.lock_account(conn, delivery.account_pk)
            if store.in_flight(conn, delivery.account_pk) >= self.account_concurrency:
                # Left queued and due, not counted: a sender of this account hands its place
                # on when it finishes, and the sweep finds whatever is left.
                return DeliveryReport(DeliveryOutcome.DEFERRED)
            held = store.claim(
                conn, delivery, lease_seconds=self.lease_seconds, max_attempts=max_attempts
            )
        if held is None:
            return DeliveryReport(DeliveryOutcome.NOTHING_TO_DO)
        return held, webhook

    def _record(self, held: HeldDelivery, attempt: Attempt) -> DeliveryReport:
        delivery = held.delivery
        delay = None if attempt.ok else self.retry.delay_after(delivery.attempts)
        if attempt.ok:
            state, outcome = DeliveryState.DELIVERED, DeliveryOutcome.DELIVERED
        elif delay is None:
            state, outcome = DeliveryState.FAILED, DeliveryOutcome.FAILED
        else:
            state, outcome = DeliveryState.QUEUED, DeliveryOutcome.RETRYING
        next_at = self.store.clock.now() + (delay or 0.0)
        with self.database.write() as conn:
            recorded = self.store.record_attempt(
                conn,
                held,
                state=state,
                status_code=attempt.status_code,
                error=attempt.error,
                duration_ms=attempt.duration_ms,
                next_attempt_ts=next_at,
            )
            # This attempt's place is free: the account's next waiting delivery may have it.
            room = self.account_concurrency - self.store.in_flight(conn, delivery.account_pk)
            waiting = self.store.waiting(conn, delivery.account_pk, room)
        follow_ups = [FollowUp(Step.DELIVER, waiting_id) for waiting_id in waiting]
        if not recorded:
            log.warning(
                "webhook delivery %s: attempt %d outlived its lease and another sender took "
                "the delivery over; its outcome (%s) is not recorded",
                delivery.id, delivery.attempts, attempt.error or attempt.status_code,
            )  # fmt: skip
            return DeliveryReport(DeliveryOutcome.LEASE_LOST, follow_ups, attempt)
        if state is DeliveryState.QUEUED:
            log.info(
                "webhook delivery %s failed (attempt %d: %s); next in %.1fs",
                delivery.id, delivery.attempts, attempt.error or attempt.status_code, delay,
            )  # fmt: skip
            follow_ups.append(FollowUp(Step.DELIVER, delivery.id, delay_seconds=delay or 0.0))
        elif state is DeliveryState.FAILED:
            log.warning(
                "webhook delivery %s failed after %d attempts", delivery.id, delivery.attempts
            )
        return DeliveryReport(outcome, follow_ups, attempt)

    def _download_url(self, batch: CompletedBatch, now: float) -> str:
        self_link = next((link for link in batch.links if link.get("rel") == "self"), None)
        if self_link is None:
            return ""
        base = self_link["href"].rsplit("/3.0/", 1)[0]
        return build_download_url(base, self.download_secret, batch.id, now, self.url_ttl_seconds)

    def sweep(self, *, idle_seconds: float) -> list[FollowUp]:
        with self.database.read() as conn:
            overdue = self.store.overdue(conn, idle_seconds, per_account=self.account_concurrency)
        return [FollowUp(Step.DELIVER, delivery_id) for delivery_id in overdue]
