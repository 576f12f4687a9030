"""The account a request or a batch acts for."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Account:
    pk: int
    account_id: str
    account_name: str
    email: str
    dc: str
    created_at: str
