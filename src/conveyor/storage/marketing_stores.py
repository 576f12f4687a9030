"""The stores the Marketing API handlers use, built once around one clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from conveyor.domain.clock import Clock
from conveyor.storage.lists import ListStore
from conveyor.storage.members import MemberStore
from conveyor.storage.merge_fields import MergeFieldStore


@dataclass
class MarketingStores:
    clock: Clock
    lists: ListStore = field(init=False)
    members: MemberStore = field(init=False)
    merge_fields: MergeFieldStore = field(init=False)

    def __post_init__(self) -> None:
        self.lists = ListStore(self.clock)
        self.members = MemberStore(self.clock)
        self.merge_fields = MergeFieldStore()
