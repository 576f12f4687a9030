"""Alembic environment: runs against the engine handed over by `conveyor.storage.migrate`."""

from __future__ import annotations

from alembic import context

from conveyor.storage.tables import metadata

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    is_postgres = connection.dialect.name == "postgresql"
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        if is_postgres:
            # Several processes may start at once: one migrates, the others wait here.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7290011)")
        context.run_migrations()
