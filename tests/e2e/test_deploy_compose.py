"""`deploy/compose.yaml` is valid and wires the scaled-out roles of issue 5.

The file is read with PyYAML and its services are checked against docs/deploy.md: two API
processes, two workers, a scheduler, PostgreSQL, Redis and an S3-compatible store, the
Conveyor settings of every role pointing at services that exist. When Docker Compose is on
PATH (`docker compose` or `docker-compose`), its own `config` must accept the file too; no
engine is needed for that.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"


def load() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())  # resolves the anchors and `<<` merges
    assert isinstance(document, dict)
    return document


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def conveyor_roles(services: dict[str, Any]) -> dict[str, list[str]]:
    """role (api, worker, scheduler) → the names of the services that run it.

    The image's entrypoint is `conveyor` (deploy/Dockerfile): a command is its arguments.
    """
    roles: dict[str, list[str]] = {}
    for name, service in services.items():
        command = command_of(service)
        if str(service.get("image", "")).startswith("conveyor:") and command:
            roles.setdefault(command[0], []).append(name)
    return roles


def service_with_image(services: dict[str, Any], *prefixes: str) -> str:
    for name, service in services.items():
        image = str(service.get("image", "")).rsplit("/", 1)[-1]
        if image.startswith(prefixes):
            return name
    raise AssertionError(f"no service with an image starting with {prefixes}")


def test_compose_file_has_every_role() -> None:
    services = load()["services"]
    roles = conveyor_roles(services)
    assert len(roles.get("api", [])) == 2, roles
    assert len(roles.get("worker", [])) == 2, roles
    assert len(roles.get("scheduler", [])) >= 1, roles
    assert "serve" not in roles  # the one-process default has no place here

    postgres = service_with_image(services, "postgres")
    redis = service_with_image(services, "redis")
    s3 = service_with_image(services, "seaweedfs", "minio", "garage", "localstack")

    # Every role shares one database, broker and blob store, reached by service name.
    for names in roles.values():
        for name in names:
            env = services[name]["environment"]
            database = urlsplit(env["CONVEYOR_DATABASE_URL"])
            assert database.scheme.startswith("postgres"), name
            assert database.hostname == postgres, name
            broker = urlsplit(env["CONVEYOR_BROKER_URL"])
            assert (broker.scheme, broker.hostname) == ("redis", redis), name
            assert env["CONVEYOR_BLOB_URL"].startswith("s3://"), name
            assert urlsplit(env["CONVEYOR_S3_ENDPOINT"]).hostname == s3, name
            # One secret for all, or download URLs signed by one API fail on the other.
            assert env["CONVEYOR_SECRET"], name
            assert set(services[name].get("depends_on", {})) >= {postgres, redis, s3}, name
    secrets = {services[n]["environment"]["CONVEYOR_SECRET"] for ns in roles.values() for n in ns}
    assert len(secrets) == 1

    # The API processes listen on all interfaces inside their containers, and each is
    # published on its own host port.
    published: list[str] = []
    for name in roles["api"]:
        command = command_of(services[name])
        assert command[command.index("--host") + 1] == "0.0.0.0", name
        published.extend(str(port).rsplit(":", 2)[-2] for port in services[name]["ports"])
    assert len(set(published)) == len(published) == 2, published


def compose_commands() -> list[list[str]]:
    commands: list[list[str]] = []
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=60, check=False
        )
        if probe.returncode == 0:
            commands.append([docker, "compose"])
    legacy = shutil.which("docker-compose")
    if legacy is not None:
        commands.append([legacy])
    return commands


def test_compose_config_accepts_the_file() -> None:
    commands = compose_commands()
    if not commands:
        pytest.skip(
            "neither `docker compose` nor `docker-compose` is on PATH: only the PyYAML checks "
            "ran (this is a tool, not a service; install docker-compose to check the file)"
        )
    for command in commands:
        done = subprocess.run(
            [*command, "-f", str(COMPOSE), "config", "--quiet"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{' '.join(command)} config:\n{done.stderr}"
