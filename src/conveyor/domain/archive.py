"""The results archive: a gzipped tar of ``<hex>.json`` files, as Mailchimp serves it.

Each file is a JSON array of ``{"status_code", "operation_id", "response"}`` objects, where
``response`` is the operation's response body as a JSON *string*. Both directions stream: the
writer gathers one file's JSON at a time in a fixed buffer, spilling to a temporary file what
outgrows it (tar needs each member's size before its data), and the reader parses with
ijson, so a million-result archive costs flat memory either way.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO, NamedTuple, cast

import ijson
import orjson
from isal import igzip

from conveyor.domain.states import is_success

DEFAULT_RESULTS_PER_FILE = 10_000
# A paged GET can return megabytes per result, so a count limit alone would not bound the
# buffered file; a file is closed early once it passes this size.
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024

_MEMBER_STEM = re.compile(r"[0-9a-f]{32}")


# What the archive holds of one operation: (status code, operation id, response).
ResultFields = tuple[int, str | None, str]


class ResultRecord(NamedTuple):
    """One result; a plain `ResultFields` tuple does as well wherever one is read."""

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


# A file's JSON is built in memory up to this size and written to the tar in one piece; a
# larger one (10,000 member results are ~35 MB) goes on to a temporary file a MiB at a time,
# so finalizing a huge batch holds this much whatever its files' size (the 1M batch's peak
# RSS is near its target, and 8 MiB showed in it). A seed-sized batch's archive (~3.6 MB)
# spills its second half: 4.2-4.5 ms for its 1,000 results, against 3.5-3.7 ms all in 4
# MiB and 5.1-5.3 ms spooling everything through tarfile.
FILE_BUFFER_BYTES = 2 * 1024 * 1024
_SPILL_BYTES = 1024 * 1024
_TAR_BLOCK = tarfile.BLOCKSIZE


class _TarFileWriter:
    """Writes USTAR members to a stream, each member's size known only once its data is.

    A member's data gathers in one buffer allocated once and reused: holding each result's
    bytes instead made every encode land on fresh memory and cost twice as much. What does
    not fit goes on to a temporary file, a full buffer at a time. tarfile's own writer
    wants a file object per member and copies it 16 KiB at a time; a header, the data in as
    few writes as it came in, and the padding are all a member is.
    """

    def __init__(self, out: IO[bytes], mtime: int) -> None:
        self._out = out
        self._mtime = mtime
        # Room for a spill's worth of tail and a spill's worth read back from the spool.
        self._buffer = bytearray(max(FILE_BUFFER_BYTES, 2 * _SPILL_BYTES))
        self._filled = 0  # bytes of the member in the buffer
        # Once a member spills, the buffer goes to the spool a MiB at a time: copies into a
        # buffer that stays in the CPU's cache cost a fifth less than into all 8 MiB.
        self._limit = FILE_BUFFER_BYTES
        self._spool: io.BufferedRandom | None = None
        self._spooled = 0  # the member's bytes already in the spool
        self._written = 0  # bytes of tar so far, for the padding at its end

    @property
    def size(self) -> int:
        """Bytes appended to the current member."""
        return self._spooled + self._filled

    def append(self, piece: bytes) -> None:
        start = self._filled
        end = start + len(piece)
        if end > self._limit:
            self._spill()
            start, end = 0, len(piece)
            if end > self._limit:  # one result larger than the buffer
                assert self._spool is not None
                self._spool.write(piece)
                self._spooled += end
                return
        self._buffer[start:end] = piece
        self._filled = end

    def _spill(self) -> None:
        if self._spool is None:
            # Closed by close() or discard(): its life spans the appends of many results.
            self._spool = tempfile.TemporaryFile()  # noqa: SIM115
        self._spool.write(memoryview(self._buffer)[: self._filled])
        self._spooled += self._filled
        self._filled = 0
        self._limit = _SPILL_BYTES

    def close_member(self, name: str) -> None:
        """Write what was appended as the member ``name`` and start the next member."""
        info = tarfile.TarInfo(name)
        info.size = self.size
        info.mtime = self._mtime
        info.mode = 0o644
        out = self._out
        header = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
        out.write(header)
        spool = self._spool
        if spool is not None and self._spooled:
            spool.seek(0)
            left = self._spooled
            # Read back into the buffer's free part after the member's tail, not into new
            # bytes: after a spill the tail is at most one spill's worth.
            with memoryview(self._buffer) as view:
                free = view[self._filled : self._filled + _SPILL_BYTES]
                while left:
                    read = spool.readinto(free[: min(left, len(free))])
                    if not read:
                        raise OSError("the archive's spool ended early")
                    out.write(free[:read])
                    left -= read
            # Overwritten from its start by the next member, never truncated.
            spool.seek(0)
        with memoryview(self._buffer) as view:
            out.write(view[: self._filled])
        padding = -info.size % _TAR_BLOCK
        out.write(bytes(padding))
        self._written += len(header) + info.size + padding
        self._filled = self._spooled = 0

    def close(self) -> None:
        # Two zero blocks end the archive, padded to a whole 10 KiB record as tar does.
        end = self._written + 2 * _TAR_BLOCK
        self._out.write(bytes(2 * _TAR_BLOCK + -end % tarfile.RECORDSIZE))
        self.discard()

    def discard(self) -> None:
        """Let go of the spool, the archive finished or not."""
        if self._spool is not None:
            self._spool.close()


def write_archive(
    results: Iterable[ResultFields],
    out: BinaryIO,
    *,
    results_per_file: int = DEFAULT_RESULTS_PER_FILE,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    name_for_index: Callable[[int], str] | None = None,
    mtime: int | None = None,
) -> ArchiveSummary:
    """Stream ``results`` into a ``.tar.gz`` written to ``out`` and return what was written.

    ``results`` are ``ResultRecord``s or plain ``(status_code, operation_id, response)``
    rows. ``name_for_index(i)`` gives the 32-lower-hex-character stem of the i-th file
    (``.json`` is added). Members are plain files at the archive root: no directory entries
    and no ``./`` prefix, because the ``./`` entry of Mailchimp's own archives breaks some tar
    readers. An empty ``results`` still gives one file holding ``[]`` so that readers always
    find a file.
    """
    if results_per_file <= 0:
        raise ValueError(f"results_per_file must be positive, got {results_per_file}")
    if max_file_bytes <= 0:
        raise ValueError(f"max_file_bytes must be positive, got {max_file_bytes}")
    stem_for = name_for_index or default_member_stem
    member_mtime = int(time.time()) if mtime is None else mtime
    names: set[str] = set()

    def close_file(tar: _TarFileWriter) -> None:
        stem = stem_for(len(names))
        if not _MEMBER_STEM.fullmatch(stem) or stem in names:
            raise ValueError(f"member name {stem!r} is not 32 unique lower-case hex chars")
        names.add(stem)
        tar.append(b"]")
        tar.close_member(f"{stem}.json")

    counter = _CountingWriter(out)
    total = errored = count = 0
    dumps = orjson.dumps
    # USTAR keeps the headers to the oldest, most widely read format; the names are short ASCII.
    # ISA-L's deflate at level 1: the same size as zlib's level 1 on member results (JSON
    # compresses well even so) in a seventh of the time, 0.8 against 5.7 ms for the 3.6 MB of
    # a 1,000-add batch; level 9 (tarfile's default) cost ~5x zlib 1's CPU. A plain gzip
    # stream either way: any gzip reader takes it.
    # isal's stubs leave the constructor untyped; it is gzip.GzipFile's.
    with igzip.GzipFile(  # type: ignore[no-untyped-call]
        fileobj=cast(BinaryIO, counter), mode="wb", compresslevel=1, mtime=member_mtime
    ) as gz:
        tar = _TarFileWriter(cast(IO[bytes], gz), member_mtime)
        try:
            tar.append(b"[")
            for status_code, operation_id, response in results:
                # A dict literal keeps the key order Mailchimp uses; orjson keeps it too.
                encoded = dumps(
                    {"status_code": status_code, "operation_id": operation_id,
                     "response": response}
                )  # fmt: skip
                total += 1
                if not is_success(status_code):
                    errored += 1
                if count and (
                    count >= results_per_file or tar.size + len(encoded) + 1 >= max_file_bytes
                ):
                    close_file(tar)
                    tar.append(b"[")
                    count = 0
                if count:
                    tar.append(b",")
                tar.append(encoded)
                count += 1
            # A file is only started when a result arrives: this is the last one, or "[]".
            close_file(tar)
        except BaseException:
            tar.discard()
            raise
        tar.close()
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
