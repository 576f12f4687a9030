"""Schema URLs and a member answer's links, as the real service gives them.

Pure: the Marketing API's renderers write them into answers, and stored results
(domain/stored_response.py) leave a member's links out and put them back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


def schema_url(api_root: str, name: str) -> str:
    """Where the real service publishes JSON schemas, re-rooted on this server."""
    base = api_root.removesuffix("/3.0")
    return f"{base}/schema/3.0/{name}.json"


@dataclass(frozen=True, slots=True)
class _LinkParts:
    """The schema URLs of a member's links: they depend on the API root only."""

    member: str
    collection: str
    paths_collection: str
    patch: str
    put: str
    activity: str
    goals: str
    notes: str
    events: str


# A member is rendered for every operation of a batch: its links' schema URLs are built once
# per root.
@functools.lru_cache(maxsize=64)
def _link_parts(root: str) -> _LinkParts:
    return _LinkParts(
        *(
            schema_url(root, name)
            for name in (
                "Definitions/Lists/Members/Response",
                "Definitions/Lists/Members/CollectionResponse",
                "Paths/Lists/Members/Collection",
                "Definitions/Lists/Members/PATCH",
                "Definitions/Lists/Members/PUT",
                "Definitions/Lists/Members/Activity/Response",
                "Definitions/Lists/Members/Goals/Response",
                "Definitions/Lists/Members/Notes/CollectionResponse",
                "Definitions/Lists/Members/Events/POST",
            )
        )
    )


def member_links(root: str, list_id: str, hash_: str) -> list[dict[str, str]]:
    """The real service's links of a member, rel for rel (activity, goals, notes and events
    name paths Conveyor does not serve: they answer 404)."""
    parts = _link_parts(root)
    collection_href = f"{root}/lists/{list_id}/members"
    href = f"{collection_href}/{hash_}"
    member = parts.member
    return [
        {"rel": "self", "href": href, "method": "GET", "targetSchema": member},
        {
            "rel": "parent",
            "href": collection_href,
            "method": "GET",
            "targetSchema": parts.collection,
            "schema": parts.paths_collection,
        },
        {"rel": "update", "href": href, "method": "PATCH", "targetSchema": member,
         "schema": parts.patch},
        {"rel": "upsert", "href": href, "method": "PUT", "targetSchema": member,
         "schema": parts.put},
        {"rel": "delete", "href": href, "method": "DELETE"},
        {"rel": "activity", "href": f"{href}/activity", "method": "GET",
         "targetSchema": parts.activity},
        {"rel": "goals", "href": f"{href}/goals", "method": "GET", "targetSchema": parts.goals},
        {"rel": "notes", "href": f"{href}/notes", "method": "GET", "targetSchema": parts.notes},
        {"rel": "events", "href": f"{href}/events", "method": "POST",
         "targetSchema": parts.events},
        {"rel": "delete_permanent", "href": f"{href}/actions/delete-permanent", "method": "POST"},
    ]  # fmt: skip
