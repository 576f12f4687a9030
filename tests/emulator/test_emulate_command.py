"""`conveyor emulate` as a real process: the URL on stdout, any key, the controls, a fresh
temporary data dir that goes with it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.server import child_env

CONVEYOR = str(Path(sys.executable).parent / "conveyor")
KEY = "abcdefabcdefabcdefabcdefabcdef12-us19"


def test_emulate_prints_its_url_takes_any_key_and_leaves_nothing_behind(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [CONVEYOR, "emulate", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env({"TMPDIR": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}),
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/3\.0", url), url
        scratch = list(tmp_path.glob("conveyor-emulate-*"))
        # Seeded from the template the migrations made, in the cache folder.
        assert len(list((tmp_path / "cache" / "conveyor").glob("emulate-*.db"))) == 1
        assert len(scratch) == 1 and (scratch[0] / "conveyor.db").exists()
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/ping", auth=("x", KEY)).json() == {
                "health_status": "Everything's Chimpy!"
            }
            assert client.get("/ping", auth=("x", "nope")).status_code == 401
            journal = client.get(url.removesuffix("/3.0") + "/_conveyor/requests").json()
            assert [e["status"] for e in journal["requests"]] == [200, 401]
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    assert "any key" in errors
    assert list(tmp_path.glob("conveyor-emulate-*")) == []


def test_emulate_keeps_a_data_dir_it_is_given(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [CONVEYOR, "emulate", "--port", "0", "--data-dir", str(tmp_path / "kept")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env({"XDG_CACHE_HOME": str(tmp_path / "cache")}),
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert httpx.get(f"{url}/ping", auth=("x", KEY), timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert (tmp_path / "kept" / "conveyor.db").exists()
