"""Seams around the engine's work, for the parts that watch or steer it from outside.

The emulator's test controls (faults inside batches, the request journal, pacing) and the
metrics read what the engine did through these hooks instead of reaching into the executor.
The engine calls `after_commit` only once a group's transaction has committed, so an observer
never counts work a crash or a lost claim took back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from conveyor.domain.accounts import Account


class RanOperation(NamedTuple):
    """One operation of a committed group, as submitted, with the status it got. A named
    tuple: made for every operation run, at half the cost of a frozen dataclass."""

    seq: int
    operation_id: str | None
    method: str
    path: str
    params: Mapping[str, str]
    body: str | None
    status_code: int


@dataclass(frozen=True, slots=True)
class Intercepted:
    """An answer given in place of running an operation (a fault rule of the emulator)."""

    status_code: int
    response: str


class GroupHooks(Protocol):
    def intercepts(self, account: Account) -> bool:
        """True when `before_operation` must see every operation of this account's batches.

        The executor then runs them one at a time, each inside its savepoint.
        """
        ...

    def before_operation(
        self, account: Account, batch_id: str, method: str, path: str
    ) -> Intercepted | None: ...

    def before_start(self, batch_id: str) -> None:
        """Called as a batch leaves `pending`, before its operations are planned."""
        ...

    def after_commit(
        self, account: Account, batch_id: str, ran: Sequence[RanOperation]
    ) -> None: ...


class NoHooks:
    """The default: nothing watches, nothing intercepts."""

    def intercepts(self, account: Account) -> bool:
        return False

    def before_operation(
        self, account: Account, batch_id: str, method: str, path: str
    ) -> Intercepted | None:
        return None

    def before_start(self, batch_id: str) -> None:
        return None

    def after_commit(self, account: Account, batch_id: str, ran: Sequence[RanOperation]) -> None:
        return None


@dataclass
class HookChain:
    """Several hooks as one: the first interception wins, every observer sees every group."""

    hooks: list[GroupHooks] = field(default_factory=list)

    def intercepts(self, account: Account) -> bool:
        return any(hook.intercepts(account) for hook in self.hooks)

    def before_operation(
        self, account: Account, batch_id: str, method: str, path: str
    ) -> Intercepted | None:
        for hook in self.hooks:
            answer = hook.before_operation(account, batch_id, method, path)
            if answer is not None:
                return answer
        return None

    def before_start(self, batch_id: str) -> None:
        for hook in self.hooks:
            hook.before_start(batch_id)

    def after_commit(self, account: Account, batch_id: str, ran: Sequence[RanOperation]) -> None:
        for hook in self.hooks:
            hook.after_commit(account, batch_id, ran)
