"""The HTTP floor: uvicorn + Starlette answering canned bodies, with no auth, no limits, no DB.

Served by `bench.over_http` exactly as `conveyor serve` serves Conveyor (uvicorn defaults:
uvloop and httptools when installed, no access log), so the difference between the two is
what Conveyor's own request handling costs.
"""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

JSON = "application/json; charset=utf-8"
PING = orjson.dumps({"health_status": "Everything's Chimpy!"})
# About the size of a rendered member.
MEMBER = orjson.dumps({"id": "0" * 32, "padding": "x" * 2000})


async def ping(request: Request) -> Response:
    return Response(PING, media_type=JSON)


async def add_member(request: Request) -> Response:
    body = await request.body()
    orjson.loads(body)
    return Response(MEMBER, media_type=JSON)


app = Starlette(
    routes=[
        Route("/3.0/ping", ping, methods=["GET"]),
        Route("/3.0/lists/{list_id}/members", add_member, methods=["POST"]),
    ]
)
