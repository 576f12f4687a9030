"""Where a sync remembers how far it got: a JSON file, or a table in the source database.

The state holds the watermark of the last chunk written back, and the chunk in flight: its
bounds, the idempotency key (saved before the submit) and the batch id (saved after it), and
how many of its rows were written back. With a table in the source database, the write-back
and the state move in the same transaction.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from conveyor.client.dbsync.errors import SyncError

STATE_VERSION = 1


@dataclass
class ChunkState:
    seq: int
    start: list[Any] | None
    end: list[Any]
    rows: int
    idempotency_key: str
    batch_id: str | None = None
    tags_idempotency_key: str | None = None
    tags_batch_id: str | None = None
    written: int = 0


@dataclass
class SyncState:
    sync_id: str
    watermark: list[Any] | None = None
    chunk: ChunkState | None = None
    next_seq: int = 1
    chunks_done: int = 0
    version: int = STATE_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> SyncState:
        data = orjson.loads(raw)
        chunk = data.get("chunk")
        return cls(
            sync_id=str(data["sync_id"]),
            watermark=data.get("watermark"),
            chunk=ChunkState(**chunk) if chunk else None,
            next_seq=int(data.get("next_seq", 1)),
            chunks_done=int(data.get("chunks_done", 0)),
            version=int(data.get("version", STATE_VERSION)),
            extra=dict(data.get("extra") or {}),
        )


class StateStore(Protocol):
    """Loads and saves one sync's state; ``conn`` is the source transaction, if shared."""

    shares_source_transaction: bool

    def describe(self) -> str: ...

    def load(self, sync_id: str) -> SyncState | None: ...

    def save(self, state: SyncState, conn: Connection | None = None) -> None: ...


class MemoryState:
    """No state kept across runs: every run is a full sync."""

    shares_source_transaction = False

    def describe(self) -> str:
        return "none"

    def load(self, sync_id: str) -> SyncState | None:
        return None

    def save(self, state: SyncState, conn: Connection | None = None) -> None:
        pass


class FileState:
    """The state as a JSON file, replaced atomically (a crash leaves the old or the new one)."""

    shares_source_transaction = False

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return str(self.path)

    def load(self, sync_id: str) -> SyncState | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            state = SyncState.from_json(raw)
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise SyncError(f"the state file {self.path} is not a sync state: {exc}") from None
        if state.sync_id != sync_id:
            raise SyncError(
                f"the state file {self.path} belongs to another sync (another query, list, "
                "key or since-column, or another server); give this sync a --state of its own"
            )
        return state

    def save(self, state: SyncState, conn: Connection | None = None) -> None:
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(state.to_json())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        # The rename is durable only once the folder's entry is.
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class TableState:
    """The state in a table of the source database, one row per sync (created if missing)."""

    shares_source_transaction = True

    def __init__(self, engine: Engine, name: str) -> None:
        schema, _, table_name = name.rpartition(".")
        self.engine = engine
        self.name = name
        self.table = sa.Table(
            table_name,
            sa.MetaData(),
            sa.Column("sync_id", sa.String(64), primary_key=True),
            sa.Column("state", sa.Text, nullable=False),
            schema=schema or None,
        )
        try:
            self.table.create(engine, checkfirst=True)
        except sa.exc.DBAPIError as exc:
            raise SyncError(f"cannot create the state table {name}: {exc.orig}") from None

    def describe(self) -> str:
        return f"table {self.name}"

    def load(self, sync_id: str) -> SyncState | None:
        query = sa.select(self.table.c.state).where(self.table.c.sync_id == sync_id)
        with self.engine.connect() as conn:
            raw = conn.execute(query).scalar_one_or_none()
        return None if raw is None else SyncState.from_json(raw)

    def save(self, state: SyncState, conn: Connection | None = None) -> None:
        if conn is None:
            with self.engine.begin() as own:
                self._save(own, state)
        else:
            self._save(conn, state)

    def _save(self, conn: Connection, state: SyncState) -> None:
        raw = state.to_json().decode()
        updated = conn.execute(
            self.table.update().where(self.table.c.sync_id == state.sync_id).values(state=raw)
        )
        if updated.rowcount == 0:
            conn.execute(self.table.insert().values(sync_id=state.sync_id, state=raw))
