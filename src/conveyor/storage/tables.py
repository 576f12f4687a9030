"""SQLAlchemy Core tables. Every row of account data carries `account_id`."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    literal_column,
    or_,
    true,
)

# Identity columns must be INTEGER on SQLite to alias ROWID (autoincrement) and BIGINT elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

accounts_table = Table(
    "accounts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("account_id", String(32), nullable=False, unique=True),
    Column("account_name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("created_at", String(32), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("account_pk", BigId, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("key_hint", String(16), nullable=False),
    Column("dc", String(16), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("revoked_at", String(32), nullable=True),
)

lists = Table(
    "lists",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("account_pk", BigId, ForeignKey("accounts.id"), nullable=False),
    Column("list_id", String(16), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    Column("data", JSON, nullable=False),
    Column("date_created", String(32), nullable=False),
    Column("next_merge_id", Integer, nullable=False, default=1),
    Index("ix_lists_account", "account_pk", "pk"),
)

members = Table(
    "members",
    metadata,
    # The primary key doubles as `web_id`: a unique integer, so unique per account too.
    Column("web_id", BigId, primary_key=True, autoincrement=True),
    Column("account_pk", BigId, nullable=False),
    Column("list_pk", BigId, ForeignKey("lists.pk", ondelete="CASCADE"), nullable=False),
    Column("subscriber_hash", String(32), nullable=False),
    Column("email_address", String(320), nullable=False),
    Column("unique_email_id", String(16), nullable=False),
    Column("contact_id", String(32), nullable=False),
    # "forgotten" marks an address erased by delete-permanent: hidden, never re-importable.
    Column("status", String(16), nullable=False),
    Column("data", JSON, nullable=False),
    Column("last_changed", String(32), nullable=False),
    UniqueConstraint("list_pk", "subscriber_hash", name="uq_members_list_hash"),
    # The only index that leads with list_pk is the unique one: on a fresh PostgreSQL table
    # (no statistics yet) the planner otherwise picked a list_pk-leading index for the
    # member lookup and read the whole list for every operation.
    Index("ix_members_status_list", "status", "list_pk", "web_id"),
    Index("ix_members_contact", "contact_id", "list_pk"),
    Index("ix_members_account_status", "account_pk", "status"),
)

tags = Table(
    "tags",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("list_pk", BigId, ForeignKey("lists.pk", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    UniqueConstraint("list_pk", "name", name="uq_tags_list_name"),
)

merge_fields = Table(
    "merge_fields",
    metadata,
    Column("list_pk", BigId, ForeignKey("lists.pk", ondelete="CASCADE"), primary_key=True),
    Column("merge_id", Integer, primary_key=True),
    Column("tag", String(10), nullable=False),
    Column("data", JSON, nullable=False),
    UniqueConstraint("list_pk", "tag", name="uq_merge_fields_list_tag"),
)

server_state = Table(
    "server_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

__all__ = [
    "accounts_table",
    "api_keys",
    "batch_chunks",
    "batch_operations",
    "batch_results",
    "batches",
    "idempotency_keys",
    "lists",
    "members",
    "merge_fields",
    "metadata",
    "server_state",
    "tags",
]


# --- Batches -------------------------------------------------------------------------------
# A batch row is written first with status "ingesting" and stays invisible until its whole
# body is stored; the operations, chunks and results hang off it by `batch_id`.

batches = Table(
    "batches",
    metadata,
    Column("id", String(10), primary_key=True),
    Column("account_pk", BigId, nullable=False),
    Column("status", String(16), nullable=False),
    Column("total_operations", BigInteger, nullable=False, default=0),
    Column("finished_operations", BigInteger, nullable=False, default=0),
    Column("errored_operations", BigInteger, nullable=False, default=0),
    Column("submitted_at", String(32), nullable=False),
    Column("submitted_ts", Float, nullable=False),
    Column("completed_at", String(32), nullable=False, default=""),
    Column("updated_ts", Float, nullable=False),
    Column("api_root", String(500), nullable=False),
    Column("archive_key", String(200), nullable=True),
    # True from the moment a batch finishes until its operation and result rows (no longer
    # needed once the archive holds them) are dropped: a crash in between leaves a marker
    # that the sweep finds by index, instead of rows nothing points to.
    Column("rows_pending", Boolean, nullable=False, server_default=false()),
    # Set by a cancel (ISO time, as `completed_at`): what had not run never will.
    Column("canceled_at", String(32), nullable=True),
    # The batch whose failed operations this one retries.
    Column("retry_of", String(10), nullable=True),
    # False only for batches that finished before result rows were kept until the batch
    # goes (migration 0007): their rows were dropped once the archive held them.
    Column("rows_kept", Boolean, nullable=False, server_default=true()),
    Index("ix_batches_account_status", "account_pk", "status"),
    Index("ix_batches_rows_pending", "rows_pending", "updated_ts"),
    Index("ix_batches_status_updated", "status", "updated_ts"),
    Index("ix_batches_submitted", "submitted_ts"),
)

batch_operations = Table(
    "batch_operations",
    metadata,
    Column("batch_id", String(10), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("method", String(8), nullable=False),
    Column("path", Text, nullable=False),
    Column("params", Text, nullable=True),
    Column("body", Text, nullable=True),
    Column("operation_id", Text, nullable=True),
)

# The operations view's `operation_id=` filter on a million-operation batch. On a prefix: an
# operation id may be megabytes long, and a PostgreSQL index row holds at most 8 KiB. The
# numbers are literals so that a query repeating the expression matches it (SQLite compares
# an expression index with the query's expression term for term).
OPERATION_ID_PREFIX = func.substr(
    batch_operations.c.operation_id, literal_column("1"), literal_column("200")
)
Index(
    "ix_batch_operations_operation_id",
    batch_operations.c.batch_id,
    OPERATION_ID_PREFIX,
    batch_operations.c.seq,
)

# A chunk is the unit of claimable work: a range of operations with a lease. `next_seq`
# advances in the same transaction as the results of each group, so a chunk taken over
# after a crash resumes exactly where the last commit left it.
batch_chunks = Table(
    "batch_chunks",
    metadata,
    Column("batch_id", String(10), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("start_seq", Integer, nullable=False),
    Column("stop_seq", Integer, nullable=False),
    Column("next_seq", Integer, nullable=False),
    Column("state", String(10), nullable=False),
    Column("lease_token", String(32), nullable=True),
    Column("lease_until", Float, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),
    Index("ix_batch_chunks_state", "state", "lease_until"),
)

batch_results = Table(
    "batch_results",
    metadata,
    Column("batch_id", String(10), primary_key=True),
    Column("seq", Integer, primary_key=True),
    # A GET without `count` pages through a collection: one result per page.
    Column("page", Integer, primary_key=True),
    Column("status_code", Integer, nullable=False),
    Column("operation_id", Text, nullable=True),
    Column("response", Text, nullable=False),
)

# What an operation counts as failed (not 2xx), written with literals: SQLite uses a partial
# index only for a query that repeats its condition term for term, and a bound parameter
# never matches a literal.
RESULT_FAILED = or_(
    batch_results.c.status_code < literal_column("200"),
    batch_results.c.status_code > literal_column("299"),
)
# Failures are few and are what clients ask for (`status=failed`, retry): a partial index
# finds them in a million results without making every result row's insert dearer.
Index(
    "ix_batch_results_failed",
    batch_results.c.batch_id,
    batch_results.c.seq,
    batch_results.c.page,
    sqlite_where=RESULT_FAILED,
    postgresql_where=RESULT_FAILED,
)

# Idempotency keys of batch submissions, per account, for 24 hours (domain.idempotency). The
# row is written in the transaction that publishes the batch, so a key never names a batch
# that is not whole; the primary key makes two concurrent submits under one key publish one.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("account_pk", BigId, primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("body_sha256", String(64), nullable=False),
    Column("batch_id", String(10), nullable=False),
    Column("created_ts", Float, nullable=False),
    Index("ix_idempotency_keys_created", "created_ts"),
    Index("ix_idempotency_keys_batch", "batch_id"),
)


# --- Batch webhooks ------------------------------------------------------------------------

batch_webhooks = Table(
    "batch_webhooks",
    metadata,
    Column("id", String(10), primary_key=True),
    Column("account_pk", BigId, nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("secret", String(64), nullable=False),
    Column("created_ts", Float, nullable=False),
)

# The outbox: written in the transaction that finishes a batch, one row per enabled webhook,
# so a delivery can be late but never lost. `payload` snapshots the batch at completion.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("webhook_id", String(10), nullable=False, index=True),
    Column("account_pk", BigId, nullable=False),
    Column("batch_id", String(10), nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_ts", Float, nullable=False),
    Column("lease_until", Float, nullable=False, default=0),
    # The sender holding the lease; only it may record the attempt (and an attempt is counted
    # when it is claimed, so `attempts` never passes the maximum, whoever crashes).
    Column("lease_token", String(32), nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    # JSON list of attempts: {at, status_code, error, duration_ms}. Bounded by max attempts.
    Column("history", Text, nullable=False, default="[]"),
    Column("created_ts", Float, nullable=False),
    Column("updated_ts", Float, nullable=False),
    Column("delivered_ts", Float, nullable=True),
    Index("ix_webhook_deliveries_due", "state", "next_attempt_ts"),
    Index("ix_webhook_deliveries_account_state", "account_pk", "state"),
)


# Connection slots held by requests in flight, for the per-account limit across processes.
# A slot expires on its own, so a process killed mid-request cannot leak it for long.
request_slots = Table(
    "request_slots",
    metadata,
    Column("token", String(32), primary_key=True),
    Column("account_pk", BigId, nullable=False),
    Column("expires_ts", Float, nullable=False),
    Index("ix_request_slots_account", "account_pk", "expires_ts"),
)
