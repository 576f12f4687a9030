"""What the dashboard reads from storage, always within the signed-in account."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.batches.results_view import results_dropped
from conveyor.batches.service import BatchService
from conveyor.domain import problems
from conveyor.domain.accounts import Account
from conveyor.domain.clock import Clock
from conveyor.domain.ids import subscriber_hash
from conveyor.http.dashboard.views import (
    AudienceSummary,
    BatchSummary,
    Failure,
    FoundMember,
    Page,
    batch_summary,
    failure,
    found_member,
    utc_now,
)
from conveyor.storage.accounts import AccountStore
from conveyor.storage.batch_results import BatchResultStore
from conveyor.storage.database import Database
from conveyor.storage.lists import ListQuery, MemberStats
from conveyor.storage.marketing_stores import MarketingStores


@dataclass
class DashboardReads:
    database: Database
    clock: Clock
    accounts: AccountStore
    batches: BatchService
    results: BatchResultStore
    marketing: MarketingStores

    def account(self, key_hash: str) -> Account | None:
        """The account of a session's key, or None once that key is revoked."""
        with self.database.read() as conn:
            return self.accounts.account_for_key_hash(conn, key_hash)

    def batch_page(
        self, account: Account, count: int, offset: int
    ) -> tuple[list[BatchSummary], Page]:
        rows, total = self.batches.list_recent(account, count, offset)
        now = utc_now(self.clock)
        return [batch_summary(row, now) for row in rows], Page(offset, count, total)

    def batch(self, account: Account, batch_id: str) -> BatchSummary:
        """The account's batch; a 404 problem for any other (another account's included)."""
        return batch_summary(self.batches.get(account, batch_id), utc_now(self.clock))

    def failures(
        self, account: Account, batch_id: str, text: str, count: int, offset: int
    ) -> tuple[list[Failure], Page]:
        """A page of the batch's failed operations, those matching `text` when it is given."""
        with self.database.snapshot() as conn:
            batch = self.batches.store.get(conn, batch_id, account.pk)
            if batch is None:
                raise problems.not_found()
            if not batch.rows_kept:
                raise results_dropped(batch.id)
            if text:
                rows, total = self.results.failures_matching(conn, batch.id, text, count, offset)
            else:
                # Counted as the batch counts them: no scan of the failures for a total.
                rows = self.results.results_page(conn, batch.id, True, count, offset)
                total = batch.errored_operations
        return [failure(row) for row in rows], Page(offset, count, total)

    def audiences(
        self, account: Account, count: int, offset: int
    ) -> tuple[list[AudienceSummary], Page]:
        lists = self.marketing.lists
        with self.database.read() as conn:
            rows, total = lists.page(conn, account.pk, count, offset)
            stats = lists.member_stats(conn, [row.pk for row in rows])
        summaries = [
            AudienceSummary(
                row.list_id, row.name, dict(stats[row.pk].counts) if row.pk in stats else {}
            )
            for row in rows
        ]
        return summaries, Page(offset, count, total)

    def find_member(self, account: Account, email: str) -> list[FoundMember]:
        """The address's member in each of the account's lists that holds it."""
        digest = subscriber_hash(email)
        lists, members = self.marketing.lists, self.marketing.members
        found: list[FoundMember] = []
        with self.database.read() as conn:
            holding, _ = lists.page(conn, account.pk, 1000, 0, ListQuery(member_hash=digest))
            for row in holding:
                member = members.find(conn, row.pk, digest, may_be_contact=False)
                if member is not None:
                    found.append(
                        found_member(
                            row.list_id,
                            row.name,
                            member.email_address,
                            member.status,
                            member.data,
                            member.last_changed,
                        )
                    )
        return found


def _counts(stats: MemberStats | None) -> dict[str, int]:
    return dict(stats.counts) if stats is not None else {}
