"""The seed walkthrough: 1,000 member adds in one batch, and every operation_id mapped back.

    python examples/seed_walkthrough.py --url http://127.0.0.1:8000 --key KEY

Against a running Conveyor (or any Mailchimp-compatible server) this:

1. creates a list (or uses `--list-id`) and adds one member directly, so that the batch
   contains one address that is already there;
2. submits one batch: 1,000 member adds, each with our own `operation_id`, plus three that
   must fail (an invalid email, the address added in step 1, and a second add of the
   address of `add-0000` in the same batch);
3. polls the batch until it is `finished`;
4. downloads the results archive from `response_body_url` with NO API key (the URL is
   signed; it is the credential);
5. reads every `.json` file in the archive and maps each `operation_id` to the member's
   `web_id`, or to the problem title when the operation failed.

Only `httpx` and the standard library are needed. `--output FILE` writes the mapping as JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import secrets
import sys
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ADDS = 1_000
LIST_BODY: dict[str, Any] = {
    "name": "Seed walkthrough",
    "permission_reminder": "You signed up on our site.",
    "email_type_option": False,
    "contact": {
        "company": "Acme",
        "address1": "1 Main St",
        "city": "Springfield",
        "state": "IL",
        "zip": "62701",
        "country": "US",
    },
    "campaign_defaults": {
        "from_name": "Acme",
        "from_email": "news@acme.org",
        "subject": "News",
        "language": "en",
    },
}


@dataclass
class SeedRun:
    """What the walkthrough saw; `web_ids` and `failures` are keyed by operation_id."""

    list_id: str
    operations: list[dict[str, Any]]
    batch: dict[str, Any]
    seconds: float  # submit → finished → archive downloaded
    results: list[dict[str, Any]]  # every archive entry, response parsed
    web_ids: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # operation_id → problem title
    id_counts: Counter[str] = field(default_factory=Counter)


def seed_operations(list_id: str, adds: int, run: str, existing: str) -> list[dict[str, Any]]:
    """The batch: `adds` good member adds and three that must fail.

    `run` goes into every address, so the walkthrough can be repeated on the same list.
    """
    path = f"lists/{list_id}/members"

    def add(operation_id: str, email: str) -> dict[str, Any]:
        # `body` is a JSON *string*, as in Mailchimp's own examples.
        body = json.dumps({"email_address": email, "status": "subscribed"})
        return {"method": "POST", "path": path, "operation_id": operation_id, "body": body}

    operations = [add(f"add-{i:04d}", f"seed.{run}.{i:04d}@example.org") for i in range(adds)]
    operations.append(add("invalid-email", "not-an-email"))
    operations.append(add("already-a-member", existing))
    # Operations may run in any order: one of these two adds is the Member Exists one.
    operations.append(add("duplicate-of-add-0000", f"seed.{run}.0000@example.org"))
    return operations


def wait_finished(api: httpx.Client, batch_id: str, deadline_seconds: float) -> dict[str, Any]:
    """Poll the batch status; a remote batch can only be watched, not joined."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        batch: dict[str, Any] = api.get(f"batches/{batch_id}").raise_for_status().json()
        if batch["status"] == "finished":
            return batch
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} still {batch['status']} after the deadline")
        time.sleep(0.02)


def read_archive(data: bytes) -> list[dict[str, Any]]:
    """Every result of every `.json` file; `response` parsed (it is a JSON string)."""
    results: list[dict[str, Any]] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive:
            if not (member.isfile() and member.name.endswith(".json")):
                continue
            handle = archive.extractfile(member)
            assert handle is not None
            for entry in json.load(handle):
                entry["response"] = json.loads(entry["response"]) if entry["response"] else None
                results.append(entry)
    return results


def run_seed(url: str, key: str, *, list_id: str | None = None, adds: int = ADDS) -> SeedRun:
    api_root = url.rstrip("/") + "/3.0/"
    with httpx.Client(base_url=api_root, auth=("anystring", key), timeout=60) as api:
        if list_id is None:
            list_id = api.post("lists", json=LIST_BODY).raise_for_status().json()["id"]
        run_tag = secrets.token_hex(3)
        existing = f"already.there.{run_tag}@example.org"
        member = {"email_address": existing, "status": "subscribed"}
        api.post(f"lists/{list_id}/members", json=member).raise_for_status()

        operations = seed_operations(list_id, adds, run_tag, existing)
        body = json.dumps({"operations": operations})
        started = time.perf_counter()
        submitted = api.post(
            "batches", content=body, headers={"Content-Type": "application/json"}
        ).raise_for_status()
        batch = wait_finished(api, submitted.json()["id"], deadline_seconds=120)
        # No auth here on purpose: the signed URL must work on its own.
        archive = httpx.get(batch["response_body_url"], timeout=60).raise_for_status()
        seconds = time.perf_counter() - started

    run = SeedRun(list_id, operations, batch, seconds, read_archive(archive.content))
    for result in run.results:
        operation_id = result["operation_id"]
        run.id_counts[operation_id] += 1
        if 200 <= result["status_code"] < 300:
            run.web_ids[operation_id] = result["response"]["web_id"]
        else:
            run.failures[operation_id] = result["response"]["title"]
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    parser.add_argument("--key", required=True, help="API key")
    parser.add_argument("--list-id", default=None, help="use this list instead of a new one")
    parser.add_argument("--output", type=Path, default=None, help="write the mapping as JSON")
    args = parser.parse_args(argv)

    run = run_seed(args.url, args.key, list_id=args.list_id)
    batch = run.batch
    print(
        f"batch {batch['id']}: {batch['total_operations']} operations, "
        f"{batch['errored_operations']} errored, finished and downloaded in {run.seconds:.2f} s"
    )
    print(f"{len(run.web_ids)} operation_ids mapped to a web_id, e.g.:")
    for operation_id in sorted(run.web_ids)[:3]:
        print(f"  {operation_id} -> web_id {run.web_ids[operation_id]}")
    print("failed operations:")
    for operation_id, title in sorted(run.failures.items()):
        print(f"  {operation_id}: {title}")
    repeated = sorted(oid for oid, seen in run.id_counts.items() if seen != 1)
    if repeated:
        print(f"operation_ids seen more than once: {repeated}", file=sys.stderr)
        return 1
    if args.output:
        mapping = {"web_ids": run.web_ids, "failures": run.failures}
        args.output.write_text(json.dumps(mapping, indent=2, sort_keys=True))
        print(f"mapping written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
