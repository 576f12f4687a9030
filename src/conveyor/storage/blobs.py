"""Blob stores for result archives. The local one is a folder; writes are atomic renames."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol


class BlobStore(Protocol):
    def writer(self, key: str) -> AbstractContextManager[BinaryIO]: ...

    def open(self, key: str) -> BinaryIO: ...

    def size(self, key: str) -> int | None: ...

    def delete(self, key: str) -> None: ...


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
