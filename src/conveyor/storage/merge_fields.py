"""Merge field SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, select

from conveyor.storage.tables import lists, merge_fields


class MergeFieldStore:
    def page(
        self, conn: Connection, list_pk: int, count: int, offset: int
    ) -> tuple[list[Any], int]:
        where = merge_fields.c.list_pk == list_pk
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
