"""What a client can send a real `conveyor serve` below the API: requests the HTTP parser
refuses, a head that never ends, upgrades, HEAD, and connections dropped half-way. Each gets
a problem document or an ordinary answer, the server's memory stays put, and nothing leaves
a traceback in the log."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psutil
import pytest

from conveyor.http.wire import HEAD_LIMIT_BYTES
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

PROBLEM_TYPE = "application/problem+json; charset=utf-8"


@contextmanager
def connection(server: ServerProcess) -> Iterator[socket.socket]:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        yield sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer with a Content-Length, read off a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def exchange(server: ServerProcess, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with connection(server) as sock:
        sock.sendall(raw)
        return read_answer(sock)


def assert_problem(answer: tuple[int, dict[str, str], bytes], status: int) -> dict[str, object]:
    code, headers, body = answer
    assert code == status, answer
    assert headers["content-type"] == PROBLEM_TYPE, headers
    document = json.loads(body)
    assert set(document) == {"type", "title", "status", "detail", "instance"}, document
    assert document["status"] == status
    assert document["instance"] == headers["x-request-id"]
    return dict(document)


def auth_line(server: ServerProcess) -> str:
    token = base64.b64encode(f"x:{server.key}".encode()).decode()
    return f"Authorization: Basic {token}\r\n"


NOT_HTTP = {
    "unknown method": b"FETCH /3.0/ping HTTP/1.1\r\nHost: x\r\n\r\n",
    "control byte in the URL": b"GET /3.0/pi\x01ng HTTP/1.1\r\nHost: x\r\n\r\n",
    "non-ASCII in the URL": b"GET /3.0/p\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
    "space in a header name": b"GET /3.0/ping HTTP/1.1\r\nHo st: x\r\n\r\n",
    "bad chunk size": b"POST /3.0/lists HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
    b"\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "two Content-Lengths": b"POST /3.0/lists HTTP/1.1\r\nHost: x\r\nContent-Length: 3"
    b"\r\nContent-Length: 4\r\n\r\nabcd",
    "Content-Length and chunked": b"POST /3.0/lists HTTP/1.1\r\nHost: x\r\nContent-Length: 3"
    b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "a TLS hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}


def test_what_the_parser_refuses_is_a_400_problem(server: ServerProcess) -> None:
    for name, raw in NOT_HTTP.items():
        problem = assert_problem(exchange(server, raw), 400)
        assert problem["title"] == "Bad Request", name
    # The server is still there, and said nothing worse than a warning per request.
    assert httpx.get(f"{server.api_url}/ping", auth=("x", server.key)).status_code == 200
    assert "Traceback" not in server.stderr_text()


def test_a_head_that_never_ends_is_a_431_and_memory_stays_flat(server: ServerProcess) -> None:
    process = psutil.Process(server.pid)
    baseline = process.memory_info().rss
    line = b"X-Filler: " + b"a" * 8000 + b"\r\n"
    sent = 0
    with connection(server) as sock:
        sock.sendall(b"GET /3.0/ping HTTP/1.1\r\nHost: x\r\n")
        try:
            while sent < 256 * 1024 * 1024:  # far past the limit: the server stops reading
                sock.sendall(line)
                sent += len(line)
        except OSError:
            pass  # closed on us: expected once the limit is passed
        try:
            answer = read_answer(sock)
        except OSError:
            answer = None  # a reset can overtake the answer when unread bytes remain
    if answer is not None and answer[0]:
        assert_problem(answer, 431)
    assert sent < 64 * HEAD_LIMIT_BYTES, f"the server read {sent} bytes of head"
    assert process.memory_info().rss - baseline < 50 * 1024 * 1024
    # A head just under the limit is read.
    filler = "a" * (HEAD_LIMIT_BYTES - 2048)
    raw = f"GET /3.0/ping HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n{auth_line(server)}\r\n"
    assert exchange(server, raw.encode())[0] == 200
    # Sent in one go, a head over the limit gets its answer before the close.
    raw = f"GET /3.0/ping HTTP/1.1\r\nHost: x\r\nX-Filler: {'a' * HEAD_LIMIT_BYTES}\r\n\r\n"
    assert_problem(exchange(server, raw.encode()), 431)


def test_head_and_upgrades_are_ordinary_requests(server: ServerProcess) -> None:
    auth = auth_line(server)
    status, headers, body = exchange(
        server, f"HEAD /3.0/ping HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n".encode()
    )
    assert (status, body) == (200, b"")
    assert headers["content-length"] == "40"
    for upgrade in (
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQ\r\n",
    ):
        raw = f"GET /3.0/ping HTTP/1.1\r\nHost: x\r\n{upgrade}{auth}\r\n".encode()
        status, headers, body = exchange(server, raw)
        assert status == 200 and json.loads(body) == {"health_status": "Everything's Chimpy!"}
        raw = f"GET /3.0/ping HTTP/1.1\r\nHost: x\r\n{upgrade}\r\n".encode()
        assert_problem(exchange(server, raw), 401)


def test_clients_that_hang_up_half_way_leave_no_traceback(server: ServerProcess) -> None:
    auth = auth_line(server)
    operations = json.dumps({"operations": [{"method": "GET", "path": "/ping"}] * 30_000})
    body = operations.encode()
    post = "POST {path} HTTP/1.1\r\nHost: x\r\n" + auth + "{extra}\r\n"
    hang_ups = [
        # A batch cut off at several points of its body, by length and chunked.
        *(
            post.format(path="/3.0/batches", extra=f"Content-Length: {len(body)}\r\n").encode()
            + body[: int(len(body) * fraction)]
            for fraction in (0.0, 0.1, 0.5, 0.99)
        ),
        post.format(path="/3.0/batches", extra="Transfer-Encoding: chunked\r\n").encode()
        + b"%x\r\n" % 100_000
        + body[:50_000],
        post.format(path="/3.0/lists", extra="Content-Length: 1000\r\n").encode() + b'{"na',
        post.format(path="/3.0/batch-webhooks", extra="Content-Length: 100\r\n").encode(),
        post.format(
            path="/3.0/lists", extra="Expect: 100-continue\r\nContent-Length: 9\r\n"
        ).encode(),
        f"GET /3.0/lists?count=1000 HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode(),
    ]
    for raw in hang_ups:
        with connection(server) as sock:
            sock.sendall(raw)
            time.sleep(0.2)  # let the server start on it: the hang-up must land mid-request
            # SO_LINGER 0: a reset, the rudest way to go.
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
    # A finished batch's archive, dropped after its first bytes.
    client = server.owned(httpx.Client(base_url=server.api_url, auth=("x", server.key), timeout=30))
    batch = client.post("/batches", content=body).json()
    deadline = time.monotonic() + 60
    while (status := client.get(f"/batches/{batch['id']}").json())["status"] != "finished":
        assert time.monotonic() < deadline, status
        time.sleep(0.2)  # polling a real server's batch status
    with socket.create_connection((server.host, server.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        url = httpx.URL(status["response_body_url"])
        sock.sendall(f"GET {url.raw_path.decode()} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
    assert client.get("/ping").status_code == 200
    client.close()
    assert "Traceback" not in server.stderr_text(), server.stderr_text()[-3000:]
