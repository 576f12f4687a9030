"""Merge field SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, select, text

from conveyor.storage.tables import lists, merge_fields


class MergeFieldStore:
    def page(
        self,
        conn: Connection,
        list_pk: int,
        count: int,
        offset: int,
        *,
        type: str | None = None,
        required: bool | None = None,
    ) -> tuple[list[Any], int]:
        """One page of a list's merge fields, of one `type` and requiredness when given."""
        where = merge_fields.c.list_pk == list_pk
        if type is not None:
            where = and_(where, merge_fields.c.data["type"].as_string() == type)
        if required is not None:
            where = and_(where, merge_fields.c.data["required"].as_boolean() == required)
        total = conn.execute(
            select(func.count()).select_from(merge_fields).where(where)
        ).scalar_one()
        rows = conn.execute(
            select(merge_fields)
            .where(where)
            .order_by(merge_fields.c.merge_id)
            .limit(count)
            .offset(offset)
        ).all()
        return list(rows), int(total)

    def next_merge_id(self, conn: Connection, list_pk: int) -> int:
        """The list's next merge id, with its row locked (PostgreSQL) so that two creates
        cannot take the same one."""
        return int(
            conn.execute(
                select(lists.c.next_merge_id).where(lists.c.pk == list_pk).with_for_update()
            ).scalar_one()
        )

    def insert(
        self, conn: Connection, list_pk: int, merge_id: int, tag: str, data: dict[str, Any]
    ) -> None:
        conn.execute(
            merge_fields.insert().values(list_pk=list_pk, merge_id=merge_id, tag=tag, data=data)
        )
        conn.execute(lists.update().where(lists.c.pk == list_pk).values(next_merge_id=merge_id + 1))

    def row(self, conn: Connection, list_pk: int, merge_id: int) -> Any | None:
        return conn.execute(
            select(merge_fields).where(
                and_(merge_fields.c.list_pk == list_pk, merge_fields.c.merge_id == merge_id)
            )
        ).first()

    def merge_id_of_tag(self, conn: Connection, list_pk: int, tag: str) -> int | None:
        found = conn.execute(
            select(merge_fields.c.merge_id).where(
                and_(merge_fields.c.list_pk == list_pk, merge_fields.c.tag == tag)
            )
        ).scalar()
        return None if found is None else int(found)

    def update(
        self, conn: Connection, list_pk: int, merge_id: int, tag: str, data: dict[str, Any]
    ) -> None:
        conn.execute(
            merge_fields.update()
            .where(and_(merge_fields.c.list_pk == list_pk, merge_fields.c.merge_id == merge_id))
            .values(tag=tag, data=data)
        )

    def delete(self, conn: Connection, list_pk: int, merge_id: int) -> None:
        conn.execute(
            merge_fields.delete().where(
                and_(merge_fields.c.list_pk == list_pk, merge_fields.c.merge_id == merge_id)
            )
        )

    def count(self, conn: Connection, list_pks: list[int]) -> dict[int, int]:
        """Merge fields per list."""
        if not list_pks:
            return {}
        rows = conn.execute(
            select(merge_fields.c.list_pk, func.count())
            .where(merge_fields.c.list_pk.in_(list_pks))
            .group_by(merge_fields.c.list_pk)
        ).all()
        return {int(list_pk): int(n) for list_pk, n in rows}

    def drop_member_values(self, conn: Connection, list_pk: int, tag: str) -> None:
        """Forget every member's value of a deleted field, as the real service does: a
        field added later under the same tag starts empty."""
        if conn.dialect.name == "postgresql":
            conn.execute(
                text(
                    "UPDATE members SET data = ((data::jsonb) #- CAST(:path AS text[]))::json"
                    " WHERE list_pk = :list_pk"
                    " AND jsonb_exists((data::jsonb) -> 'merge_fields', :tag)"
                ),
                {"path": ["merge_fields", tag], "list_pk": list_pk, "tag": tag},
            )
            return
        path = _sqlite_path(tag)
        conn.execute(
            text(
                "UPDATE members SET data = json_remove(data, :path)"
                " WHERE list_pk = :list_pk AND json_type(data, :path) IS NOT NULL"
            ),
            {"path": path, "list_pk": list_pk},
        )

    def rename_member_values(self, conn: Connection, list_pk: int, old: str, new: str) -> None:
        """Members' values of a field follow it to its new tag."""
        if conn.dialect.name == "postgresql":
            conn.execute(
                text(
                    "UPDATE members SET data = jsonb_set("
                    "(data::jsonb) #- CAST(:old_path AS text[]), CAST(:new_path AS text[]),"
                    " (data::jsonb) #> CAST(:old_path AS text[]))::json"
                    " WHERE list_pk = :list_pk"
                    " AND jsonb_exists((data::jsonb) -> 'merge_fields', :old)"
                ),
                {
                    "old_path": ["merge_fields", old],
                    "new_path": ["merge_fields", new],
                    "list_pk": list_pk,
                    "old": old,
                },
            )
            return
        conn.execute(
            text(
                "UPDATE members SET data = json_set(json_remove(data, :old), :new, data -> :old)"
                " WHERE list_pk = :list_pk AND json_type(data, :old) IS NOT NULL"
            ),
            {"old": _sqlite_path(old), "new": _sqlite_path(new), "list_pk": list_pk},
        )


def _sqlite_path(tag: str) -> str:
    # Tags hold only A-Z, 0-9 and _ (checked by the handler): quoting needs no escapes.
    return f'$.merge_fields."{tag}"'
