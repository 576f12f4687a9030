"""`Client.results()` on archives shaped like the real service's, served over real HTTP."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from conveyor.client import ArchiveError, BatchNotFinished, BatchResult, Client
from conveyor.domain.archive import ResultRecord, write_archive
from tests.client.support import BATCH_ID, Stub, gzip_twice, mailchimp_style_archive, serving

KEY = "0123456789abcdef0123456789abcdef-us1"
REPO = Path(__file__).resolve().parents[2]

MEMBER = {"id": "a" * 32, "email_address": "ann@example.org", "web_id": 17, "status": "subscribed"}
INVALID = {
    "type": "https://mailchimp.com/developer/marketing/docs/errors/",
    "title": "Invalid Resource",
    "status": 400,
    "detail": "bad looks fake or invalid, please enter a real email address.",
    "instance": "f00",
    "errors": [{"field": "email_address", "message": "looks fake"}],
}
# Three files, as very large batches and paged GETs give; string responses throughout.
REAL_SHAPED: list[list[dict[str, Any]]] = [
    [
        {"status_code": 200, "operation_id": "1", "response": json.dumps(MEMBER)},
        {"status_code": 400, "operation_id": "2", "response": json.dumps(INVALID)},
    ],
    [
        # A null operation id (the caller sent none) and a 204 with an empty body.
        {"status_code": 200, "operation_id": None, "response": json.dumps({"health": "ok"})},
        {"status_code": 204, "operation_id": "tag-3", "response": ""},
    ],
    [
        {"status_code": 404, "operation_id": "4", "response": json.dumps({
            "title": "Resource Not Found", "status": 404,
            "detail": "The requested resource could not be found."})},
    ],
]  # fmt: skip


def expected_results() -> list[BatchResult]:
    return [
        BatchResult("1", 200, MEMBER, json.dumps(MEMBER)),
        BatchResult("2", 400, INVALID, json.dumps(INVALID)),
        BatchResult(None, 200, {"health": "ok"}, json.dumps({"health": "ok"})),
        BatchResult("tag-3", 204, None, ""),
        BatchResult(
            "4",
            404,
            {
                "title": "Resource Not Found",
                "status": 404,
                "detail": "The requested resource could not be found.",
            },
            REAL_SHAPED[2][0]["response"],
        ),
    ]


def client(stub: Stub) -> Client:
    return Client(KEY, base_url=stub.base_url, max_retries=0)


def test_the_archive_really_has_the_quirks() -> None:
    with tarfile.open(fileobj=io.BytesIO(mailchimp_style_archive(REAL_SHAPED))) as tar:
        names = tar.getnames()
    assert names[0] == "." or names[0] == "./"
    assert len([n for n in names if n.endswith(".json")]) == 3
    assert all(n.startswith("./") for n in names[1:])


def test_results_read_a_mailchimp_shaped_archive() -> None:
    with serving(Stub(mailchimp_style_archive(REAL_SHAPED))) as stub, client(stub) as api:
        with api.results(BATCH_ID) as results:
            assert results.batch.id == BATCH_ID
            got = list(results)
        failed = list(api.failed(BATCH_ID))
    assert got == expected_results()
    assert [r.ok for r in got] == [True, False, True, True, False]
    assert got[1].title == "Invalid Resource"
    assert got[1].error == (
        "Invalid Resource: bad looks fake or invalid, please enter a real email address. "
        "(email_address: looks fake)"
    )
    assert got[3].body is None and got[3].error == ""
    assert [r.operation_id for r in failed] == ["2", "4"]
    # The API call carried the key; the signed download carried no credentials at all.
    (status_call, download, *_rest) = stub.seen
    assert status_call[1] == f"/3.0/batches/{BATCH_ID}" and status_call[2] is not None
    assert download[1].startswith("/signed/") and download[2] is None


def test_results_survive_encoding_quirks_of_the_download() -> None:
    archive = mailchimp_style_archive(REAL_SHAPED)
    # S3 object stored with Content-Encoding: gzip metadata: the bytes are the .tar.gz itself.
    with serving(Stub(archive, download_content_encoding="gzip")) as stub, client(stub) as api:
        assert list(api.results(BATCH_ID)) == expected_results()
    # A proxy that gzipped the .tar.gz again.
    with serving(Stub(gzip_twice(archive))) as stub, client(stub) as api:
        assert list(api.results(BATCH_ID)) == expected_results()


def test_broken_downloads_raise_archive_errors() -> None:
    with (
        serving(Stub(b"<html>not an archive</html>")) as stub,
        client(stub) as api,
        pytest.raises(ArchiveError, match=r"not a \.tar\.gz"),
    ):
        api.results(BATCH_ID)  # refused at once, before any iteration
    truncated = mailchimp_style_archive(REAL_SHAPED)[:-40]
    with (
        serving(Stub(truncated)) as stub,
        client(stub) as api,
        pytest.raises(ArchiveError, match="results archive of batch"),
    ):
        list(api.results(BATCH_ID))
    bad_json = io.BytesIO()
    with tarfile.open(fileobj=bad_json, mode="w:gz") as tar:
        info = tarfile.TarInfo("a.json")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"[{,]]"))
    with (
        serving(Stub(bad_json.getvalue())) as stub,
        client(stub) as api,
        pytest.raises(ArchiveError),
    ):
        list(api.results(BATCH_ID))


def test_an_empty_archive_and_an_unfinished_batch() -> None:
    empty = io.BytesIO()
    write_archive([], empty)
    with serving(Stub(empty.getvalue())) as stub, client(stub) as api:
        assert list(api.results(BATCH_ID)) == []
    with (
        serving(Stub(b"", status="started")) as stub,
        client(stub) as api,
        pytest.raises(BatchNotFinished, match="is started"),
    ):
        api.results(BATCH_ID)


def test_results_stop_early_and_free_the_file() -> None:
    archive = mailchimp_style_archive(REAL_SHAPED)
    with serving(Stub(archive)) as stub, client(stub) as api:
        results = api.results(BATCH_ID)
        assert next(results).operation_id == "1"
        results.close()
        assert list(results) == []  # closed: nothing more, no error


MILLION = 1_000_000


def million_records() -> Iterator[ResultRecord]:
    member = orjson.dumps(MEMBER).decode()
    problem = orjson.dumps(INVALID).decode()
    for index in range(MILLION):
        if index % 100 == 99:
            yield ResultRecord(400, str(index), problem)
        elif index % 1000 == 500:
            yield ResultRecord(204, None, "")
        else:
            yield ResultRecord(200, str(index), member)


def test_a_million_results_stream_with_flat_memory(tmp_path: Path) -> None:
    archive = tmp_path / f"{BATCH_ID}-response.tar.gz"
    started = time.monotonic()
    with archive.open("wb") as out:
        summary = write_archive(million_records(), out)
    written = time.monotonic() - started
    with gzip.open(archive, "rb") as inflated:
        tar_bytes = sum(len(chunk) for chunk in iter(lambda: inflated.read(1 << 20), b""))
    # Read in a fresh process so that its peak RSS is the reader's alone.
    done = subprocess.run(
        [sys.executable, "-m", "tests.client.rss_probe", str(archive)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["results"] == MILLION
    assert report["failed"] == MILLION // 100
    assert report["empty_bodies"] == MILLION // 1000
    assert report["null_ids"] == MILLION // 1000
    assert report["web_ids"] == MILLION - MILLION // 100 - MILLION // 1000
    growth = report["peak_rss_mib"] - report["baseline_rss_mib"]
    print(
        f"\n1,000,000 results: archive {archive.stat().st_size / 2**20:.1f} MiB gz, "
        f"{tar_bytes / 2**20:.0f} MiB inflated, {summary.files} files; written in {written:.1f} s, "
        f"read in {report['seconds']:.1f} s; peak RSS {report['peak_rss_mib']:.1f} MiB "
        f"(baseline {report['baseline_rss_mib']:.1f} MiB, growth {growth:.1f} MiB)"
    )
    # The inflated JSON alone is hundreds of MiB: holding it, or the results, would show here.
    assert tar_bytes > 150 * 2**20
    assert growth < 40, report
