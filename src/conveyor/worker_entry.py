"""Entry module for Dramatiq's own worker command (`conveyor worker` runs it).

Dramatiq's CLI imports a module and uses the broker it finds there; this is the one place
where a broker lives at module level, because the CLI (processes, threads, graceful
shutdown, the Prometheus exposition server) is built that way. Settings come from the
`CONVEYOR_*` environment that `conveyor worker` sets.
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware.prometheus import Prometheus

from conveyor.composition import open_services
from conveyor.observability.logs import configure_logging
from conveyor.runtime.actors import declare_actors
from conveyor.runtime.broker import create_broker
from conveyor.runtime.gc_tuning import tune_garbage_collector
from conveyor.settings import Settings

settings = Settings.from_env()
configure_logging(settings)  # Dramatiq's handlers, in CONVEYOR_LOG_FORMAT
services = open_services(settings, migrate=False)
broker = create_broker(settings.broker_url)
broker.add_middleware(Prometheus())
declare_actors(broker, services.engine, services.webhooks)
dramatiq.set_broker(broker)
tune_garbage_collector()
