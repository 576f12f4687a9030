"""The results archive: a gzipped tar of ``<hex>.json`` files, as Mailchimp serves it.

Each file is a JSON array of ``{"status_code", "operation_id", "response"}`` objects, where
``response`` is the operation's response body as a JSON *string*. Both directions stream: the
writer spools one file's JSON at a time to a temporary file (tar needs each member's size
before its data) and the reader parses with ijson, so a million-result archive costs flat
memory either way.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO, cast

import ijson
import orjson
from isal import igzip

from conveyor.domain.states import is_success

DEFAULT_RESULTS_PER_FILE = 10_000
# A paged GET can return megabytes per result, so a count limit alone would not bound the
# buffered file; a file is closed early once it passes this size.
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024

_MEMBER_STEM = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class ResultRecord:
    status_code: int
    operation_id: str | None
    response: str


@dataclass(frozen=True, slots=True)
class ArchiveSummary:
    files: int
    results: int
    errored: int
    bytes_written: int


class InvalidArchive(ValueError):
    pass


def archive_name(batch_id: str) -> str:
    return f"{batch_id}-response.tar.gz"


def default_member_stem(index: int) -> str:
    return hashlib.md5(f"{index}".encode(), usedforsecurity=False).hexdigest()


class _CountingWriter:
    """Counts compressed bytes on their way to ``out``; ``out`` may be unseekable."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.count = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()


def _encode_record(record: ResultRecord) -> bytes:
    # A dict literal keeps the key order Mailchimp uses; orjson preserves insertion order.
    return orjson.dumps(
        {
            "status_code": record.status_code,
            "operation_id": record.operation_id,
            "response": record.response,
        }
    )


# The spool's buffer: one write per MiB of results, one read per MiB when tar copies it.
_SPOOL_BUFFER_BYTES = 1024 * 1024


def _spooled_files(
    encoded_results: Iterable[bytes],
    spool: IO[bytes],
    results_per_file: int,
    max_file_bytes: int,
) -> Iterator[int]:
    """Write the results into ``spool`` as JSON arrays, one file's at a time from its start,
    and yield each array's size once it is complete: the caller reads that many bytes from
    the start of ``spool`` before asking for the next. Always yields at least one (``[]``).

    Nothing but the result at hand is held in memory: a file of 10,000 member results is
    ~35 MB of JSON, and buffering files in memory (the one being built, its bytes for tar
    and the previous one's: ~120 MB) set the server's peak RSS while a big batch finalized.
    """
    spool.seek(0)
    spool.write(b"[")
    size, count = 1, 0
    for encoded in encoded_results:
        if count and (count >= results_per_file or size + len(encoded) + 2 > max_file_bytes):
            spool.write(b"]")
            yield size + 1
            spool.seek(0)
            spool.write(b"[")
            size, count = 1, 0
        if count:
            spool.write(b",")
            size += 1
        spool.write(encoded)
        size += len(encoded)
        count += 1
    # A file is only started when a result arrives, so this is the last one, or "[]" if none.
    spool.write(b"]")
    yield size + 1


def write_archive(
    results: Iterable[ResultRecord],
    out: BinaryIO,
    *,
    results_per_file: int = DEFAULT_RESULTS_PER_FILE,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    name_for_index: Callable[[int], str] | None = None,
    mtime: int | None = None,
) -> ArchiveSummary:
    """Stream ``results`` into a ``.tar.gz`` written to ``out`` and return what was written.

    ``name_for_index(i)`` gives the 32-lower-hex-character stem of the i-th file (``.json`` is
    added). Members are plain files at the archive root: no directory entries and no ``./``
    prefix, because the ``./`` entry of Mailchimp's own archives breaks some tar readers. An
    empty ``results`` still gives one file holding ``[]`` so that readers always find a file.
    """
    if results_per_file <= 0:
        raise ValueError(f"results_per_file must be positive, got {results_per_file}")
    if max_file_bytes <= 0:
        raise ValueError(f"max_file_bytes must be positive, got {max_file_bytes}")
    stem_for = name_for_index or default_member_stem
    member_mtime = int(time.time()) if mtime is None else mtime
    total = 0
    errored = 0

    def encoded_results() -> Iterator[bytes]:
        nonlocal total, errored
        for record in results:
            total += 1
            if not is_success(record.status_code):
                errored += 1
            yield _encode_record(record)

    counter = _CountingWriter(out)
    # A "w|" stream only ever calls write(), which is all _CountingWriter offers.
    stream = cast(BinaryIO, counter)
    names: set[str] = set()
    # USTAR keeps the headers to the oldest, most widely read format; the names are short ASCII.
    # ISA-L's deflate at level 1: the same size as zlib's level 1 on member results (JSON
    # compresses well even so) in a seventh of the time, 0.8 against 5.7 ms for the 3.6 MB of
    # a 1,000-add batch; level 9 (tarfile's default) cost ~5x zlib 1's CPU. A plain gzip
    # stream either way: any gzip reader takes it.
    # The spool is overwritten from its start for each file (never truncated): it grows to
    # the largest file, at most `max_file_bytes` and one result.
    with (
        tempfile.TemporaryFile(buffering=_SPOOL_BUFFER_BYTES) as spool,
        # isal's stubs leave the constructor untyped; it is gzip.GzipFile's.
        igzip.GzipFile(  # type: ignore[no-untyped-call]
            fileobj=stream, mode="wb", compresslevel=1, mtime=member_mtime
        ) as gz,
        tarfile.open(fileobj=cast(BinaryIO, gz), mode="w|", format=tarfile.USTAR_FORMAT) as tar,
    ):
        files = _spooled_files(encoded_results(), spool, results_per_file, max_file_bytes)
        for index, size in enumerate(files):
            stem = stem_for(index)
            if not _MEMBER_STEM.fullmatch(stem) or stem in names:
                raise ValueError(f"member name {stem!r} is not 32 unique lower-case hex chars")
            names.add(stem)
            info = tarfile.TarInfo(f"{stem}.json")
            info.size = size
            info.mtime = member_mtime
            info.mode = 0o644
            spool.seek(0)
            # Copies exactly `size` bytes: what is left of a longer earlier file is not read.
            tar.addfile(info, spool)
    return ArchiveSummary(
        files=len(names), results=total, errored=errored, bytes_written=counter.count
    )


def _is_result_member(member: tarfile.TarInfo) -> bool:
    if not member.isfile():
        return False
    base = member.name.rsplit("/", 1)[-1]
    # "._x.json" files are macOS resource forks that some tools add beside real members.
    return base.endswith(".json") and not base.startswith("._")


def _to_record(item: object, member_name: str) -> ResultRecord:
    # Exact type checks make the common, well-formed case cheap: it runs once per result.
    if type(item) is dict:
        status_code = item.get("status_code")
        operation_id = item.get("operation_id")
        response = item.get("response")
        if (
            type(status_code) is int
            and type(response) is str
            and (operation_id is None or type(operation_id) is str)
        ):
            return ResultRecord(status_code, operation_id, response)
    return _to_record_leniently(item, member_name)


def _to_record_leniently(item: object, member_name: str) -> ResultRecord:
    if not isinstance(item, dict):
        raise InvalidArchive(f"{member_name}: a result is not a JSON object")
    status_code = item.get("status_code")
    if isinstance(status_code, float) and status_code.is_integer():
        status_code = int(status_code)
    if not isinstance(status_code, int) or isinstance(status_code, bool):
        raise InvalidArchive(f"{member_name}: a result has no integer status_code")
    operation_id = item.get("operation_id")
    if operation_id is not None and not isinstance(operation_id, str):
        operation_id = orjson.dumps(operation_id).decode()
    response = item.get("response")
    if response is None:
        response = ""
    elif not isinstance(response, str):
        # Tolerated for archives from other tools that embedded the body instead of encoding it.
        response = orjson.dumps(response).decode()
    return ResultRecord(status_code, operation_id, response)


def iter_archive(fileobj: BinaryIO) -> Iterator[ResultRecord]:
    """Yield every result of every ``.json`` member, in archive order, with flat memory.

    Accepts what Mailchimp really serves: a leading ``./`` directory entry, ``./<hex>.json``
    names, several files, ``null`` operation ids and ``""`` responses. Other members are skipped.
    """
    try:
        with tarfile.open(fileobj=fileobj, mode="r|gz") as tar:
            for member in tar:
                if not _is_result_member(member):
                    continue
                member_file = tar.extractfile(member)
                if member_file is None:
                    continue
                with member_file:
                    for item in ijson.items(member_file, "item", use_float=True):
                        yield _to_record(item, member.name)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidArchive(f"not a readable .tar.gz archive: {exc}") from exc
    except ijson.JSONError as exc:
        raise InvalidArchive(f"a member is not valid JSON: {exc}") from exc
