"""A CSV of members into upserts, and the batch's results back into one line per CSV row.

The results of a batch come back in any order and keyed only by ``operation_id``, so matching
them to rows needs a lookup table. It lives in a private on-disk SQLite database, not a dict:
an import of a million members then costs the same memory as one of a thousand.
"""

from __future__ import annotations

import csv
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from conveyor.client.models import BatchResult
from conveyor.client.operations import Operation, upsert_member

# Header names people use for the address, Mailchimp's own export ("Email Address") included.
EMAIL_HEADERS = ("email", "email_address", "email address", "e-mail", "emailaddress")
ID_HEADER = "id"
# Merge tags are upper case, at most ten characters: FNAME, LNAME, PHONE, MMERGE7.
_MERGE_TAG = re.compile(r"[A-Z][A-Z0-9_]{0,9}")
RESULT_COLUMNS = ("row", "operation_id", "email", "status_code", "web_id", "error")
NO_EMAIL = "no email address in this row; nothing was sent"
NO_RESULT = "the batch's results hold nothing for this operation"


class ImportFileError(ValueError):
    """The CSV cannot be imported as it is (no email column, a repeated id, …)."""


@dataclass(frozen=True, slots=True)
class ImportColumns:
    email: str
    id: str | None
    # (column, merge tag) pairs: ("First Name", "FNAME").
    merge_fields: tuple[tuple[str, str], ...]
    ignored: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ImportSummary:
    rows: int
    succeeded: int
    failed: int
    skipped: int
    path: Path


def default_results_path(csv_path: Path) -> Path:
    """``members.csv`` → ``members.results.csv``, beside the input."""
    return csv_path.with_name(f"{csv_path.stem}.results.csv")


def detect_columns(
    header: Iterable[str], merge_fields: Mapping[str, str] | None = None
) -> ImportColumns:
    """Which column is the address, the id, and which fill merge fields.

    ``merge_fields`` maps the list's folded merge tags and names to tags ("fname" and
    "first name" to FNAME), so Mailchimp's own export headers land in the right field; columns
    that match none are ignored (and named). Without it (reading a CSV for its results only),
    upper-case columns are taken as merge tags.
    """
    names = [name for name in header if name is not None]
    by_folded = {name.strip().lower(): name for name in names}
    email = next((by_folded[h] for h in EMAIL_HEADERS if h in by_folded), None)
    if email is None:
        hint = ""
        if len(names) == 1 and (sep := next((c for c in ";\t|" if c in names[0]), None)):
            shown = "tab" if sep == "\t" else sep
            hint = f" The header looks {shown}-separated: try --delimiter '{shown}'."
        raise ImportFileError(
            "the CSV has no email column (a header named email, email_address or "
            f"Email Address); its columns are: {', '.join(names) or 'none'}.{hint}"
        )
    id_column = by_folded.get(ID_HEADER)
    merge: list[tuple[str, str]] = []
    ignored: list[str] = []
    taken: set[str] = set()
    for name in names:
        if name in (email, id_column):
            continue
        if merge_fields is None:
            tag = name if _MERGE_TAG.fullmatch(name) else None
        else:
            tag = merge_fields.get(name.strip().lower())
        if tag is None or tag in taken:
            ignored.append(name)
            continue
        taken.add(tag)
        merge.append((name, tag))
    return ImportColumns(
        email=email, id=id_column, merge_fields=tuple(merge), ignored=tuple(ignored)
    )


class MemberImport:
    """One CSV file's import; a context manager that owns its lookup database."""

    def __init__(
        self,
        csv_path: Path,
        *,
        list_id: str | None = None,
        status_if_new: str = "subscribed",
        delimiter: str = ",",
        encoding: str = "utf-8-sig",
        merge_fields: Mapping[str, str] | None = None,
    ) -> None:
        self.csv_path = csv_path
        self.list_id = list_id
        self.status_if_new = status_if_new
        self.delimiter = delimiter
        self.encoding = encoding
        self.rows = 0
        self.skipped = 0
        # "" opens a private temporary database that SQLite keeps on disk once it grows.
        self._db = sqlite3.connect("")
        self._db.execute(
            "CREATE TABLE rows (row INTEGER PRIMARY KEY, operation_id TEXT UNIQUE, email TEXT,"
            " local_error TEXT)"
        )
        self._db.execute(
            "CREATE TABLE results (operation_id TEXT PRIMARY KEY, status_code INTEGER,"
            " web_id TEXT, error TEXT)"
        )
        self.columns = self._read_columns(merge_fields)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> MemberImport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self) -> Any:
        # The default utf-8-sig also reads plain UTF-8; spreadsheets save a byte-order mark
        # that would otherwise glue itself to the first header name and hide the email column.
        try:
            return self.csv_path.open(newline="", encoding=self.encoding)
        except LookupError:
            raise ImportFileError(f"unknown encoding {self.encoding!r}") from None

    def _not_decodable(self, exc: UnicodeDecodeError) -> ImportFileError:
        return ImportFileError(
            f"{self.csv_path} is not {self.encoding} text ({exc.reason}); "
            "give its encoding, e.g. --encoding cp1252"
        )

    def _read_columns(self, merge_fields: Mapping[str, str] | None) -> ImportColumns:
        with self._open() as handle:
            reader = csv.reader(handle, delimiter=self.delimiter)
            try:
                header = next(reader, None)
                first = next((row for row in reader if any(cell.strip() for cell in row)), None)
            except UnicodeDecodeError as exc:
                raise self._not_decodable(exc) from None
            except csv.Error as exc:
                raise ImportFileError(f"{self.csv_path} is not a readable CSV: {exc}") from None
        if not header:
            raise ImportFileError(f"{self.csv_path} is empty: it needs a header line")
        columns = detect_columns(header, merge_fields)
        if first is None:
            raise ImportFileError(f"{self.csv_path} has a header but no rows: nothing to import")
        return columns

    def operations(self) -> Iterator[Operation]:
        """One upsert per row with an address; every row is recorded for the results.

        The operation id is the row's ``id`` cell if the CSV has that column, else the row
        number (1 is the first line after the header). A repeated id raises
        :class:`ImportFileError` before anything is sent, since its results could not be told
        apart.
        """
        try:
            yield from self._operations()
        except UnicodeDecodeError as exc:
            raise self._not_decodable(exc) from None

    def _operations(self) -> Iterator[Operation]:
        self._db.execute("DELETE FROM rows")
        self.rows = self.skipped = 0
        columns = self.columns
        with self._open() as handle:
            reader = csv.DictReader(handle, delimiter=self.delimiter)
            for number, record in enumerate(reader, start=1):
                self.rows = number
                email = (record.get(columns.email) or "").strip()
                operation_id = str(number)
                if columns.id is not None:
                    operation_id = (record.get(columns.id) or "").strip()
                    if not operation_id:
                        raise ImportFileError(f"row {number} has an empty {columns.id} cell")
                local_error = None if email else NO_EMAIL
                try:
                    self._db.execute(
                        "INSERT INTO rows VALUES (?, ?, ?, ?)",
                        (number, operation_id, email, local_error),
                    )
                except sqlite3.IntegrityError:
                    raise ImportFileError(
                        f"row {number} repeats the {columns.id} {operation_id!r} of an earlier "
                        "row; ids must be unique to tell the results apart"
                    ) from None
                if not email:
                    self.skipped += 1
                    continue
                if self.list_id is None:
                    continue
                merge_fields = {
                    tag: value.strip()
                    for name, tag in columns.merge_fields
                    # An empty cell is "no data here", not "erase what the member has".
                    if (value := record.get(name) or "").strip()
                }
                yield upsert_member(
                    self.list_id,
                    email,
                    status_if_new=self.status_if_new,
                    merge_fields=merge_fields or None,
                    operation_id=operation_id,
                )
        self._db.commit()

    def record_rows(self) -> None:
        """Read the CSV for the results only (after an import submitted earlier)."""
        for _ in self.operations():
            pass

    def record_results(self, results: Iterable[BatchResult]) -> None:
        insert = (
            "INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?)"  # the first result of an id wins
        )
        batch: list[tuple[str | None, int, str, str]] = []
        for result in results:
            web_id = ""
            if result.ok and isinstance(result.body, dict):
                value = result.body.get("web_id")
                web_id = "" if value is None else str(value)
            batch.append((result.operation_id, result.status_code, web_id, result.error))
            if len(batch) >= 5000:
                self._db.executemany(insert, batch)
                batch.clear()
        self._db.executemany(insert, batch)
        self._db.commit()

    def write_results(self, out_path: Path) -> ImportSummary:
        """One line per input row, in row order; written to a side file, then moved in place."""
        succeeded = failed = skipped = 0
        partial = out_path.with_name(out_path.name + ".partial")
        query = (
            "SELECT r.row, r.operation_id, r.email, r.local_error,"
            " x.status_code, x.web_id, x.error"
            " FROM rows r LEFT JOIN results x ON x.operation_id = r.operation_id ORDER BY r.row"
        )
        with partial.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(RESULT_COLUMNS)
            for row, operation_id, email, local_error, status, web_id, error in self._db.execute(
                query
            ):
                if local_error is not None:
                    skipped += 1
                    writer.writerow((row, operation_id, email, "", "", local_error))
                elif status is None:
                    failed += 1
                    writer.writerow((row, operation_id, email, "", "", NO_RESULT))
                else:
                    if 200 <= status <= 299:
                        succeeded += 1
                    else:
                        failed += 1
                    writer.writerow((row, operation_id, email, status, web_id, error))
        os.replace(partial, out_path)
        return ImportSummary(
            rows=succeeded + failed + skipped,
            succeeded=succeeded,
            failed=failed,
            skipped=skipped,
            path=out_path,
        )
