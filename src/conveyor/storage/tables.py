"""SQLAlchemy Core tables. Every row of account data carries `account_id`."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
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
    Index("ix_members_list_status", "list_pk", "status", "web_id"),
    Index("ix_members_contact", "list_pk", "contact_id"),
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
    "lists",
    "members",
    "merge_fields",
    "metadata",
    "server_state",
    "tags",
]
