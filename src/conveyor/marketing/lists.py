"""Audiences (lists): create, read, update, delete."""

from __future__ import annotations

from typing import Any

from conveyor.domain import problems
from conveyor.domain.audience import FORGOTTEN, ListRef
from conveyor.marketing.common import link, paging, schema_url, validate
from conveyor.marketing.routing import Call, Reply, RouteTable
from conveyor.marketing.schemas import ListCreate, ListPatch
from conveyor.storage.lists import NewMergeField

routes = RouteTable()


def find_list(call: Call) -> ListRef:
    """The caller's list named in the path, or 404 (another account's is the same as none)."""
    ref = call.stores.lists.find(call.conn, call.account.pk, call.path_params["list_id"])
    if ref is None:
        raise problems.not_found()
    return ref


DEFAULT_MERGE_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("FNAME", "First Name", "text"),
    ("LNAME", "Last Name", "text"),
    ("ADDRESS", "Address", "address"),
    ("PHONE", "Phone Number", "phone"),
    ("BIRTHDAY", "Birthday", "birthday"),
)


def default_merge_field_data(tag: str, name: str, kind: str, order: int) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if kind == "address":
        options = {"default_country": 164}
    elif kind == "phone":
        options = {"phone_format": "none"}
    elif kind == "birthday":
        options = {"date_format": "MM/DD"}
    elif kind == "text":
        options = {"size": 25}
    return {
        "name": name,
        "type": kind,
        "required": False,
        "default_value": "",
        "public": False,
        "display_order": order,
        "options": options,
        "help_text": "",
    }


@routes.route("POST", "/lists")
def create_list(call: Call) -> Reply:
    body = validate(ListCreate, call.json_object())
    data = body.model_dump()
    data.update({"visibility": "pub", "has_welcome": False, "list_rating": 0, "modules": []})
    defaults = [
        NewMergeField(tag, default_merge_field_data(tag, name, kind, order))
        for order, (tag, name, kind) in enumerate(DEFAULT_MERGE_FIELDS, start=2)
    ]
    list_id = call.stores.lists.create(call.conn, call.account.pk, body.name, data, defaults)
    return Reply(200, _get_list(call, list_id))


@routes.route("GET", "/lists")
def list_lists(call: Call) -> Reply:
    count, offset = paging(call.query)
    rows, total = call.stores.lists.page(call.conn, call.account.pk, count, offset)
    stats = call.stores.lists.member_counts(call.conn, [row.pk for row in rows])
    root = call.api_root
    return Reply(
        200,
        {
            "lists": [_render(call, row, stats.get(row.pk, {})) for row in rows],
            "total_items": total,
            "constraints": {
                "may_create": True,
                "max_instances": 0,
                "current_total_instances": total,
            },
            "_links": [
                link(
                    "self",
                    f"{root}/lists",
                    "GET",
                    schema_url(root, "Definitions/Lists/CollectionResponse"),
                ),
                link(
                    "create",
                    f"{root}/lists",
                    "POST",
                    schema_url(root, "Definitions/Lists/Response"),
                    schema_url(root, "Definitions/Lists/POST"),
                ),
            ],
        },
    )


@routes.route("GET", "/lists/{list_id}")
def get_list(call: Call) -> Reply:
    return Reply(200, _get_list(call, call.path_params["list_id"]))


@routes.route("PATCH", "/lists/{list_id}")
def update_list(call: Call) -> Reply:
    ref = find_list(call)
    patch = validate(ListPatch, call.json_object()).model_dump(exclude_unset=True)
    data = call.stores.lists.data(call.conn, ref.pk)
    data.update({key: value for key, value in patch.items() if value is not None})
    values: dict[str, Any] = {"data": data}
    if patch.get("name"):
        values["name"] = patch["name"]
    call.stores.lists.update(call.conn, ref.pk, values)
    return Reply(200, _get_list(call, ref.list_id))


@routes.route("DELETE", "/lists/{list_id}")
def delete_list(call: Call) -> Reply:
    ref = find_list(call)
    call.stores.lists.delete(call.conn, ref.pk)
    return Reply(204)


def _get_list(call: Call, list_id: str) -> dict[str, Any]:
    row = call.stores.lists.row(call.conn, call.account.pk, list_id)
    if row is None:
        raise problems.not_found()
    counts = call.stores.lists.member_counts(call.conn, [row.pk]).get(row.pk, {})
    return _render(call, row, counts)


def _render(call: Call, row: Any, counts: dict[str, int]) -> dict[str, Any]:
    data = row.data
    root = call.api_root
    href = f"{root}/lists/{row.list_id}"
    return {
        "id": row.list_id,
        "web_id": row.pk,
        "name": row.name,
        "contact": data["contact"],
        "permission_reminder": data["permission_reminder"],
        "use_archive_bar": data["use_archive_bar"],
        "campaign_defaults": data["campaign_defaults"],
        "notify_on_subscribe": data["notify_on_subscribe"],
        "notify_on_unsubscribe": data["notify_on_unsubscribe"],
        "date_created": row.date_created,
        "list_rating": data.get("list_rating", 0),
        "email_type_option": data["email_type_option"],
        "subscribe_url_short": f"{root.removesuffix('/3.0')}/s/{row.list_id}",
        "subscribe_url_long": f"{root.removesuffix('/3.0')}/subscribe?id={row.list_id}",
        "beamer_address": f"{row.list_id}@inbound.conveyor.invalid",
        "visibility": data.get("visibility", "pub"),
        "double_optin": data["double_optin"],
        "has_welcome": data.get("has_welcome", False),
        "marketing_permissions": data["marketing_permissions"],
        "modules": data.get("modules", []),
        "stats": {
            "member_count": counts.get("subscribed", 0),
            "total_contacts": sum(n for s, n in counts.items() if s != FORGOTTEN),
            "unsubscribe_count": counts.get("unsubscribed", 0),
            "cleaned_count": counts.get("cleaned", 0),
            "member_count_since_send": counts.get("subscribed", 0),
            "unsubscribe_count_since_send": counts.get("unsubscribed", 0),
            "cleaned_count_since_send": counts.get("cleaned", 0),
            "campaign_count": 0,
            "campaign_last_sent": "",
            "merge_field_count": 0,
            "avg_sub_rate": 0,
            "avg_unsub_rate": 0,
            "target_sub_rate": 0,
            "open_rate": 0,
            "click_rate": 0,
            "last_sub_date": "",
            "last_unsub_date": "",
        },
        "_links": [
            link("self", href, "GET", schema_url(root, "Definitions/Lists/Response")),
            link(
                "parent",
                f"{root}/lists",
                "GET",
                schema_url(root, "Definitions/Lists/CollectionResponse"),
            ),
            link(
                "update",
                href,
                "PATCH",
                schema_url(root, "Definitions/Lists/Response"),
                schema_url(root, "Definitions/Lists/PATCH"),
            ),
            link(
                "batch-sub-unsub-members",
                href,
                "POST",
                schema_url(root, "Definitions/Lists/BatchPOST-Response"),
                schema_url(root, "Definitions/Lists/BatchPOST"),
            ),
            link("delete", href, "DELETE"),
            link(
                "members",
                f"{href}/members",
                "GET",
                schema_url(root, "Definitions/Lists/Members/CollectionResponse"),
            ),
            link(
                "merge-fields",
                f"{href}/merge-fields",
                "GET",
                schema_url(root, "Definitions/Lists/MergeFields/CollectionResponse"),
            ),
        ],
    }
