"""Blob stores for result archives. The local one is a folder; writes are atomic renames."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast
from urllib.parse import unquote, urlsplit

import obstore


class BlobStore(Protocol):
    def writer(self, key: str) -> AbstractContextManager[BinaryIO]: ...

    def open(self, key: str) -> BinaryIO: ...

    def size(self, key: str) -> int | None: ...

    def delete(self, key: str) -> None: ...

    def check(self) -> None:
        """Raise unless the store can be reached and written to."""
        ...


@dataclass(frozen=True)
class LocalBlobStore:
    root: Path

    def _path(self, key: str) -> Path:
        if not key or key.startswith(("/", ".")) or ".." in key.split("/"):
            raise ValueError(f"unsafe blob key: {key!r}")
        return self.root / key

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """A file to write the blob into; it appears under `key` only once complete."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
        try:
            with os.fdopen(handle, "wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise PermissionError(f"{self.root} is not writable")


@dataclass(frozen=True)
class ObjectBlobStore:
    """S3-compatible storage through obstore (0.x: kept behind this small interface)."""

    store: Any

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        # Spool to a local file and upload once complete: an archive that failed half-way is
        # never visible, and obstore streams the upload in parts with flat memory.
        with tempfile.TemporaryFile() as spool:
            yield cast(BinaryIO, spool)
            spool.flush()
            spool.seek(0)
            obstore.put(self.store, key, spool)

    def open(self, key: str) -> BinaryIO:
        return cast(BinaryIO, obstore.open_reader(self.store, key))

    def size(self, key: str) -> int | None:
        try:
            return int(obstore.head(self.store, key)["size"])
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            obstore.delete(self.store, key)

    def check(self) -> None:
        # A missing key answers from the service itself: reachable, credentials accepted.
        with contextlib.suppress(FileNotFoundError):
            obstore.head(self.store, "conveyor-readiness-probe")


def open_blob_store(url: str | None, default_dir: Path, s3_options: dict[str, str]) -> BlobStore:
    """`file:///path` or `s3://bucket/prefix`; None means the data dir's own folder."""
    if not url:
        return LocalBlobStore(default_dir)
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalBlobStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        from obstore.store import from_url

        client_options: Any = {"allow_http": s3_options.get("allow_http") == "true"}
        config: Any = {k: v for k, v in s3_options.items() if k != "allow_http"}
        return ObjectBlobStore(from_url(url, config=config, client_options=client_options))
    raise ValueError(f"unsupported blob URL (expected file:// or s3://): {url}")
