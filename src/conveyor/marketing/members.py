"""List members, their tags, and batch subscribe (`POST /lists/{list_id}`)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from conveyor.domain import problems
from conveyor.domain.audience import FORGOTTEN, ListContext, MemberRow
from conveyor.domain.clock import now_iso
from conveyor.domain.ids import subscriber_hash
from conveyor.domain.links import member_links, schema_url
from conveyor.domain.problems import FieldError, Problem
from conveyor.marketing.common import (
    field_errors,
    link,
    paging,
    query_flag,
    validate,
)
from conveyor.marketing.member_filters import member_query
from conveyor.marketing.member_rules import apply_fields, check_email, new_member_data, revive
from conveyor.marketing.routing import Call, Reply, RouteTable
from conveyor.marketing.schemas import (
    BatchMember,
    BatchSubscribe,
    MemberCreate,
    MemberPatch,
    MemberUpsert,
    TagsPost,
)
from conveyor.storage.errors import UniqueViolation

routes = RouteTable()


def load_list(call: Call) -> ListContext:
    """The caller's list named in the path, with its merge fields, or 404."""
    ctx = call.stores.lists.context(call.conn, call.account.pk, call.path_params["list_id"])
    if ctx is None:
        raise problems.not_found()
    return ctx


def get_visible_member(call: Call, ctx: ListContext) -> MemberRow:
    """The member the path names, or 404 (a forgotten member is gone)."""
    member = call.stores.members.find(call.conn, ctx.pk, call.path_params["subscriber_hash"])
    if member is None or member.status == FORGOTTEN:
        raise problems.not_found()
    return member


def apply_tag_changes(
    call: Call, ctx: ListContext, member: MemberRow, changes: list[tuple[str, bool]]
) -> None:
    """Activate or deactivate tags by name; unknown active tags are created for the list."""
    current = {tag["name"]: tag for tag in member.data.get("tags", [])}
    for name, active in changes:
        if not active:
            current.pop(name, None)
            continue
        if name in current:
            continue
        tag_id = call.stores.members.tag_id(call.conn, ctx.pk, name)
        current[name] = {"id": tag_id, "name": name, "date_added": now_iso(call.clock)}
    member.data["tags"] = list(current.values())


def insert_member(
    call: Call,
    ctx: ListContext,
    email: str,
    status: str,
    data: dict[str, Any],
    *,
    taken_is_member_exists: bool = True,
) -> MemberRow:
    try:
        return call.stores.members.insert(call.conn, call.account.pk, ctx.pk, email, status, data)
    except UniqueViolation:
        if not taken_is_member_exists:
            raise
        # Added by another transaction since our lookup: answered as if we had looked later.
        raise problems.member_exists(email) from None


# The real service answers a member's first 50 tags; `tags_count` counts them all.
TAGS_SHOWN = 50


def render_member(root: str, ctx: ListContext, member: MemberRow) -> dict[str, Any]:
    data = member.data
    stored = data["merge_fields"]
    # The list's fields as they are now: a field added later shows empty, a deleted one not.
    merge = {field.tag: stored.get(field.tag, "") for field in ctx.merge_fields}
    list_id = ctx.list_id
    hash_ = member.subscriber_hash
    tags = [{"id": tag["id"], "name": tag["name"]} for tag in data["tags"]]
    return {
        "id": hash_,
        "email_address": member.email_address,
        "unique_email_id": member.unique_email_id,
        "contact_id": member.contact_id,
        # Not in the spec's member, but in every real answer (docs/compatibility.md).
        "full_name": f"{merge.get('FNAME', '')} {merge.get('LNAME', '')}".strip(),
        "web_id": member.web_id,
        "email_type": data["email_type"],
        "status": member.status,
        "unsubscribe_reason": data.get("unsubscribe_reason", ""),
        "consents_to_one_to_one_messaging": True,
        # No SMS here: the real service answers "" for a contact without SMS, although
        # the spec's enum has no empty value (docs/compatibility.md).
        "sms_phone_number": "",
        "sms_subscription_status": "",
        "sms_subscription_last_updated": "",
        "merge_fields": merge,
        "interests": data["interests"],
        "stats": {"avg_open_rate": 0, "avg_click_rate": 0},
        "ip_signup": data["ip_signup"],
        "timestamp_signup": data["timestamp_signup"],
        "ip_opt": data["ip_opt"],
        "timestamp_opt": data["timestamp_opt"],
        "member_rating": data["member_rating"],
        "last_changed": member.last_changed,
        "language": data["language"],
        "vip": data["vip"],
        "email_client": "",
        "location": data["location"],
        "marketing_permissions": data["marketing_permissions"],
        "source": data["source"],
        "tags_count": len(tags),
        "tags": tags[:TAGS_SHOWN],
        "list_id": list_id,
        "_links": member_links(root, list_id, hash_),
    }


# What batch subscribe answers of each member: the spec's `ListsNewMembers`, a smaller
# object than a member (its location has no `region`).
NEW_MEMBER_PROPERTIES = (
    "id", "email_address", "unique_email_id", "contact_id", "email_type", "status",
    "merge_fields", "interests", "stats", "ip_signup", "timestamp_signup", "ip_opt",
    "timestamp_opt", "member_rating", "last_changed", "language", "vip", "email_client",
    "location", "tags_count", "tags", "list_id", "_links",
)  # fmt: skip


def render_new_member(root: str, ctx: ListContext, member: MemberRow) -> dict[str, Any]:
    full = render_member(root, ctx, member)
    rendered = {name: full[name] for name in NEW_MEMBER_PROPERTIES}
    rendered["location"] = {k: v for k, v in full["location"].items() if k != "region"}
    return rendered


@routes.route("GET", "/lists/{list_id}/members")
def list_members(call: Call) -> Reply:
    ctx = load_list(call)
    count, offset = paging(call.query)
    rows, total = call.stores.members.page(
        call.conn, ctx.pk, member_query(call.query), count, offset
    )
    root = call.api_root
    href = f"{root}/lists/{ctx.list_id}/members"
    return Reply(
        200,
        {
            "members": [render_member(root, ctx, row) for row in rows],
            "list_id": ctx.list_id,
            "total_items": total,
            "_links": [
                link(
                    "self",
                    href,
                    "GET",
                    schema_url(root, "Definitions/Lists/Members/CollectionResponse"),
                ),
                link("parent", f"{root}/lists/{ctx.list_id}", "GET"),
                link(
                    "create",
                    href,
                    "POST",
                    schema_url(root, "Definitions/Lists/Members/Response"),
                    schema_url(root, "Definitions/Lists/Members/POST"),
                ),
            ],
        },
    )


@routes.route("POST", "/lists/{list_id}/members")
def add_member(call: Call) -> Reply:
    body = validate(MemberCreate, call.json_object())
    email = check_email(body.email_address)
    ctx = load_list(call)
    existing = call.stores.members.find(call.conn, ctx.pk, email)
    member = _add(
        call, ctx, email, body.status, body, body.tags or [],
        existing=existing, allow_existing=False,
    )  # fmt: skip
    return Reply(200, render_member(call.api_root, ctx, member))


def _add(
    call: Call,
    ctx: ListContext,
    email: str,
    status: str,
    fields: Any,
    tag_names: list[str],
    *,
    existing: MemberRow | None,
    allow_existing: bool,
    taken_is_member_exists: bool = True,
) -> MemberRow:
    """Create `email`, or revive it; `existing` is what the caller's lookup of it found.
    An address added by another transaction since that lookup is Member Exists, or
    `UniqueViolation` when `taken_is_member_exists` is false."""
    skip_required = query_flag(call.query, "skip_merge_validation")
    if existing is not None and existing.status == FORGOTTEN:
        raise problems.forgotten_email(email)
    if existing is not None and existing.status != "archived" and not allow_existing:
        raise problems.member_exists(email)
    if existing is not None:
        revive(existing, ctx, status)
        existing.email_address = email
        apply_fields(ctx, existing.data, fields, is_new=True, skip_required=skip_required)
        if tag_names:
            apply_tag_changes(call, ctx, existing, [(n, True) for n in tag_names])
        call.stores.members.save(call.conn, existing)
        return existing
    data = apply_fields(ctx, new_member_data(ctx), fields, is_new=True, skip_required=skip_required)
    member = insert_member(
        call, ctx, email, status, data, taken_is_member_exists=taken_is_member_exists
    )
    if tag_names:
        apply_tag_changes(call, ctx, member, [(n, True) for n in tag_names])
        call.stores.members.save(call.conn, member)
    return member


@routes.route("GET", "/lists/{list_id}/members/{subscriber_hash}")
def get_member(call: Call) -> Reply:
    ctx = load_list(call)
    member = get_visible_member(call, ctx)
    return Reply(200, render_member(call.api_root, ctx, member))


@routes.route("PUT", "/lists/{list_id}/members/{subscriber_hash}")
def upsert_member(call: Call) -> Reply:
    body = validate(MemberUpsert, call.json_object())
    ctx = load_list(call)
    key = call.path_params["subscriber_hash"]
    email = body.email_address or (key if "@" in key else None)
    # A key that is the body's address hashed cannot be a contact id: skip that lookup.
    is_hash_of_email = email is not None and subscriber_hash(email.strip()) == key.lower()
    member = call.stores.members.find(call.conn, ctx.pk, key, may_be_contact=not is_hash_of_email)
    if member is None or member.status == "archived":
        if email is None:
            raise problems.invalid_resource(
                [FieldError("email_address", "This value should not be blank.")]
            )
        email = check_email(email)
        if member is None and subscriber_hash(email) != key.lower() and "@" not in key:
            raise problems.invalid_resource(
                [FieldError("email_address", "The email address does not match the path.")],
                "The subscriber hash in the path does not match the email address.",
            )
        status = body.status_if_new or body.status
        if status is None:
            raise problems.invalid_resource(
                [FieldError("status_if_new", "This value should not be blank.")]
            )
        try:
            created = _add(
                call, ctx, email, status, body, [],
                existing=member, allow_existing=True, taken_is_member_exists=False,
            )  # fmt: skip
        except UniqueViolation:
            # Added by another transaction since our lookup: a PUT updates what it finds.
            raced = call.stores.members.find(call.conn, ctx.pk, email)
            if raced is None or raced.status == "archived":
                raise problems.member_exists(email) from None
            member = raced
        else:
            return Reply(200, render_member(call.api_root, ctx, created))
    if member.status == FORGOTTEN:
        # An erased member keeps only its hash, so the address comes from the request.
        raise problems.forgotten_email(email or member.email_address)
    _update(call, ctx, member, body, body.status)
    return Reply(200, render_member(call.api_root, ctx, member))


@routes.route("PATCH", "/lists/{list_id}/members/{subscriber_hash}")
def update_member(call: Call) -> Reply:
    body = validate(MemberPatch, call.json_object())
    ctx = load_list(call)
    member = get_visible_member(call, ctx)
    _update(call, ctx, member, body, body.status)
    return Reply(200, render_member(call.api_root, ctx, member))


def _update(call: Call, ctx: ListContext, member: MemberRow, body: Any, status: str | None) -> None:
    if body.email_address:
        email = check_email(body.email_address)
        if email.lower() != member.email_address.lower():
            if call.stores.members.find(call.conn, ctx.pk, email) is not None:
                raise problems.member_exists(email)
            member.subscriber_hash = subscriber_hash(email)
        member.email_address = email
    apply_fields(ctx, member.data, body, is_new=False)
    if status and status != member.status:
        member.status = status
        if status == "subscribed" and not member.data["timestamp_opt"]:
            member.data["timestamp_opt"] = now_iso(call.clock)
    try:
        call.stores.members.save(call.conn, member)
    except UniqueViolation:  # a new address, taken since the lookup above
        raise problems.member_exists(member.email_address) from None


@routes.route("DELETE", "/lists/{list_id}/members/{subscriber_hash}")
def archive_member(call: Call) -> Reply:
    ctx = load_list(call)
    member = get_visible_member(call, ctx)
    if member.status == "archived":
        raise problems.not_found()
    member.status = "archived"
    call.stores.members.save(call.conn, member)
    return Reply(204)


@routes.route("POST", "/lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent")
def delete_permanent(call: Call) -> Reply:
    ctx = load_list(call)
    member = get_visible_member(call, ctx)
    # Keep only the hash: enough to refuse a re-import, nothing personal left behind.
    member.status = FORGOTTEN
    member.data = new_member_data(ctx)
    member.email_address = member.subscriber_hash
    call.stores.members.save(call.conn, member)
    return Reply(204)


@routes.route("GET", "/lists/{list_id}/members/{subscriber_hash}/tags")
def list_member_tags(call: Call) -> Reply:
    ctx = load_list(call)
    member = get_visible_member(call, ctx)
    count, offset = paging(call.query)
    all_tags = member.data["tags"]
    root = call.api_root
    href = f"{root}/lists/{ctx.list_id}/members/{member.subscriber_hash}/tags"
    return Reply(
        200,
        {
            "tags": all_tags[offset : offset + count],
            "total_items": len(all_tags),
            "_links": [
                link("self", href, "GET"),
                link("parent", href.removesuffix("/tags"), "GET"),
                link("create", href, "POST"),
            ],
        },
    )


@routes.route("POST", "/lists/{list_id}/members/{subscriber_hash}/tags")
def change_member_tags(call: Call) -> Reply:
    body = validate(TagsPost, call.json_object())
    ctx = load_list(call)
    member = get_visible_member(call, ctx)
    apply_tag_changes(call, ctx, member, [(tag.name, tag.status == "active") for tag in body.tags])
    call.stores.members.save(call.conn, member)
    return Reply(204)


@routes.route("POST", "/lists/{list_id}")
def batch_subscribe(call: Call) -> Reply:
    body = validate(BatchSubscribe, call.json_object())
    ctx = load_list(call)
    root = call.api_root
    created: list[dict[str, Any]] = []
    updated: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for raw in body.members:
        email = str(raw.get("email_address") or "") if isinstance(raw, dict) else ""
        try:
            item = BatchMember.model_validate(raw)
        except ValidationError as exc:
            first = field_errors(exc)[0]
            errors.append(
                _subscribe_error(
                    email, "ERROR_GENERIC", first.field, first.message, problems.VALIDATION_DETAIL
                )
            )
            continue
        try:
            with call.conn.begin_nested():
                member, was_new = _subscribe_one(call, ctx, item, body)
        except Problem as problem:
            code = "ERROR_CONTACT_EXISTS" if problem.title == "Member Exists" else "ERROR_GENERIC"
            field = problem.errors[0].field if problem.errors else ""
            message = problem.errors[0].message if problem.errors else ""
            errors.append(_subscribe_error(email, code, field, message, problem.detail))
            continue
        rendered = render_new_member(root, ctx, member)
        (created if was_new else updated).append(rendered)
    href = f"{root}/lists/{ctx.list_id}"
    return Reply(
        200,
        {
            "new_members": created,
            "updated_members": updated,
            "errors": errors,
            "total_created": len(created),
            "total_updated": len(updated),
            "error_count": len(errors),
            "_links": [link("parent", href, "GET")],
        },
    )


def _subscribe_one(
    call: Call, ctx: ListContext, item: BatchMember, request: BatchSubscribe
) -> tuple[MemberRow, bool]:
    if not item.email_address:
        raise problems.invalid_resource(
            [FieldError("email_address", "This value should not be blank.")]
        )
    email = check_email(item.email_address)
    existing = call.stores.members.find(call.conn, ctx.pk, email)
    if existing is None or existing.status == "archived":
        status = item.status_if_new or item.status
        if status is None:
            raise problems.invalid_resource(
                [FieldError("status", "This value should not be blank.")]
            )
        added = _add(
            call, ctx, email, status, item, item.tags or [],
            existing=existing, allow_existing=True,
        )  # fmt: skip
        return added, True
    if existing.status == FORGOTTEN:
        raise problems.forgotten_email(email)
    if not request.update_existing:
        raise problems.member_exists(email)
    _update(call, ctx, existing, item, item.status)
    if item.tags is not None:
        wanted = set(item.tags)
        changes = [(name, True) for name in item.tags]
        if request.sync_tags:
            changes += [
                (t["name"], False) for t in existing.data["tags"] if t["name"] not in wanted
            ]
        apply_tag_changes(call, ctx, existing, changes)
        call.stores.members.save(call.conn, existing)
    return existing, False


def _subscribe_error(
    email: str, code: str, field: str, field_message: str, error: str = ""
) -> dict[str, Any]:
    return {
        "email_address": email,
        "error": error or field_message,
        "error_code": code,
        "field": field,
        "field_message": field_message,
    }
