"""``conveyor lists``: list, create and show audiences (lists)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import orjson
from rich.table import Table

from conveyor.client.cli_common import (
    Target,
    connection_options,
    echo_json,
    json_option,
    plural,
    reported,
    stderr,
    stdout_console,
)


@click.group()
def lists() -> None:
    """List, create and show audiences (lists)."""


@lists.command("list")
@click.option("--count", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@json_option("One list per line, as the API returns it")
@connection_options
def lists_list(count: int, offset: int, as_json: bool, target: Target) -> None:
    """List the audiences: id, name, member count."""
    with reported(), target.client() as client:
        data = client.request("GET", "lists", params={"count": count, "offset": offset})
    found = data.get("lists") or []
    if as_json:
        for item in found:
            echo_json(item)
        return
    table = Table("id", "name", "members", "created")
    for item in found:
        stats = item.get("stats") or {}
        table.add_row(
            str(item.get("id", "")),
            str(item.get("name", "")),
            str(stats.get("member_count", "")),
            str(item.get("date_created", "")),
        )
    stdout_console().print(table)
    stderr().print(f"{len(found)} shown of {plural(int(data.get('total_items') or 0), 'list')}")


@lists.command("show")
@click.argument("list_id")
@json_option("Print the list as the API returns it")
@connection_options
def lists_show(list_id: str, as_json: bool, target: Target) -> None:
    """Show one audience, with its merge fields."""
    with reported(), target.client() as client:
        found = client.request("GET", f"lists/{quote(list_id, safe='')}")
        fields = client.request(
            "GET", f"lists/{quote(list_id, safe='')}/merge-fields", params={"count": 1000}
        )
    if as_json:
        echo_json(found, indent=True)
        return
    stats = found.get("stats") or {}
    defaults = found.get("campaign_defaults") or {}
    for name, value in (
        ("id", found.get("id")),
        ("name", found.get("name")),
        ("members", stats.get("member_count")),
        ("unsubscribed", stats.get("unsubscribe_count")),
        ("from", f"{defaults.get('from_name', '')} <{defaults.get('from_email', '')}>"),
        ("created", found.get("date_created")),
    ):
        click.echo(f"{name:<14} {value}")
    tags = ", ".join(
        f"{field.get('tag')} ({field.get('name')})" for field in fields.get("merge_fields") or []
    )
    click.echo(f"{'merge fields':<14} {tags}")


@lists.command("create")
@click.argument("name", required=False)
@click.option(
    "--from-json",
    "body_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The whole POST /lists body from a JSON file (the options below then override it)",
)
@click.option("--company", help="Contact: company or organisation")
@click.option("--address1", help="Contact: street address")
@click.option("--city", help="Contact: city")
@click.option("--state", "state_", default=None, help="Contact: state or region")
@click.option("--zip", "zip_", default=None, help="Contact: postal code")
@click.option("--country", default=None, help="Contact: two-letter country code [US]")
@click.option("--from-name", help="Campaign default sender name [the company]")
@click.option("--from-email", help="Campaign default sender address")
@click.option("--subject", default=None, help="Campaign default subject")
@click.option("--language", default=None, help="Campaign default language [en]")
@click.option(
    "--permission-reminder",
    default=None,
    help="Why people get these emails [You signed up on our website.]",
)
@json_option("Print the new list as JSON instead of its id")
@connection_options
def lists_create(
    name: str | None,
    body_file: Path | None,
    company: str | None,
    address1: str | None,
    city: str | None,
    state_: str | None,
    zip_: str | None,
    country: str | None,
    from_name: str | None,
    from_email: str | None,
    subject: str | None,
    language: str | None,
    permission_reminder: str | None,
    as_json: bool,
    target: Target,
) -> None:
    """Create an audience called NAME; print its id.

    Mailchimp requires a contact address (--company, --address1, --city, --country) and a
    sender (--from-email); --from-json FILE gives the whole body instead.
    """
    body: dict[str, Any] = {}
    if body_file is not None:
        try:
            loaded = orjson.loads(body_file.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--from-json") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter("must hold a JSON object", param_hint="--from-json")
        body = loaded
    contact: dict[str, Any] = dict(body.get("contact") or {})
    defaults: dict[str, Any] = dict(body.get("campaign_defaults") or {})
    given = {
        "company": company, "address1": address1, "city": city,
        "state": state_, "zip": zip_, "country": country,
    }  # fmt: skip
    contact.update({key: value for key, value in given.items() if value is not None})
    contact.setdefault("country", "US")
    chosen = {"from_name": from_name, "from_email": from_email, "subject": subject}
    defaults.update({key: value for key, value in chosen.items() if value is not None})
    defaults.setdefault("from_name", contact.get("company", ""))
    defaults.setdefault("subject", "")
    defaults.setdefault("language", language or "en")
    if name is not None:
        body["name"] = name
    if permission_reminder is not None:
        body["permission_reminder"] = permission_reminder
    body.setdefault("permission_reminder", "You signed up on our website.")
    body.setdefault("email_type_option", False)
    body["contact"] = contact
    body["campaign_defaults"] = defaults
    missing = [
        flag
        for flag, present in (
            ("NAME", body.get("name")),
            ("--company", contact.get("company")),
            ("--address1", contact.get("address1")),
            ("--city", contact.get("city")),
            ("--from-email", defaults.get("from_email")),
        )
        if not present
    ]
    if missing:
        raise click.UsageError(f"a new list needs {', '.join(missing)}")
    with reported(), target.client(writes=True) as client:
        created = client.request("POST", "lists", json=body)
    if as_json:
        echo_json(created, indent=True)
        return
    click.echo(created["id"])
    stderr().print(f"created list {created['id']} ({created.get('name', '')})")
