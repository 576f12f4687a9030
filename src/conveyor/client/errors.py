"""Typed errors of the client; every one derives from :class:`ConveyorError`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.client.models import Batch


class ConveyorError(Exception):
    """Base of every error the client raises."""


class ConfigurationError(ConveyorError, ValueError):
    """The client cannot be set up: no key, a key without a datacenter, a bad URL."""


class ExtensionUnavailable(ConfigurationError):
    """A Conveyor extension (README, "Beyond Mailchimp") was asked of Mailchimp, which has
    none of them; nothing was sent."""


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class ConveyorApiError(ConveyorError):
    """The API answered with an error; carries the problem document's fields.

    Mailchimp and Conveyor answer ``application/problem+json``. Anything else (an S3 XML error
    on a download, a proxy's HTML page) still becomes this error, with the HTTP reason as title
    and the start of the body as detail, so callers handle one type.
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        type: str = "",
        instance: str = "",
        errors: tuple[FieldError, ...] = (),
        document: Mapping[str, Any] | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.instance = instance
        self.errors = errors
        self.document: dict[str, Any] = dict(document or {})
        self.method = method
        self.url = url
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """``Title: detail`` plus any field errors, for people (the CLI prints exactly this)."""
        return problem_text(self.title, self.detail, self.errors)

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


def problem_text(title: str, detail: str, errors: Iterable[FieldError] = ()) -> str:
    """``Title: detail (field: message; …)`` on one line, each piece of text shown once.

    Servers often repeat the one field error as the detail (``url: … is not allowed`` both
    ways); printing both showed the same sentence twice.
    """
    text = f"{title}: {detail}" if title and detail else title or detail
    extra = [
        f"{e.field}: {e.message}" if e.field else e.message
        for e in errors
        if e.message and e.message.strip() != detail.strip()
    ]
    if extra:
        text += " (" + "; ".join(extra) + ")"
    return text


class InvalidOperation(ConveyorError, ValueError):
    """An operation given to ``submit`` lacks what every operation needs; nothing was sent."""


class ConveyorConnectionError(ConveyorError):
    """The server could not be reached (or kept failing) after the allowed retries."""


class BatchNotFinished(ConveyorError):
    """Results were asked for a batch that is not ``finished`` yet."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        super().__init__(
            f"batch {batch.id} is {batch.status} "
            f"({batch.finished_operations}/{batch.total_operations} operations); "
            "wait for it to finish first"
        )


class WaitTimeout(ConveyorError):
    """``wait`` reached its deadline; ``batch`` is the last status seen."""

    def __init__(self, batch: Batch, timeout: float) -> None:
        self.batch = batch
        self.timeout = timeout
        super().__init__(
            f"batch {batch.id} is still {batch.status} after {timeout:g} s "
            f"({batch.finished_operations}/{batch.total_operations} operations)"
        )


class ArchiveError(ConveyorError):
    """The results archive could not be downloaded whole or could not be read."""
