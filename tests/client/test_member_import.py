"""The CSV side of `members import`: columns, operation ids, the results join."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conveyor.client.member_import import (
    NO_EMAIL,
    NO_RESULT,
    ImportFileError,
    MemberImport,
    default_results_path,
    detect_columns,
)
from conveyor.client.models import BatchResult
from conveyor.client.operations import subscriber_hash


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def result(operation_id: str, status: int, body: object) -> BatchResult:
    text = "" if body is None else json.dumps(body)
    return BatchResult(operation_id, status, body, text)


LIST_MERGE_FIELDS = {
    "fname": "FNAME", "first name": "FNAME", "lname": "LNAME", "last name": "LNAME",
    "phone": "PHONE", "phone number": "PHONE",
}  # fmt: skip


def test_columns() -> None:
    found = detect_columns(["Email Address", "FNAME", "LNAME", "id", "notes", "Phone"])
    assert found.email == "Email Address"
    assert found.id == "id"
    assert found.merge_fields == (("FNAME", "FNAME"), ("LNAME", "LNAME"))
    assert found.ignored == ("notes", "Phone")
    with pytest.raises(ImportFileError, match="no email column"):
        detect_columns(["name", "FNAME"])


def test_columns_by_the_lists_merge_fields_as_mailchimp_exports_them() -> None:
    header = ["Email Address", "First Name", "Last Name", "Phone Number", "MEMBER_RATING", "x"]
    found = detect_columns(header, LIST_MERGE_FIELDS)
    assert found.merge_fields == (
        ("First Name", "FNAME"), ("Last Name", "LNAME"), ("Phone Number", "PHONE"),
    )  # fmt: skip
    assert found.ignored == ("MEMBER_RATING", "x")
    # A second column for a field already filled is ignored, not sent twice.
    assert detect_columns(["email", "FNAME", "First Name"], LIST_MERGE_FIELDS).ignored == (
        "First Name",
    )


def test_a_semicolon_file_read_with_commas_suggests_the_delimiter() -> None:
    with pytest.raises(ImportFileError, match="try --delimiter ';'"):
        detect_columns(["email;FNAME;LNAME"])
    with pytest.raises(ImportFileError, match="try --delimiter 'tab'"):
        detect_columns(["email\tFNAME"])


def test_a_header_only_csv_is_refused(tmp_path: Path) -> None:
    only_header = write(tmp_path / "h.csv", "email,FNAME\n\n")
    with pytest.raises(ImportFileError, match="has a header but no rows"):
        MemberImport(only_header, list_id="L1")


def test_rows_become_upserts_with_row_numbers(tmp_path: Path) -> None:
    # A byte-order mark, as spreadsheets write it, must not hide the email column.
    source = write(
        tmp_path / "m.csv",
        "email,FNAME,LNAME\nann@example.org,Ann,\n,Nobody,X\nbob@example.org,,Bee\n",
        encoding="utf-8-sig",
    )
    with MemberImport(source, list_id="L1", status_if_new="pending") as job:
        operations = list(job.operations())
        assert (job.rows, job.skipped) == (3, 1)
    assert [op["operation_id"] for op in operations] == ["1", "3"]
    assert operations[0]["path"] == f"/lists/L1/members/{subscriber_hash('ann@example.org')}"
    assert json.loads(operations[0]["body"]) == {
        "email_address": "ann@example.org",
        "merge_fields": {"FNAME": "Ann"},  # the empty LNAME cell erases nothing
        "status_if_new": "pending",
    }
    assert json.loads(operations[1]["body"])["merge_fields"] == {"LNAME": "Bee"}


def test_results_are_joined_back_in_row_order(tmp_path: Path) -> None:
    source = write(
        tmp_path / "m.csv",
        "id;email\nk-1;ann@example.org\nk-2;bad\nk-3;\nk-4;cy@example.org\n",
    )
    with MemberImport(source, list_id="L1", delimiter=";") as job:
        assert [op["operation_id"] for op in job.operations()] == ["k-1", "k-2", "k-4"]
        job.record_results(
            [
                result("k-2", 400, {"title": "Invalid Resource", "detail": "bad looks fake"}),
                result("k-1", 200, {"id": "x", "web_id": 41}),
                # k-4 has no result at all (say, the batch was cut short)
            ]
        )
        out = tmp_path / "out.csv"
        summary = job.write_results(out)
    assert (summary.rows, summary.succeeded, summary.failed, summary.skipped) == (4, 1, 2, 1)
    assert not (tmp_path / "out.csv.partial").exists()
    with out.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        ["row", "operation_id", "email", "status_code", "web_id", "error"],
        ["1", "k-1", "ann@example.org", "200", "41", ""],
        ["2", "k-2", "bad", "400", "", "Invalid Resource: bad looks fake"],
        ["3", "k-3", "", "", "", NO_EMAIL],
        ["4", "k-4", "cy@example.org", "", "", NO_RESULT],
    ]


def test_repeated_or_empty_ids_are_refused_before_sending(tmp_path: Path) -> None:
    repeated = write(tmp_path / "r.csv", "id,email\na,x@example.org\nb,y@example.org\na,z@e.org\n")
    with MemberImport(repeated, list_id="L1") as job, pytest.raises(ImportFileError, match="row 3"):
        list(job.operations())
    empty_id = write(tmp_path / "e.csv", "id,email\n,x@example.org\n")
    with MemberImport(empty_id, list_id="L1") as job, pytest.raises(ImportFileError, match="empty"):
        list(job.operations())
    with pytest.raises(ImportFileError, match="empty"):
        MemberImport(write(tmp_path / "n.csv", ""), list_id="L1")


def test_default_results_path() -> None:
    assert default_results_path(Path("/d/members.csv")) == Path("/d/members.results.csv")


def test_encodings(tmp_path: Path) -> None:
    source = tmp_path / "latin.csv"
    source.write_bytes("email,FNAME\nzoe@example.org,Zoé\n".encode("cp1252"))
    # Refused at once: the reader decodes ahead, so the header line already fails.
    with pytest.raises(ImportFileError, match="not utf-8-sig text"):
        MemberImport(source, list_id="L1")
    with MemberImport(source, list_id="L1", encoding="cp1252") as job:
        (operation,) = job.operations()
    assert json.loads(operation["body"])["merge_fields"] == {"FNAME": "Zoé"}
    with pytest.raises(ImportFileError, match="unknown encoding"):
        MemberImport(source, list_id="L1", encoding="klingon")
