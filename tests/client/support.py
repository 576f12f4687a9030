"""Helpers of the client tests: archives shaped like Mailchimp's, an HTTP stub that serves
them, and the client's command groups under one click group."""

from __future__ import annotations

import gzip
import io
import tarfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import orjson
from click.testing import CliRunner, Result

from conveyor.client.cli import register

BATCH_ID = "1234ab56cd"


def cli_group() -> click.Group:
    """The groups as `conveyor` will carry them, once the lead calls register()."""

    @click.group()
    def conveyor() -> None:
        pass

    register(conveyor)
    return conveyor


def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    # The client reads CONVEYOR_URL / MAILCHIMP_API_KEY; a developer's own must not leak in.
    clean: dict[str, str | None] = {"CONVEYOR_URL": None, "MAILCHIMP_API_KEY": None}
    clean.update(env or {})
    return CliRunner().invoke(
        cli_group(), list(args), env=clean, input=input, catch_exceptions=False
    )


def mailchimp_style_archive(files: Sequence[Sequence[dict[str, Any]]]) -> bytes:
    """A .tar.gz as Mailchimp serves it: a `./` directory entry, then `./<hex>.json` files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        root = tarfile.TarInfo("./")
        root.type = tarfile.DIRTYPE
        root.mode = 0o755
        tar.addfile(root)
        for index, results in enumerate(files):
            payload = orjson.dumps(list(results))
            info = tarfile.TarInfo(f"./{index:032x}.json")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return raw.getvalue()


def gzip_twice(archive: bytes) -> bytes:
    return gzip.compress(archive)


@dataclass
class Stub:
    """One finished batch whose archive is served from a file or from bytes."""

    archive: Path | bytes
    status: str = "finished"
    base_url: str = ""
    # Requests seen: (method, path, Authorization header or None).
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)
    download_content_encoding: str | None = None

    def batch(self) -> dict[str, Any]:
        finished = self.status == "finished"
        return {
            "id": BATCH_ID,
            "status": self.status,
            "total_operations": 3,
            "finished_operations": 3 if finished else 0,
            "errored_operations": 1 if finished else 0,
            "submitted_at": "2026-01-01T00:00:00+00:00",
            "completed_at": "2026-01-01T00:01:00+00:00" if finished else "",
            "response_body_url": f"{self.base_url}/signed/{BATCH_ID}-response.tar.gz?sig=x"
            if finished
            else "",
            "_links": [],
        }


@contextmanager
def serving(stub: Stub) -> Iterator[Stub]:
    """A real HTTP server (so downloads really stream) answering status calls and downloads."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            stub.seen.append(("GET", self.path, self.headers.get("Authorization")))
            if self.path == f"/3.0/batches/{BATCH_ID}":
                self._send(200, orjson.dumps(stub.batch()), "application/json; charset=utf-8")
            elif self.path.startswith("/signed/"):
                if self.headers.get("Authorization"):
                    # As S3 does: a presigned URL must not also carry other credentials.
                    self._send(400, b"<Error>InvalidArgument</Error>", "application/xml")
                    return
                self._send_archive()
            else:
                self._send(404, b"{}", "application/problem+json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _send_archive(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            if stub.download_content_encoding:
                self.send_header("Content-Encoding", stub.download_content_encoding)
            if isinstance(stub.archive, bytes):
                self.send_header("Content-Length", str(len(stub.archive)))
                self.end_headers()
                self.wfile.write(stub.archive)
                return
            self.send_header("Content-Length", str(stub.archive.stat().st_size))
            self.end_headers()
            with stub.archive.open("rb") as handle:
                while chunk := handle.read(256 * 1024):
                    self.wfile.write(chunk)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    stub.base_url = f"http://{host}:{port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
