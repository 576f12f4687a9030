import gzip
import hashlib
import io
import re
import tarfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.domain import archive
from conveyor.domain.archive import (
    FILE_BUFFER_BYTES,
    InvalidArchive,
    ResultRecord,
    archive_name,
    iter_archive,
    write_archive,
)


def _records(n: int) -> list[ResultRecord]:
    return [
        ResultRecord(
            status_code=200 if i % 3 else 400,
            operation_id=f"op-{i}" if i % 5 else None,
            response=orjson.dumps({"id": i, "email_address": f"u{i}@example.com"}).decode(),
        )
        for i in range(n)
    ]


def _members(data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        out = []
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            out.append((member, extracted.read() if extracted else b""))
        return out


def test_archive_name() -> None:
    assert archive_name("1234ab56cd") == "1234ab56cd-response.tar.gz"


def test_round_trip_keeps_every_field_and_order() -> None:
    records = [*_records(7), ResultRecord(204, "del", ""), ResultRecord(500, None, '"x"')]
    out = io.BytesIO()
    summary = write_archive(records, out)
    assert list(iter_archive(io.BytesIO(out.getvalue()))) == records
    assert summary.files == 1
    assert summary.results == 9
    assert summary.errored == 4  # indexes 0, 3, 6 and the 500
    assert summary.bytes_written == len(out.getvalue())


def test_members_are_plain_hex_json_files_without_dot_entry() -> None:
    out = io.BytesIO()
    write_archive(_records(25), out, results_per_file=10)
    members = _members(out.getvalue())
    assert [m.name for m, _ in members] == [
        f"{hashlib.md5(str(i).encode()).hexdigest()}.json" for i in range(3)
    ]
    for member, payload in members:
        assert member.isfile()
        assert re.fullmatch(r"[0-9a-f]{32}\.json", member.name)
        assert not member.name.startswith(("./", "/"))
        assert member.size == len(payload)
    assert [len(orjson.loads(payload)) for _, payload in members] == [10, 10, 5]


def test_member_json_layout_matches_mailchimp() -> None:
    out = io.BytesIO()
    write_archive([ResultRecord(200, "a", '{"id":"x"}'), ResultRecord(204, None, "")], out)
    [(_, payload)] = _members(out.getvalue())
    assert payload == (
        b'[{"status_code":200,"operation_id":"a","response":"{\\"id\\":\\"x\\"}"},'
        b'{"status_code":204,"operation_id":null,"response":""}]'
    )


def test_exact_multiple_gives_no_trailing_empty_file() -> None:
    out = io.BytesIO()
    summary = write_archive(_records(20), out, results_per_file=10)
    assert summary.files == 2
    assert len(list(iter_archive(io.BytesIO(out.getvalue())))) == 20


def test_empty_results_give_one_empty_array() -> None:
    out = io.BytesIO()
    summary = write_archive([], out)
    [(_, payload)] = _members(out.getvalue())
    assert payload == b"[]"
    assert summary.files == 1 and summary.results == 0 and summary.errored == 0
    assert list(iter_archive(io.BytesIO(out.getvalue()))) == []


def test_large_responses_split_files_by_size() -> None:
    big = ResultRecord(200, None, "x" * 1_000)
    out = io.BytesIO()
    summary = write_archive([big] * 10, out, max_file_bytes=2_500)
    assert summary.files == 5
    # One oversized result still gets a file of its own rather than failing.
    out = io.BytesIO()
    assert write_archive([big], out, max_file_bytes=10).files == 1


def test_custom_names_and_bad_names() -> None:
    out = io.BytesIO()
    write_archive(_records(3), out, results_per_file=1, name_for_index=lambda i: f"{i:032x}")
    assert [m.name for m, _ in _members(out.getvalue())] == [f"{i:032x}.json" for i in range(3)]
    for bad in (lambda i: "./x", lambda i: "0" * 32):
        with pytest.raises(ValueError):
            write_archive(_records(3), io.BytesIO(), results_per_file=1, name_for_index=bad)


@pytest.mark.parametrize("kwargs", [{"results_per_file": 0}, {"max_file_bytes": 0}])
def test_rejects_bad_limits(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        write_archive([], io.BytesIO(), **kwargs)


class _WriteOnly:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def flush(self) -> None:
        pass


def test_writes_to_an_unseekable_sink() -> None:
    sink = _WriteOnly()
    summary = write_archive(_records(5), sink, mtime=0)  # type: ignore[arg-type]
    assert summary.bytes_written == len(sink.data)
    assert len(list(iter_archive(io.BytesIO(bytes(sink.data))))) == 5


def _service_shaped_archive() -> bytes:
    """What Mailchimp serves: a ./ entry, ./<hex>.json names, several files, odd values."""
    files = [
        [
            {"status_code": 200, "operation_id": "a", "response": '{"id":"1"}'},
            {"status_code": 400, "operation_id": None, "response": '{"status":400}'},
        ],
        [{"status_code": 204, "operation_id": "del-1", "response": ""}],
        [],
    ]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        root = tarfile.TarInfo("./")
        root.type = tarfile.DIRTYPE
        root.mode = 0o755
        tar.addfile(root)
        notes = b"not results"
        info = tarfile.TarInfo("./README.txt")
        info.size = len(notes)
        tar.addfile(info, io.BytesIO(notes))
        for i, content in enumerate(files):
            payload = orjson.dumps(content, option=orjson.OPT_INDENT_2)
            info = tarfile.TarInfo(f"./{hashlib.md5(str(i).encode()).hexdigest()}.json")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return raw.getvalue()


def test_reads_an_archive_shaped_like_the_real_service() -> None:
    assert list(iter_archive(io.BytesIO(_service_shaped_archive()))) == [
        ResultRecord(200, "a", '{"id":"1"}'),
        ResultRecord(400, None, '{"status":400}'),
        ResultRecord(204, "del-1", ""),
    ]


def test_garbage_is_an_invalid_archive() -> None:
    with pytest.raises(InvalidArchive):
        list(iter_archive(io.BytesIO(b"definitely not gzip")))
    with pytest.raises(InvalidArchive):
        list(iter_archive(io.BytesIO(gzip.compress(b"not a tar either" * 100))))


_RESPONSE = '{"id":"%s","email_address":"someone@example.com","status":"subscribed"}'


def _many(n: int) -> Iterator[ResultRecord]:
    for i in range(n):
        yield ResultRecord(200 if i % 10 else 404, f"op-{i}", _RESPONSE % i)


def _traced_peak_during(action: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# The writer's buffer (2 MiB: to build a file, then to read its spool back), one result
# and what the gzip stream holds.
_WRITER_BOUND = FILE_BUFFER_BYTES + 1024 * 1024


def test_writer_buffers_one_file_at_a_time(tmp_path: Path) -> None:
    # ~6.5 MB of JSON in files of ~130 kB each; tracing is slow, so this one is smaller.
    path = tmp_path / "w.tar.gz"
    with path.open("wb") as out:
        peak = _traced_peak_during(
            lambda: write_archive(_many(50_000), out, results_per_file=1_000)
        )
    assert peak < _WRITER_BOUND, peak


@pytest.mark.parametrize("results_per_file", [1_000, 5_000])
def test_writer_holds_no_file_in_memory(tmp_path: Path, results_per_file: int) -> None:
    # Files of ~4 MB and ~20 MB (results of ~4 kB, like a member's answer): one that
    # outgrows the writer's buffer is spooled to disk, so memory stays the same whatever
    # the files' size.
    response = "x" * 4_000
    records = [ResultRecord(200, f"op-{i}", response) for i in range(10_000)]
    path = tmp_path / "w.tar.gz"
    with path.open("wb") as out:
        peak = _traced_peak_during(
            lambda: write_archive(iter(records), out, results_per_file=results_per_file)
        )
    assert peak < _WRITER_BOUND, peak
    with path.open("rb") as fileobj:
        assert list(iter_archive(fileobj)) == records


def test_a_file_shorter_than_the_one_before_holds_only_its_own_results() -> None:
    # The spool is rewritten from its start for each file, never truncated.
    records = [
        ResultRecord(200, "big", "x" * 5_000),
        ResultRecord(200, "a", "y"),
        ResultRecord(400, None, "z" * 10),
        ResultRecord(200, "b", ""),
    ]
    out = io.BytesIO()
    summary = write_archive(records, out, max_file_bytes=200)
    assert summary.files == 2
    payloads = [payload for _, payload in _members(out.getvalue())]
    assert [len(orjson.loads(payload)) for payload in payloads] == [1, 3]
    assert payloads[1] == (
        b'[{"status_code":200,"operation_id":"a","response":"y"},'
        b'{"status_code":400,"operation_id":null,"response":"zzzzzzzzzz"},'
        b'{"status_code":200,"operation_id":"b","response":""}]'
    )
    assert list(iter_archive(io.BytesIO(out.getvalue()))) == records


def test_large_round_trip_reads_with_flat_memory(tmp_path: Path) -> None:
    n = 200_000
    started = time.perf_counter()
    path = tmp_path / "big.tar.gz"
    with path.open("wb") as out:
        summary = write_archive(_many(n), out)
    # Uncompressed the archive holds ~25 MB of JSON in 20 files.
    assert summary.files == 20

    counts = {"results": 0, "errored": 0}

    def read_all() -> None:
        with path.open("rb") as fileobj:
            for record in iter_archive(fileobj):
                counts["results"] += 1
                counts["errored"] += record.status_code != 200

    peak = _traced_peak_during(read_all)
    assert summary.results == counts["results"] == n
    assert summary.errored == counts["errored"] == n // 10
    assert peak < 4 * 1024 * 1024, peak
    assert time.perf_counter() - started < 15


def _tarfile_archive(
    records: list[ResultRecord], results_per_file: int, max_file_bytes: int, mtime: int
) -> bytes:
    """The same archive by the standard library's tar writer: files filled in order, a new
    one when the count is reached or the next result would take it past `max_file_bytes`."""
    files: list[list[bytes]] = [[]]
    for record in records:
        encoded = orjson.dumps(
            {"status_code": record.status_code, "operation_id": record.operation_id,
             "response": record.response}
        )  # fmt: skip
        current = files[-1]
        size = 1 + sum(len(piece) + 1 for piece in current)
        if current and (
            len(current) >= results_per_file or size + len(encoded) + 1 > max_file_bytes
        ):
            files.append(current := [])
        current.append(encoded)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for index, pieces in enumerate(files):
            data = b"[" + b",".join(pieces) + b"]"
            info = tarfile.TarInfo(f"{hashlib.md5(str(index).encode()).hexdigest()}.json")
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


_record = st.builds(
    ResultRecord,
    st.sampled_from([200, 204, 400, 404, 500]),
    st.none() | st.text(max_size=8),
    st.text(max_size=300),
)


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(_record, max_size=40),
    results_per_file=st.integers(1, 12),
    max_file_bytes=st.integers(1, 2_000),
    buffer_bytes=st.integers(1, 600),
    spill_bytes=st.integers(1, 200),
)
def test_writer_gives_what_tarfile_gives(
    records: list[ResultRecord],
    results_per_file: int,
    max_file_bytes: int,
    buffer_bytes: int,
    spill_bytes: int,
) -> None:
    # The writer's own tar framing and its buffer (shrunk here, so results spill to the
    # spool, straddle its reads and outgrow the buffer) against tarfile's, byte for byte.
    out = io.BytesIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(archive, "FILE_BUFFER_BYTES", buffer_bytes)
        patch.setattr(archive, "_SPILL_BYTES", min(spill_bytes, buffer_bytes))
        summary = write_archive(
            records, out, results_per_file=results_per_file, max_file_bytes=max_file_bytes,
            mtime=1_700_000_000,
        )  # fmt: skip
    expected = _tarfile_archive(records, results_per_file, max_file_bytes, 1_700_000_000)
    assert gzip.decompress(out.getvalue()) == expected
    assert summary.results == len(records)
    assert summary.errored == sum(not 200 <= r.status_code <= 299 for r in records)
    assert list(iter_archive(io.BytesIO(out.getvalue()))) == records
