"""`GET /` (the account) and `GET /ping`."""

from __future__ import annotations

from conveyor.domain.links import schema_url
from conveyor.marketing.common import link
from conveyor.marketing.routing import Call, Reply, RouteTable

routes = RouteTable()


@routes.route("GET", "/ping")
def ping(_call: Call) -> Reply:
    return Reply(200, {"health_status": "Everything's Chimpy!"})


@routes.route("GET", "/")
def account_root(call: Call) -> Reply:
    account = call.account
    total = call.stores.members.count_subscribed(call.conn, account.pk)
    root = call.api_root
    return Reply(
        200,
        {
            "account_id": account.account_id,
            "login_id": account.account_id,
            "account_name": account.account_name,
            "email": account.email,
            "first_name": "",
            "last_name": "",
            "username": account.email,
            "avatar_url": "",
            "role": "owner",
            "member_since": account.created_at,
            "pricing_plan_type": "forever_free",
            "first_payment": "",
            "account_timezone": "UTC",
            "account_industry": "",
            "contact": {
                "company": account.account_name,
                "addr1": "",
                "addr2": "",
                "city": "",
                "state": "",
                "zip": "",
                "country": "",
            },
            "pro_enabled": False,
            "last_login": account.created_at,
            "total_subscribers": total,
            "industry_stats": {"open_rate": 0, "bounce_rate": 0, "click_rate": 0},
            "_links": [
                link("self", f"{root}/", "GET", schema_url(root, "Definitions/APIRoot/Response")),
                link(
                    "lists",
                    f"{root}/lists",
                    "GET",
                    schema_url(root, "Definitions/Lists/CollectionResponse"),
                ),
                link(
                    "batches",
                    f"{root}/batches",
                    "GET",
                    schema_url(root, "Definitions/Batches/CollectionResponse"),
                ),
                link(
                    "batch-webhooks",
                    f"{root}/batch-webhooks",
                    "GET",
                    schema_url(root, "Definitions/BatchWebhooks/CollectionResponse"),
                ),
                link("ping", f"{root}/ping", "GET", schema_url(root, "Definitions/Ping/Response")),
            ],
        },
    )
