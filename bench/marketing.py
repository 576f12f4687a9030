"""The Marketing API benchmarks of issue 2, side by side in one run.

    python -m bench.marketing              # everything (about 2 minutes)
    python -m bench.marketing --skip http  # only the direct call and its floors

(a) GET /3.0/ping and (b) POST /3.0/lists/{id}/members over HTTP with 10 connections (wrk,
against a real `conveyor serve`), each beside a bare uvicorn + Starlette floor; (c) member
creates through the direct route-table call beside (d) the same SQL run directly. Prints a
table and writes bench/results/marketing-<time>.json.
"""

from __future__ import annotations

import argparse

from bench import direct, over_http
from bench.report import Figure, print_table, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", nargs="*", default=[], choices=["http", "direct"])
    over_http.add_arguments(parser)
    direct.add_arguments(parser)
    args = parser.parse_args()
    figures: list[Figure] = []
    if "http" not in args.skip:
        try:
            figures += over_http.measure(over_http.load_from(args))
        except over_http.WrkMissing as exc:
            print(f"skipping the HTTP benchmarks: {exc}")
    if "direct" not in args.skip:
        figures += direct.measure(args.count, args.group, args.rounds)
    print_table(figures)
    print("\nwritten:", write_json("marketing", figures, vars(args)))


if __name__ == "__main__":
    main()
