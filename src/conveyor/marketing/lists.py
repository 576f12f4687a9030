"""Audiences (lists): create, read, update, delete."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor.domain import problems
from conveyor.domain.audience import FORGOTTEN, ListRef
from conveyor.domain.ids import subscriber_hash
from conveyor.domain.links import schema_url
from conveyor.marketing.common import (
    link,
    paging,
    query_choice,
    query_flag,
    query_time,
    validate,
)
from conveyor.marketing.routing import Call, Reply, RouteTable
from conveyor.marketing.schemas import ListCreate, ListPatch
from conveyor.storage.lists import ListQuery, MemberStats, NewMergeField

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
    """A default field as the real service creates it: the names are shown on its signup
    form, the address, phone and birthday are not."""
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
        "public": tag in ("FNAME", "LNAME"),
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
    rows, total = call.stores.lists.page(
        call.conn, call.account.pk, count, offset, _list_query(call.query)
    )
    pks = [row.pk for row in rows]
    stats = call.stores.lists.member_stats(call.conn, pks)
    field_counts = call.stores.merge_fields.count(call.conn, pks)
    with_total = query_flag(call.query, "include_total_contacts")
    root = call.api_root
    return Reply(
        200,
        {
            "lists": [
                _render(call, row, stats.get(row.pk), field_counts.get(row.pk, 0), with_total)
                for row in rows
            ],
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


def _list_query(query: Mapping[str, Any]) -> ListQuery:
    email = query.get("email")
    sort_field = query_choice(query, "sort_field", ("date_created",))
    sort_dir = query_choice(query, "sort_dir", ("ASC", "DESC"))
    # No list here has sent a campaign or has an ecommerce store: filters on those pass none.
    since_sent = query_time(query, "since_campaign_last_sent")
    before_sent = query_time(query, "before_campaign_last_sent")
    return ListQuery(
        since_date_created=query_time(query, "since_date_created"),
        before_date_created=query_time(query, "before_date_created"),
        member_hash=subscriber_hash(str(email).strip()) if email else None,
        nothing=bool(since_sent or before_sent or query_flag(query, "has_ecommerce_store")),
        descending=sort_dir == "DESC" and sort_field in (None, "date_created"),
    )


@routes.route("GET", "/lists/{list_id}")
def get_list(call: Call) -> Reply:
    with_total = query_flag(call.query, "include_total_contacts")
    return Reply(200, _get_list(call, call.path_params["list_id"], with_total=with_total))


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


def _get_list(call: Call, list_id: str, *, with_total: bool = False) -> dict[str, Any]:
    row = call.stores.lists.row(call.conn, call.account.pk, list_id)
    if row is None:
        raise problems.not_found()
    stats = call.stores.lists.member_stats(call.conn, [row.pk]).get(row.pk)
    field_count = call.stores.merge_fields.count(call.conn, [row.pk]).get(row.pk, 0)
    return _render(call, row, stats, field_count, with_total)


def _render(
    call: Call, row: Any, members: MemberStats | None, merge_field_count: int, with_total: bool
) -> dict[str, Any]:
    data = row.data
    root = call.api_root
    href = f"{root}/lists/{row.list_id}"
    members = members or MemberStats({})
    counts = members.counts
    stats: dict[str, Any] = {
        "member_count": counts.get("subscribed", 0),
        "unsubscribe_count": counts.get("unsubscribed", 0),
        "cleaned_count": counts.get("cleaned", 0),
        "member_count_since_send": counts.get("subscribed", 0),
        "unsubscribe_count_since_send": counts.get("unsubscribed", 0),
        "cleaned_count_since_send": counts.get("cleaned", 0),
        "campaign_count": 0,
        "campaign_last_sent": "",
        "merge_field_count": merge_field_count,
        "avg_sub_rate": 0,
        "avg_unsub_rate": 0,
        "target_sub_rate": 0,
        "open_rate": 0,
        "click_rate": 0,
        "last_sub_date": members.last_sub_date,
        "last_unsub_date": members.last_unsub_date,
    }
    if with_total:
        # Only when asked (`include_total_contacts`), as on the real service.
        stats["total_contacts"] = sum(n for s, n in counts.items() if s != FORGOTTEN)
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
        "stats": stats,
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
