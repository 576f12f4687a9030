"""Dramatiq actors for the batch life cycle, bound to one broker and one engine.

Actors are declared on an explicit broker instead of through the module-level decorator, so
that tests and processes can hold several independent runtimes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import dramatiq
from dramatiq import Broker

from conveyor.batches.engine import BatchEngine
from conveyor.batches.webhooks import WebhookService
from conveyor.domain.steps import FollowUp, Step, plan_next
from conveyor.runtime.broker import QUEUE, WEBHOOK_QUEUE

log = logging.getLogger("conveyor.runtime")

# RabbitMQ closes a consumer's channel when a delivery stays unacknowledged past its
# `consumer_timeout` (30 minutes by default), requeueing everything unacknowledged on it. So a
# message is never processed for that long (a chunk takes seconds; Dramatiq's default limit is
# 10 minutes, raised for a slow database), nor parked that long (`domain.steps`).
TIME_LIMIT_MS = 20 * 60 * 1000


@dataclass
class Dispatcher:
    """Sends follow-up steps as broker messages carrying only the batch id."""

    broker: Broker
    actors: dict[Step, dramatiq.Actor[[str], None]] = field(default_factory=dict)

    def send(self, follow_ups: Iterable[FollowUp]) -> None:
        plan = plan_next(None, "", follow_ups)
        for later in plan.left_for_sweep:
            log.debug("%s %s is due later: the sweep sends it", later.step, later.target_id)
        for follow_up in plan.send:
            actor = self.actors[follow_up.step]
            if follow_up.delay_seconds > 0:
                delay_ms = int(follow_up.delay_seconds * 1000)
                actor.send_with_options(args=(follow_up.target_id,), delay=delay_ms)
            else:
                actor.send(follow_up.target_id)


def declare_actors(
    broker: Broker,
    engine: BatchEngine,
    webhooks: WebhookService,
    *,
    webhook_broker: Broker | None = None,
) -> Dispatcher:
    """The actors of every step on `broker`, deliveries on `webhook_broker` when one is
    given (the one-process runtime: a broker per worker, so each has its own threads)."""
    dispatcher = Dispatcher(broker)
    steps: dict[Step, tuple[Callable[[str], list[FollowUp]], str]] = {
        Step.PREPROCESS: (engine.preprocess, QUEUE),
        Step.WORK: (engine.work, QUEUE),
        Step.FINALIZE: (engine.finalize, QUEUE),
        Step.CLEANUP: (engine.cleanup, QUEUE),
        # Deliveries wait on other people's servers: their own queue and threads, so a slow
        # receiver never holds up batch work.
        Step.DELIVER: (webhooks.deliver, WEBHOOK_QUEUE),
    }
    runners = {step: run for step, (run, _queue) in steps.items()}
    for step, (_run, queue) in steps.items():
        dispatcher.actors[step] = dramatiq.Actor(
            _actor_body(step, runners, dispatcher),
            broker=webhook_broker if webhook_broker and step is Step.DELIVER else broker,
            actor_name=f"conveyor.batch.{step.value}",
            queue_name=queue,
            priority=0,
            options={"time_limit": TIME_LIMIT_MS, "max_retries": 10, "min_backoff": 500},
        )
    return dispatcher


def _actor_body(
    step: Step,
    runners: Mapping[Step, Callable[[str], list[FollowUp]]],
    dispatcher: Dispatcher,
) -> Callable[[str], None]:
    def body(target_id: str) -> None:
        current, follow_ups = step, runners[step](target_id)
        while True:
            plan = plan_next(current, target_id, follow_ups)
            # The rest first, so other workers start meanwhile.
            dispatcher.send([*plan.send, *plan.left_for_sweep])
            if plan.inline is None:
                return
            current, follow_ups = plan.inline.step, runners[plan.inline.step](target_id)

    body.__name__ = runners[step].__name__
    return body
