"""The HTTP/1.1 wire, below the ASGI app: uvicorn's httptools protocol with two changes.

What the parser refuses (an unknown method, a byte not allowed in the URL or a header, a bad
chunk, conflicting lengths, anything that is not HTTP/1.1) never reaches the app; uvicorn
answers it with a plain-text 400. Here that answer is a problem document like every other.

And a request's head (request line and headers) is capped: httptools keeps every header in
memory until the head ends, with no limit of its own, so a client could grow the process by
gigabytes without a key. Past `HEAD_LIMIT_BYTES` the connection gets a 431 problem and is
closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from conveyor.domain.problems import PROBLEM_CONTENT_TYPE, Problem
from conveyor.http.gate import new_request_id

log = logging.getLogger("conveyor.http")

# Browsers send a few KiB; nginx refuses heads over 32 KiB by default, Node over 16 KiB.
HEAD_LIMIT_BYTES = 64 * 1024

NOT_HTTP = Problem(
    400,
    "Bad Request",
    "The request is not valid HTTP/1.1 (an unknown method, a character not allowed in the "
    "URL or a header, a malformed chunk, or conflicting lengths) and was not read.",
)
HEAD_TOO_LARGE = Problem(
    431,
    "Request Header Fields Too Large",
    f"The request line and headers exceed {HEAD_LIMIT_BYTES // 1024} KiB.",
)


class HeadTooLarge(Exception):
    """Raised from a parser callback: the parser stops, and the answer is a 431."""


class WireProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering in problem documents and capping the head."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head = True
        self._head_bytes = 0  # bytes received since the head began: what memory holds
        self._head_size = 0  # the parsed request line and headers
        self._head_too_large = False

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # A head the parser has not finished (one endless header, say) is only bytes held in
        # its buffer: refused once they pass the limit, checked after each read.
        too_large = self._in_head and self._head_bytes > HEAD_LIMIT_BYTES
        if too_large and not self.transport.is_closing():
            self._head_too_large = True
            self.send_400_response("")

    def on_message_begin(self) -> None:
        self._head_size = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._grow_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def _grow_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > HEAD_LIMIT_BYTES:
            self._head_too_large = True
            raise HeadTooLarge

    def send_400_response(self, msg: str) -> None:
        """What uvicorn calls when the parser refuses the input (or a callback stopped it)."""
        if self._head_too_large:
            log.warning("refused a request whose head exceeds %d bytes", HEAD_LIMIT_BYTES)
            self._answer_and_close(HEAD_TOO_LARGE)
        else:
            self._answer_and_close(NOT_HTTP)

    def _unsupported_upgrade_warning(self) -> None:
        # An Upgrade this server does not speak (WebSocket, h2c) is served as plain HTTP;
        # uvicorn's warning would suggest installing a WebSocket library.
        log.debug("ignored an Upgrade header")

    def _answer_and_close(self, problem: Problem) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            # Half an answer is on the wire already: a second status line would corrupt it.
            self.transport.close()
            return
        request_id = new_request_id()
        body = orjson.dumps(problem.to_document(request_id))
        headers: list[tuple[bytes, bytes]] = [
            *self.server_state.default_headers,
            (b"content-type", PROBLEM_CONTENT_TYPE.encode("ascii")),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"x-request-id", request_id.encode("ascii")),
            (b"connection", b"close"),
        ]
        head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        self.transport.write(STATUS_LINE[problem.status] + head + b"\r\n" + body)
        self.transport.close()


def uvicorn_options() -> dict[str, Any]:
    """What `uvicorn.Config` needs to serve Conveyor on this wire."""
    return {"http": WireProtocol, "ws": "none"}
