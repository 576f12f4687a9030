"""register() and the help of every command (no server needed)."""

from __future__ import annotations

import click

from conveyor.client.cli import batch, members, register, webhooks
from conveyor.client.cli_lists import lists
from tests.client.support import invoke


def test_register_adds_the_four_groups() -> None:
    group = click.Group("conveyor")
    register(group)
    assert group.commands == {
        "batch": batch,
        "members": members,
        "webhooks": webhooks,
        "lists": lists,
    }


def test_every_command_has_help_with_the_connection_options() -> None:
    commands = {
        "batch": [
            "submit",
            "wait",
            "status",
            "list",
            "results",
            "cancel",
            "delete",
            "ops",
            "retry",
            "watch",
        ],
        "members": ["import", "results", "sync"],
        "webhooks": ["add", "list", "rm", "deliveries"],
        "lists": ["list", "show", "create"],
    }
    for group, names in commands.items():
        listed = invoke(group, "--help").stdout.split("Commands:")[1]
        assert all(name in listed for name in names)
        for name in names:
            shown = invoke(group, name, "--help")
            assert shown.exit_code == 0, shown.output
            assert "--url" in shown.stdout and "--api-key" in shown.stdout
            assert "--mailchimp" in shown.stdout
            assert "CONVEYOR_URL" in shown.stdout and "MAILCHIMP_API_KEY" in shown.stdout
