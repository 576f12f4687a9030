"""The seed walkthrough (`examples/seed_walkthrough.py`) against a real `conveyor serve`.

1,000 member adds with our own operation_ids plus three that must fail, in one batch; the
archive is downloaded with no API key and every operation_id is mapped to its member's
web_id. The test runs the example's own steps (imported) and checks each claim against the
server's member list; a second test runs the script the way a user would.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import RecordProperty
from tests.e2e.batch_support import api_client, download_archive, list_members
from tests.e2e.server import ServerProcess, child_env

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "seed_walkthrough.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seed_walkthrough", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


def test_seed_walkthrough_maps_every_operation_id(
    server: ServerProcess, record_property: RecordProperty
) -> None:
    example = load_example()
    run = example.run_seed(server.base_url, server.key)
    record_property("seed_seconds", round(run.seconds, 3))
    print(f"seed: 1,003 operations submitted, finished and downloaded in {run.seconds:.3f} s")

    batch = run.batch
    assert batch["status"] == "finished"
    assert batch["total_operations"] == batch["finished_operations"] == 1003
    assert batch["errored_operations"] == 3

    # Every operation_id appears exactly once, and nothing else does.
    expected_ids = [op["operation_id"] for op in run.operations]
    assert len(set(expected_ids)) == 1003
    assert run.id_counts == Counter(expected_ids)
    assert len(run.results) == 1003

    # Failures carry the right problem titles. Operations may run in any order, so of the
    # two adds of one address either may be the one that finds the member already there.
    pair = {"add-0000", "duplicate-of-add-0000"}
    assert set(run.failures) - pair == {"invalid-email", "already-a-member"}
    assert run.failures["invalid-email"] == "Invalid Resource"
    assert run.failures["already-a-member"] == "Member Exists"
    loser = (set(run.failures) & pair).pop()
    assert len(set(run.failures) & pair) == 1
    assert run.failures[loser] == "Member Exists"
    emails = {op["operation_id"]: json.loads(op["body"])["email_address"] for op in run.operations}
    by_id = {r["operation_id"]: r for r in run.results}
    for operation_id in ("already-a-member", loser):
        assert emails[operation_id] in by_id[operation_id]["response"]["detail"]
    assert "not-an-email" in by_id["invalid-email"]["response"]["detail"]

    # Every successful operation_id maps to the web_id the server now holds for that member.
    assert set(run.web_ids) == (set(expected_ids) - set(run.failures))
    assert len(run.web_ids) == 1000
    assert len(set(run.web_ids.values())) == 1000
    with api_client(server) as api:
        members = {m["email_address"]: m["web_id"] for m in list_members(api, run.list_id)}
    assert len(members) == 1001  # the 1,000 adds and the member added before the batch
    for operation_id, web_id in run.web_ids.items():
        assert members[emails[operation_id]] == web_id, operation_id

    # The archive is exactly Mailchimp's format, and the signed link works more than once.
    strict = download_archive(batch)
    assert Counter(entry.operation_id for entry in strict) == run.id_counts


def test_seed_walkthrough_script_runs(server: ServerProcess, tmp_path: Path) -> None:
    output = tmp_path / "mapping.json"
    command = [sys.executable, str(SCRIPT), "--url", server.base_url, "--key", server.key]
    done = subprocess.run(
        [*command, "--output", str(output)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1003 operations, 3 errored" in done.stdout
    mapping = json.loads(output.read_text())
    assert len(mapping["web_ids"]) == 1000
    assert sorted(mapping["failures"].values()) == [
        "Invalid Resource",
        "Member Exists",
        "Member Exists",
    ]
