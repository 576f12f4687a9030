"""The process fixture itself: crash, graceful stop and restart keep the data and the key."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import StartServer
from tests.e2e.server import ServerError, ServerProcess

pytestmark = pytest.mark.e2e


def list_count(server: ServerProcess) -> int:
    response = httpx.get(f"{server.api_url}/lists", auth=("x", server.key))
    response.raise_for_status()
    return int(response.json()["total_items"])


def create_list(server: ServerProcess) -> None:
    body = {
        "name": "Kept",
        "permission_reminder": "r",
        "email_type_option": False,
        "contact": {
            "company": "c",
            "address1": "a",
            "city": "c",
            "state": "s",
            "zip": "z",
            "country": "US",
        },
        "campaign_defaults": {
            "from_name": "f",
            "from_email": "f@example.org",
            "subject": "s",
            "language": "en",
        },
    }
    httpx.post(f"{server.api_url}/lists", auth=("x", server.key), json=body).raise_for_status()


def test_kill_and_restart_keep_data_port_and_key(server: ServerProcess) -> None:
    key, port, pid = server.key, server.port, server.pid
    create_list(server)

    assert server.kill() == -9
    assert not server.running
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.api_url}/ping")

    server.restart()
    assert (server.key, server.port) == (key, port)
    assert server.pid != pid
    assert list_count(server) == 1

    create_list(server)
    server.stop()
    assert not server.running
    server.restart()
    assert list_count(server) == 2


def test_restart_while_running_stops_first(server: ServerProcess) -> None:
    pid = server.pid
    server.restart()
    assert server.pid != pid
    assert list_count(server) == 0


def test_extra_env_reaches_the_server(start_server: StartServer) -> None:
    server = start_server(env={"CONVEYOR_MAX_BODY_BYTES": "100"})
    response = httpx.post(
        f"{server.api_url}/lists", auth=("x", server.key), content=b"{" + b" " * 200 + b"}"
    )
    assert response.status_code == 413


def test_a_server_that_cannot_start_is_reported(start_server: StartServer) -> None:
    with pytest.raises(ServerError, match="exited"):
        start_server(args=["--database-url", "postgresql://nobody@127.0.0.1:1/none"])
