"""`docker run IMAGE emulate`: the image's entrypoint given `emulate`, as the container runs
it (tests/e2e/test_container.py rebuilds the image's environment where no Docker engine is)."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.e2e.server import free_port
from tests.e2e.test_container import Container, container

pytestmark = pytest.mark.e2e
__all__ = ["container"]  # the fixture, used below

KEY = "0123456789abcdef0123456789abcdef-us3"


def test_the_image_runs_the_emulator_when_given_that_command(container: Container) -> None:
    image = container.image
    # In a real container emulate listens on every interface, as serve does: it reads the
    # image's CONVEYOR_HOST (the harness here keeps to loopback).
    assert image.env["CONVEYOR_HOST"] == "0.0.0.0"
    port = free_port()
    process = container.run_as_user(
        [*image.entrypoint, "emulate"], port, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url == f"http://127.0.0.1:{port}/3.0"
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/ping", auth=("x", KEY)).status_code == 200
            controls = url.removesuffix("/3.0") + "/_conveyor/requests"
            assert client.get(controls).json()["total_items"] == 1
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    # The emulator's data was temporary: the volume got nothing.
    volume = container.path(image.volumes[0])
    assert not (volume / "conveyor.db").exists()
