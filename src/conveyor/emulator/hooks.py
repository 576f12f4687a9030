"""The emulator's hook on the engine: batch faults, the journal of batch operations, pace.

Batch operations are journaled (and matched by fault rules) at `/3.0` + their path, so one
glob such as `/3.0/lists/*/members` finds a member added either way.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import orjson

from conveyor.batches.group_hooks import Intercepted, RanOperation
from conveyor.domain.accounts import Account
from conveyor.domain.clock import Clock
from conveyor.emulator.faults import FaultBook
from conveyor.emulator.journal import Journal, decoded_body
from conveyor.emulator.pace import Pace

API_PREFIX = "/3.0"


def api_path(operation_path: str) -> tuple[str, dict[str, str]]:
    """A batch operation's path as the API root sees it, and the query it carries."""
    parts = urlsplit(operation_path)
    path = parts.path if parts.path.startswith("/") else "/" + parts.path
    return API_PREFIX + path, dict(parse_qsl(parts.query, keep_blank_values=True))


@dataclass
class EmulatorHooks:
    journal: Journal
    faults: FaultBook
    pace: Pace
    clock: Clock
    # Delays asked by batch fault rules, paid after the group commits (never inside it).
    _owed: threading.local = field(default_factory=threading.local)

    def intercepts(self, account: Account) -> bool:
        return self.faults.any_for("batch", account.pk)

    def before_operation(
        self, account: Account, batch_id: str, method: str, path: str
    ) -> Intercepted | None:
        firing = self.faults.fire("batch", account.pk, method, api_path(path)[0])
        if firing is None:
            return None
        self._owed.seconds = getattr(self._owed, "seconds", 0.0) + firing.delay_seconds
        if firing.problem is None:
            return None
        document = firing.problem.to_document(str(uuid.uuid4()))
        return Intercepted(firing.problem.status, orjson.dumps(document).decode())

    def before_start(self, batch_id: str) -> None:
        self.pace.before_batch()

    def after_commit(self, account: Account, batch_id: str, ran: Sequence[RanOperation]) -> None:
        at = self.clock.now()
        for op in ran:
            path, path_query = api_path(op.path)
            self.journal.record(
                method=op.method,
                path=path,
                query={**path_query, **op.params},
                body=decoded_body(op.body),
                status=op.status_code,
                at=at,
                batch_id=batch_id,
                operation_id=op.operation_id,
                account_pk=account.pk,
            )
        owed = getattr(self._owed, "seconds", 0.0)
        self._owed.seconds = 0.0
        self.pace.pause(owed)
        self.pace.after_operations(len(ran), 0.0)
