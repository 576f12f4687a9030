"""Fault rules: answer a matching request (or batch operation) with Mailchimp's own problem
document for a status, or delay it, `times` times or with a `probability`.

A client's retry and back-off code is exercised against the answers the real service gives:
429 carries the real TooManyRequests detail, 500 the real InternalServerError one.
"""

from __future__ import annotations

import random
import threading
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from conveyor.domain import problems
from conveyor.domain.problems import FieldError, Problem
from conveyor.emulator.globs import compile_glob, matches

Where = Literal["http", "batch", "both"]


class FaultSpec(BaseModel):
    """A rule as POSTed to /_conveyor/faults."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    method: str | None = None
    path: str | None = None
    status: int | None = Field(default=None, ge=400, le=599)
    times: int | None = Field(default=None, ge=1)
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    delay_ms: int = Field(default=0, ge=0, le=600_000)
    where: Where = Field(default="http", alias="in")
    # Only this account's requests (resolved by the caller); absent: every account's.
    api_key: str | None = None

    @model_validator(mode="after")
    def _does_something(self) -> FaultSpec:
        if self.status is None and self.delay_ms == 0:
            raise ValueError("a rule needs a status to answer, or a delay_ms, or both")
        if self.path is not None:
            compile_glob(self.path)
        return self


def parse_fault(document: dict[str, Any]) -> FaultSpec:
    """The rule in `document`, or the Invalid Resource problem listing every bad field."""
    try:
        return FaultSpec.model_validate(document)
    except ValidationError as exc:
        errors = [
            FieldError(
                ".".join(str(p) for p in error["loc"]), error["msg"].removeprefix("Value error, ")
            )
            for error in exc.errors(include_url=False)
        ]
        raise problems.invalid_resource(errors) from None


def fault_problem(status: int) -> Problem:
    """Mailchimp's problem for `status`: its own wording where the service has one."""
    if status == 429:
        return problems.too_many_requests(
            "You have exceeded the limit of 10 simultaneous connections."
        )
    if status == 500:
        return problems.internal_error()
    if status == 503:
        # Mailchimp's edge answers 503 when it sheds load; this is the problem-document form.
        return Problem(
            503,
            "Service Unavailable",
            "The service is temporarily unavailable. Please try again later.",
        )
    for code, title, detail in problems.TRIGGERED_ERRORS.values():
        if code == status:
            return Problem(code, title, detail)
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return Problem(status, phrase, f"A fault rule of the emulator answered {status}.")


@dataclass
class FaultRule:
    id: str
    spec: FaultSpec
    account_pk: int | None
    fired: int = 0

    @property
    def exhausted(self) -> bool:
        return self.spec.times is not None and self.fired >= self.spec.times

    def applies(
        self, where: Literal["http", "batch"], account_pk: int | None, method: str, path: str
    ) -> bool:
        spec = self.spec
        return (
            spec.where in (where, "both")
            and (self.account_pk is None or self.account_pk == account_pk)
            and (spec.method is None or spec.method.upper() == method.upper())
            and matches(spec.path, path)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.spec.method,
            "path": self.spec.path,
            "status": self.spec.status,
            "times": self.spec.times,
            "probability": self.spec.probability,
            "delay_ms": self.spec.delay_ms,
            "in": self.spec.where,
            "fired": self.fired,
        }


@dataclass(frozen=True)
class Firing:
    """What a rule that fired asks for: a pause, then an answer (or the real one)."""

    rule_id: str
    delay_seconds: float
    problem: Problem | None


@dataclass
class FaultBook:
    random: random.Random = field(default_factory=random.Random)
    _rules: list[FaultRule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, spec: FaultSpec, account_pk: int | None) -> FaultRule:
        rule = FaultRule(uuid.uuid4().hex[:12], spec, account_pk)
        with self._lock:
            self._rules.append(rule)
        return rule

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def clear(self, account_pk: int | None = None) -> None:
        with self._lock:
            if account_pk is None:
                self._rules.clear()
            else:
                self._rules = [r for r in self._rules if r.account_pk != account_pk]

    def has_account_rules(self) -> bool:
        return any(rule.account_pk is not None for rule in self._rules)

    def any_for(self, where: Literal["http", "batch"], account_pk: int | None) -> bool:
        """Cheap check before matching: is there a live rule that could apply?"""
        rules = self._rules
        return any(
            r.spec.where in (where, "both")
            and (r.account_pk is None or r.account_pk == account_pk)
            and not r.exhausted
            for r in rules
        )

    def fire(
        self, where: Literal["http", "batch"], account_pk: int | None, method: str, path: str
    ) -> Firing | None:
        """The first live rule that matches and wins its probability roll, counted as fired."""
        with self._lock:
            for rule in self._rules:
                if rule.exhausted or not rule.applies(where, account_pk, method, path):
                    continue
                if rule.spec.probability < 1.0 and self.random.random() >= rule.spec.probability:
                    continue
                rule.fired += 1
                status = rule.spec.status
                return Firing(
                    rule.id,
                    rule.spec.delay_ms / 1000,
                    fault_problem(status) if status is not None else None,
                )
        return None
