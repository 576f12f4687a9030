"""`python -m bench`: every benchmark, one module after the other (`make bench`).

python -m bench                 # every module: marketing, batches, ingest, fairness, webhooks,
                                # steer, scale (PostgreSQL, Redis), sync, emulator
python -m bench marketing       # one of them; arguments after it go to that module
"""

from __future__ import annotations

import subprocess
import sys

MODULES = (
    "marketing",
    "batches",
    "ingest",
    "fairness",
    "webhooks",
    "steer",
    "scale",
    "sync",
    "emulator",
    "metrics",
    "dashboard",
)


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] in MODULES:
        chosen, extra = [args[0]], args[1:]
    elif args:
        raise SystemExit(f"usage: python -m bench [{'|'.join(MODULES)} [ARGS...]]")
    else:
        chosen, extra = list(MODULES), []
    failed = 0
    for name in chosen:
        print(f"\n=== bench.{name}", flush=True)
        done = subprocess.run([sys.executable, "-m", f"bench.{name}", *extra], check=False)
        failed += done.returncode != 0
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
