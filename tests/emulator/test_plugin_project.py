"""The pytest plugin as a user meets it: a project of its own, in its own pytest process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).parent.parent / "emulator_project"
README = Path(__file__).parent.parent.parent / "README.md"


def _environment(cache: Path) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "PYTEST_"))}
    return {**kept, "XDG_CACHE_HOME": str(cache)}


def test_the_emulator_project_passes_with_only_the_plugin_and_the_official_clients(
    tmp_path: Path,
) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", str(PROJECT)],
        cwd=PROJECT,
        env=_environment(tmp_path / "cache"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed" in run.stdout and "failed" not in run.stdout


def test_the_plugin_imports_nothing_heavy_until_a_test_asks_for_it() -> None:
    # pytest imports the plugin in every session where Conveyor is installed.
    probe = (
        "import sys; import conveyor.testing.plugin; "
        "heavy = {'uvicorn', 'sqlalchemy', 'starlette', 'dramatiq', 'httpx'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert run.stdout.strip() == "[]"


def test_the_readme_shows_the_example_project_file_as_it_runs() -> None:
    example = (PROJECT / "test_newsletter.py").read_text()
    assert example in README.read_text()
