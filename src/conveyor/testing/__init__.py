"""Conveyor in your test suite: the pytest plugin (`conveyor` fixture) and the in-process
emulator it starts. README.md, "Test your Mailchimp integration"."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing this package stays cheap: the plugin module imports it
    from conveyor.testing.emulator import Conveyor as Conveyor

__all__ = ["Conveyor"]


def __getattr__(name: str) -> object:
    if name == "Conveyor":
        from conveyor.testing.emulator import Conveyor

        return Conveyor
    raise AttributeError(name)
