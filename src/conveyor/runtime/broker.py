"""Dramatiq brokers: in-process by default, Redis or RabbitMQ when scaled out."""

from __future__ import annotations

from collections.abc import Callable

from dramatiq import Broker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

QUEUE = "conveyor"
WEBHOOK_QUEUE = "conveyor-webhooks"


def _middleware() -> list[Middleware]:
    return [AgeLimit(), TimeLimit(), ShutdownNotifications(), Callbacks(), Pipelines(), Retries()]


def create_broker(broker_url: str | None) -> Broker:
    if not broker_url:
        return StubBroker(middleware=_middleware())
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        from dramatiq.brokers.redis import RedisBroker

        # Dramatiq's defaults leave a killed worker's messages stranded for a long time
        # (docs/architecture.md, "Runtime facts"); these bring them back within seconds.
        return RedisBroker(  # type: ignore[no-untyped-call]
            url=broker_url,
            heartbeat_timeout=30_000,
            maintenance_chance=100_000,
            middleware=_middleware(),
        )
    if broker_url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=broker_url, middleware=_middleware())
    raise ValueError(f"unsupported broker URL (expected redis:// or amqp://): {broker_url}")


def broker_check(broker: Broker) -> Callable[[], None]:
    """A readiness check: raise unless the broker's server answers now."""
    from dramatiq.brokers.redis import RedisBroker

    if isinstance(broker, RedisBroker):
        return lambda: None if broker.client.ping() else _no_answer()
    if broker.__class__.__name__ == "RabbitmqBroker":
        import pika

        def connect() -> None:
            parameters = broker.parameters  # type: ignore[attr-defined]
            pika.BlockingConnection(parameters).close()

        return connect
    return lambda: None  # in-process: nothing to reach


def _no_answer() -> None:
    raise ConnectionError("the broker did not answer")
