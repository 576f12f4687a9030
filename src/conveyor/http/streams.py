"""Streamed answers that hold something (a connection slot) until their last byte is sent.

Starlette sends a response's body after the endpoint has returned, so whatever the endpoint
held would be released before the stream even starts. These keep an `ExitStack` and close
it when the stream ends, however it ends: done, the client gone, the server shutting down.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class HeldStream(StreamingResponse):
    """A streamed body that, by default, keeps its request's connection slot (`ApiGate`)."""

    def __init__(self, *args: Any, keeps_request_slot: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keeps_request_slot = keeps_request_slot
        self._held = ExitStack()

    def keep(self, resources: ExitStack) -> None:
        self._held.enter_context(resources)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._held.close()


class HeldEvents(EventSourceResponse):
    """Server-sent events holding a slot of their own (never the request's: a stream may stay
    open for hours)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held = ExitStack()

    def keep(self, resources: ExitStack) -> None:
        self._held.enter_context(resources)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._held.close()
