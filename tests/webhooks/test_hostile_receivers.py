"""Webhook requests against hostile receivers on loopback, sync and async side by side.

Every scenario runs `send` (worker threads) and `send_async` (event loop) at the same time
against the same receiver and checks that both end by the deadline with the same outcome.
"""

from __future__ import annotations

import functools
import gc
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from conveyor.batches.webhook_http import ANSWER_CAP_BYTES, Attempt, Outbound, send, send_async
from conveyor.domain.webhook_targets import TargetPolicy
from tests.webhooks.hostile import (
    GIB,
    Certificate,
    answer,
    endless_headers,
    giant_answer,
    hostile_receiver,
    redirect,
    self_signed_certificate,
    silent,
    tls,
    trickle,
    unaccepting_receiver,
)
from tests.webhooks.receiver import running_receiver

DEADLINE = 2.0
# Room for thread scheduling on a busy machine; the old per-read timeout let a trickling
# receiver hold a "3 s" request for 71 s, so this still tells the two apart by far.
SLACK = 0.75
POLICY = TargetPolicy()


def send_sync(
    url: str, *, outbound: Outbound | None = None, policy: TargetPolicy = POLICY, **kw: Any
) -> Attempt:
    return send(outbound or Outbound(), "POST", url, policy, content=b"a=1", **kw)


def send_on_loop(
    url: str, *, outbound: Outbound | None = None, policy: TargetPolicy = POLICY, **kw: Any
) -> Attempt:
    request = functools.partial(
        send_async, outbound or Outbound(), "POST", url, policy, content=b"a=1", **kw
    )
    return anyio.run(request)


def both(url: str, **kw: Any) -> tuple[Attempt, Attempt]:
    """The sync and the async attempt, made at the same time; each must end by the deadline."""
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(variant, url, timeout=DEADLINE, **kw) for variant in VARIANTS]
        attempts = (futures[0].result(), futures[1].result())
    for attempt in attempts:
        assert attempt.duration_ms <= (DEADLINE + SLACK) * 1000, attempt
    return attempts


VARIANTS: tuple[Callable[..., Attempt], ...] = (send_sync, send_on_loop)


def same_outcome(attempts: tuple[Attempt, Attempt]) -> Attempt:
    sync, on_loop = attempts
    assert (sync.status_code, sync.error) == (on_loop.status_code, on_loop.error), attempts
    return sync


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_a_1_gib_answer_is_read_no_further_than_the_cap(framing: str) -> None:
    with hostile_receiver(giant_answer(GIB, framing)) as receiver:
        attempt = same_outcome(both(receiver.url()))
        assert attempt.status_code == 200 and attempt.ok
    # The receiver could push only what loopback socket buffers hold before we hung up.
    assert receiver.bytes_sent < 64 * 1024 * 1024


@pytest.mark.parametrize("variant", VARIANTS, ids=["sync", "async"])
def test_memory_stays_flat_while_a_1_gib_answer_is_served(
    variant: Callable[..., Attempt],
) -> None:
    process = psutil.Process()
    peak = 0

    with hostile_receiver(giant_answer(GIB)) as receiver:
        variant(receiver.url(), timeout=DEADLINE)  # warm up imports and first-use caches
        gc.collect()
        baseline = process.memory_info().rss
        peak = baseline
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, process.memory_info().rss)
                done.wait(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            attempts = [variant(receiver.url(), timeout=DEADLINE) for _ in range(5)]
        finally:
            done.set()
            sampler.join()
    assert all(attempt.status_code == 200 for attempt in attempts), attempts
    assert receiver.bytes_sent >= 6 * ANSWER_CAP_BYTES  # it did start serving each time
    assert peak - baseline < 50 * 1024 * 1024, (baseline, peak)


def test_headers_trickled_a_byte_every_half_second_end_at_the_deadline() -> None:
    status_line = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    with hostile_receiver(trickle(status_line * 10, interval=0.5)) as receiver:
        attempt = same_outcome(both(receiver.url()))
    assert attempt.status_code is None
    assert attempt.error == f"No answer within {DEADLINE:g} seconds."
    assert attempt.duration_ms >= DEADLINE * 1000 - 50


def test_a_trickled_body_keeps_the_status_and_ends_at_the_deadline() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    with hostile_receiver(trickle(b"x" * 1000, interval=0.5, after_head=head)) as receiver:
        attempt = same_outcome(both(receiver.url()))
    # The status and headers are the answer; the body is only drained, within the deadline.
    assert attempt.status_code == 200 and attempt.error is None


def test_headers_that_never_end_are_cut_off() -> None:
    with hostile_receiver(endless_headers) as receiver:
        attempt = same_outcome(both(receiver.url()))
    assert attempt.status_code is None
    assert attempt.error is not None and attempt.error.startswith("RemoteProtocolError")
    assert receiver.bytes_sent < 16 * 1024 * 1024


def test_a_redirect_is_reported_not_followed() -> None:
    with running_receiver() as elsewhere, hostile_receiver(redirect(elsewhere.url)) as receiver:
        attempt = same_outcome(both(receiver.url()))
        assert elsewhere.requests == []
    assert attempt.status_code == 302 and not attempt.ok
    assert attempt.error is not None and "do not follow redirects" in attempt.error


def test_a_receiver_that_never_answers_ends_at_the_deadline() -> None:
    with hostile_receiver(silent) as receiver:
        attempt = same_outcome(both(receiver.url()))
    assert attempt.error == f"No answer within {DEADLINE:g} seconds."


@pytest.mark.parametrize("fill_backlog", [True, False], ids=["backlog-full", "never-accepted"])
def test_slow_accept_ends_at_the_deadline(fill_backlog: bool) -> None:
    with unaccepting_receiver(fill_backlog=fill_backlog) as receiver:
        attempt = same_outcome(both(receiver.url()))
    assert attempt.status_code is None
    assert attempt.error == f"No answer within {DEADLINE:g} seconds."


def test_a_name_that_takes_for_ever_to_resolve_ends_at_the_deadline() -> None:
    release = threading.Event()

    def hanging_resolver(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        release.wait(30)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    try:
        attempt = same_outcome(
            both("http://slow.example/hook", outbound=Outbound(resolver=hanging_resolver))
        )
    finally:
        release.set()
    assert attempt.error == f"No answer within {DEADLINE:g} seconds."


def test_a_short_answer_is_read_to_its_end() -> None:
    with hostile_receiver(answer(201, b"ok" * 100)) as receiver:
        attempt = same_outcome(both(receiver.url()))
    assert attempt.status_code == 201 and attempt.ok and attempt.error is None


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "0177.0.0.1", "127.1"])
def test_refused_by_policy_before_connecting(host: str) -> None:
    strict = TargetPolicy(allow_loopback=False, allow_private=False)
    with hostile_receiver(answer()) as receiver:
        attempt = same_outcome(both(f"http://{host}:{receiver.port}/hook", policy=strict))
        assert receiver.connections == 0
    assert attempt.status_code is None
    assert attempt.error is not None
    assert "127.0.0.1 is in 127.0.0.0/8 (loopback" in attempt.error
    assert "refuses loopback" in attempt.error


def test_the_host_header_names_the_url_host_and_ipv6_is_bracketed() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    with hostile_receiver(answer(), host="::1") as receiver:
        same_outcome(both(receiver.url()))
        heads = list(receiver.request_heads)
    assert len(heads) == 2
    for head in heads:
        assert f"\r\nHost: [::1]:{receiver.port}\r\n".encode() in head
        assert b"\r\nConnection: close\r\n" in head
        assert b"\r\nContent-Length: 3\r\n" in head


def test_the_deadline_covers_the_whole_request_not_each_read() -> None:
    # A byte every 0.5 s keeps every single read far inside any per-read timeout.
    status_line = b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20
    with hostile_receiver(trickle(status_line, interval=0.5)) as receiver:
        started = time.monotonic()
        attempts = both(receiver.url())
        elapsed = time.monotonic() - started
    assert all(a.error == f"No answer within {DEADLINE:g} seconds." for a in attempts)
    assert elapsed <= DEADLINE + SLACK


# --- names, and TLS ---------------------------------------------------------------------


def resolving_to(*addresses: str) -> Callable[..., list[tuple[Any, ...]]]:
    """Stands in for getaddrinfo: test names cannot be added to the machine's resolver."""

    def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return resolve


@pytest.mark.parametrize(
    "addresses", [("127.0.0.1",), ("93.184.216.34", "169.254.169.254")], ids=["loopback", "mixed"]
)
def test_a_name_resolving_to_a_refused_address_is_not_connected(addresses: tuple[str]) -> None:
    strict = TargetPolicy(allow_loopback=False, allow_private=False)
    outbound = Outbound(resolver=resolving_to(*addresses))
    with hostile_receiver(answer()) as receiver:
        url = f"http://webhook.test:{receiver.port}/hook"
        attempt = same_outcome(both(url, outbound=outbound, policy=strict))
        assert receiver.connections == 0
    assert attempt.error is not None
    assert attempt.error.startswith("The host webhook.test resolves to a refused address")


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return self_signed_certificate(tmp_path, "webhook.test")


def test_https_connects_to_the_checked_address_and_verifies_the_url_name(
    certificate: Certificate,
) -> None:
    names_seen: list[str] = []
    outbound = Outbound(
        resolver=resolving_to("127.0.0.1"), ssl_context=certificate.client_context()
    )
    behaviour = tls(answer(204), certificate.server_context(), names_seen)
    with hostile_receiver(behaviour) as receiver:
        url = f"https://webhook.test:{receiver.port}/hook"
        attempt = same_outcome(both(url, outbound=outbound))
        heads = list(receiver.request_heads)
    assert attempt.status_code == 204
    assert names_seen == ["webhook.test", "webhook.test"]
    assert all(f"\r\nHost: webhook.test:{receiver.port}\r\n".encode() in h for h in heads)


def test_https_refuses_a_certificate_for_another_name(tmp_path: Path) -> None:
    other = self_signed_certificate(tmp_path, "other.test")
    outbound = Outbound(resolver=resolving_to("127.0.0.1"), ssl_context=other.client_context())
    with hostile_receiver(tls(answer(), other.server_context(), [])) as receiver:
        attempt = same_outcome(both(f"https://webhook.test:{receiver.port}/", outbound=outbound))
        assert receiver.request_heads == []
    assert attempt.error is not None and attempt.error.startswith("ConnectError")
    assert "CERTIFICATE_VERIFY_FAILED" in attempt.error


def test_a_tls_handshake_that_never_comes_ends_at_the_deadline(certificate: Certificate) -> None:
    outbound = Outbound(ssl_context=certificate.client_context())
    with hostile_receiver(silent) as receiver:
        url = f"https://127.0.0.1:{receiver.port}/hook"
        attempt = same_outcome(both(url, outbound=outbound))
    assert attempt.error == f"No answer within {DEADLINE:g} seconds."


def test_a_1_gib_answer_over_tls_is_read_no_further_than_the_cap(
    certificate: Certificate,
) -> None:
    outbound = Outbound(
        resolver=resolving_to("127.0.0.1"), ssl_context=certificate.client_context()
    )
    behaviour = tls(giant_answer(GIB), certificate.server_context(), [])
    with hostile_receiver(behaviour) as receiver:
        attempt = same_outcome(both(f"https://webhook.test:{receiver.port}/", outbound=outbound))
    assert attempt.status_code == 200
    assert receiver.bytes_sent < 64 * 1024 * 1024
