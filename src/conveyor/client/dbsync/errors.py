"""The error a sync stops with; its message is meant for the person who ran it."""

from __future__ import annotations

from conveyor.client.errors import ConveyorError


class SyncError(ConveyorError):
    """The sync cannot go on as asked: bad query, unusable state, a key that repeats, …"""
