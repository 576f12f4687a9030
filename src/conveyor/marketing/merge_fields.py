"""Merge fields of a list."""

from __future__ import annotations

import re
from typing import Any

from conveyor.domain import problems
from conveyor.domain.links import schema_url
from conveyor.domain.problems import FieldError
from conveyor.marketing.common import link, paging, query_bool, validate
from conveyor.marketing.lists import find_list
from conveyor.marketing.routing import Call, Reply, RouteTable
from conveyor.marketing.schemas import MergeFieldCreate, MergeFieldPatch

routes = RouteTable()

_TAG = re.compile(r"[A-Z0-9_]{1,10}")


@routes.route("GET", "/lists/{list_id}/merge-fields")
def list_merge_fields(call: Call) -> Reply:
    ref = find_list(call)
    count, offset = paging(call.query)
    kind = call.query.get("type") or None
    rows, total = call.stores.merge_fields.page(
        call.conn,
        ref.pk,
        count,
        offset,
        type=None if kind is None else str(kind),
        required=query_bool(call.query, "required"),
    )
    root = call.api_root
    href = f"{root}/lists/{ref.list_id}/merge-fields"
    return Reply(
        200,
        {
            "merge_fields": [_render(root, ref.list_id, row) for row in rows],
            "list_id": ref.list_id,
            "total_items": total,
            "_links": [
                link(
                    "self",
                    href,
                    "GET",
                    schema_url(root, "Definitions/Lists/MergeFields/CollectionResponse"),
                ),
                link("parent", f"{root}/lists/{ref.list_id}", "GET"),
                link(
                    "create",
                    href,
                    "POST",
                    schema_url(root, "Definitions/Lists/MergeFields/Response"),
                    schema_url(root, "Definitions/Lists/MergeFields/POST"),
                ),
            ],
        },
    )


@routes.route("POST", "/lists/{list_id}/merge-fields")
def create_merge_field(call: Call) -> Reply:
    body = validate(MergeFieldCreate, call.json_object())
    ref = find_list(call)
    merge_id = call.stores.merge_fields.next_merge_id(call.conn, ref.pk)
    tag = (body.tag or _tag_from_name(body.name, merge_id)).upper()
    if not _TAG.fullmatch(tag):
        raise problems.invalid_resource(
            [FieldError("tag", "Merge tags may hold up to 10 letters, digits or underscores.")]
        )
    _ensure_tag_free(call, ref.pk, tag, None)
    data = body.model_dump(exclude={"tag"}, exclude_none=True)
    data.setdefault("display_order", merge_id + 1)
    data["options"] = body.options.model_dump(exclude_none=True) if body.options else {}
    call.stores.lists.forget(call.conn)
    call.stores.merge_fields.insert(call.conn, ref.pk, merge_id, tag, data)
    return Reply(200, _get(call, ref.pk, ref.list_id, merge_id))


@routes.route("GET", "/lists/{list_id}/merge-fields/{merge_id}")
def get_merge_field(call: Call) -> Reply:
    ref = find_list(call)
    return Reply(200, _get(call, ref.pk, ref.list_id, _merge_id(call)))


@routes.route("PATCH", "/lists/{list_id}/merge-fields/{merge_id}")
def update_merge_field(call: Call) -> Reply:
    body = validate(MergeFieldPatch, call.json_object())
    ref = find_list(call)
    merge_id = _merge_id(call)
    row = _row(call, ref.pk, merge_id)
    data = dict(row.data)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    tag = row.tag
    if "tag" in changes:
        tag = changes.pop("tag").upper()
        if not _TAG.fullmatch(tag):
            raise problems.invalid_resource(
                [FieldError("tag", "Merge tags may hold up to 10 letters, digits or underscores.")]
            )
        _ensure_tag_free(call, ref.pk, tag, merge_id)
    if "options" in changes:
        changes["options"] = {**data.get("options", {}), **changes["options"]}
    data.update(changes)
    call.stores.lists.forget(call.conn)
    call.stores.merge_fields.update(call.conn, ref.pk, merge_id, tag, data)
    if tag != row.tag:
        call.stores.merge_fields.rename_member_values(call.conn, ref.pk, row.tag, tag)
    return Reply(200, _get(call, ref.pk, ref.list_id, merge_id))


@routes.route("DELETE", "/lists/{list_id}/merge-fields/{merge_id}")
def delete_merge_field(call: Call) -> Reply:
    ref = find_list(call)
    merge_id = _merge_id(call)
    row = _row(call, ref.pk, merge_id)
    call.stores.lists.forget(call.conn)
    call.stores.merge_fields.delete(call.conn, ref.pk, merge_id)
    call.stores.merge_fields.drop_member_values(call.conn, ref.pk, row.tag)
    return Reply(204)


def _merge_id(call: Call) -> int:
    raw = call.path_params["merge_id"]
    if not raw.isdigit() or len(raw) > 9:
        raise problems.not_found()
    return int(raw)


def _row(call: Call, list_pk: int, merge_id: int) -> Any:
    row = call.stores.merge_fields.row(call.conn, list_pk, merge_id)
    if row is None:
        raise problems.not_found()
    return row


def _get(call: Call, list_pk: int, list_id: str, merge_id: int) -> dict[str, Any]:
    return _render(call.api_root, list_id, _row(call, list_pk, merge_id))


def _ensure_tag_free(call: Call, list_pk: int, tag: str, own_merge_id: int | None) -> None:
    taken = call.stores.merge_fields.merge_id_of_tag(call.conn, list_pk, tag)
    if taken is not None and taken != own_merge_id:
        raise problems.invalid_resource(
            [FieldError("tag", f'A merge field with the tag "{tag}" already exists.')]
        )


def _tag_from_name(name: str, merge_id: int) -> str:
    letters = re.sub(r"[^A-Za-z0-9]", "", name).upper()[:10]
    return letters or f"MMERGE{merge_id}"


def _render(root: str, list_id: str, row: Any) -> dict[str, Any]:
    data = row.data
    href = f"{root}/lists/{list_id}/merge-fields/{row.merge_id}"
    field_schema = schema_url(root, "Definitions/Lists/MergeFields/Response")
    return {
        "merge_id": row.merge_id,
        "tag": row.tag,
        "name": data["name"],
        "type": data["type"],
        "required": data["required"],
        "default_value": data["default_value"],
        "public": data["public"],
        "display_order": data["display_order"],
        "options": data.get("options", {}),
        "help_text": data["help_text"],
        "list_id": list_id,
        "_links": [
            link("self", href, "GET", field_schema),
            link("parent", f"{root}/lists/{list_id}/merge-fields", "GET"),
            link(
                "update",
                href,
                "PATCH",
                field_schema,
                schema_url(root, "Definitions/Lists/MergeFields/PATCH"),
            ),
            link("delete", href, "DELETE"),
        ],
    }
