"""The scheduler's lease: one holder at a time, and a dead holder's lease passes on."""

from __future__ import annotations

import threading
import time

from conveyor.runtime.distributed import Lease
from tests.contract.stack import Stack


def test_one_holder_at_a_time_and_takeover_after_expiry(stack: Stack) -> None:
    seconds = 1.0
    first = Lease(stack.services.leases, "contract-scheduler", seconds, holder="first")
    second = Lease(stack.other_process().leases, "contract-scheduler", seconds, holder="second")

    assert first.acquire()
    assert not second.acquire()
    assert first.acquire()  # renewing
    renewed_at = time.monotonic()
    assert not second.acquire()

    # The first holder dies (stops renewing): the second takes over once the lease expires,
    # and not before.
    while not second.acquire():
        assert time.monotonic() - renewed_at < seconds + 10, "the lease never expired"
        time.sleep(0.05)
    assert time.monotonic() - renewed_at >= seconds * 0.9
    assert not first.acquire()

    # A holder that stops cleanly hands over at once.
    second.release()
    assert first.acquire()
    assert not second.acquire()


def test_simultaneous_first_acquires_elect_exactly_one(stack: Stack) -> None:
    """Several schedulers starting together, before any lease row exists."""
    contenders = 6
    stores = [stack.other_process().leases for _ in range(2)]
    for round_number in range(5):
        name = f"contract-race-{round_number}"
        leases = [Lease(stores[i % 2], name, 30.0, holder=f"h{i}") for i in range(contenders)]
        barrier = threading.Barrier(contenders)
        outcomes: list[bool | BaseException] = []
        threads = [
            threading.Thread(target=_contend, args=(lease, barrier, outcomes)) for lease in leases
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes, key=repr) == [False] * (contenders - 1) + [True], outcomes


Outcome = bool | BaseException


def _contend(lease: Lease, barrier: threading.Barrier, outcomes: list[Outcome]) -> None:
    barrier.wait()
    try:
        outcomes.append(lease.acquire())
    except BaseException as exc:
        outcomes.append(exc)
