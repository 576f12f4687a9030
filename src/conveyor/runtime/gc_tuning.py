"""The garbage collector, set for a long-running server process.

Conveyor allocates a few container objects per operation (the parser's dicts, operations,
rows, rendered members) and frees nearly all of them by reference counting; the cyclic
collector finds almost nothing. With CPython's default threshold (a young-generation pass
every 700 net allocations) the passes cost about a fifth of parsing a large batch body,
most of it re-visiting the objects the process built at start-up (modules, the ORM's
tables, the routes), which live as long as the process does.
"""

from __future__ import annotations

import gc

# Young-generation passes every 10,000 net allocations instead of 700: a pass then runs
# every few hundred operations, and what it finds is still freed within milliseconds.
YOUNG_THRESHOLD = 10_000


def tune_garbage_collector() -> None:
    """Call once the process is set up, before it serves: what exists now is never
    collected (it is moved out of the collector's generations), and passes run less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
