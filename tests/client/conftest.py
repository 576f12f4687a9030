"""Fixtures of the client tests: a real `conveyor serve` and a list on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from conveyor.client import Client
from tests.conftest import LIST_BODY
from tests.e2e.server import ServerProcess


@dataclass
class Live:
    server: ServerProcess
    client: Client
    list_id: str

    @property
    def env(self) -> dict[str, str]:
        """How a user points the commands at this server: the environment variables."""
        return {"CONVEYOR_URL": self.server.base_url, "MAILCHIMP_API_KEY": self.server.key}

    def new_list(self) -> str:
        return str(self.client.request("POST", "lists", json=LIST_BODY)["id"])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One server per test module: the tests share it, each on lists or batches of its own."""
    with ServerProcess(tmp_path_factory.mktemp("server")) as server:
        client = Client(server.key, base_url=server.base_url)
        try:
            yield Live(server, client, str(client.request("POST", "lists", json=LIST_BODY)["id"]))
        finally:
            client.close()
