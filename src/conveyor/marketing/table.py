"""The whole Marketing API subset as one route table."""

from __future__ import annotations

from conveyor.marketing import lists, members, merge_fields, root
from conveyor.marketing.routing import RouteTable
from conveyor.storage.marketing_stores import MarketingStores


def marketing_routes(stores: MarketingStores) -> RouteTable:
    table = RouteTable(stores=stores)
    for module in (root, lists, members, merge_fields):
        table.include(module.routes)
    return table
