"""The layers stay true: read every import of the package and fail on a break.

docs/architecture.md ("Layers") draws the picture; this test is its enforcement. Imports
inside functions count too, and so do imports behind `TYPE_CHECKING`.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import conveyor

ROOT = Path(conveyor.__file__).parent

# What each part of Conveyor may import of Conveyor (itself always).
ALLOWED: dict[str, set[str]] = {
    "domain": set(),
    "settings": set(),
    # Mailchimp's OpenAPI subset, as package data.
    "reference": set(),
    "client": {"domain"},
    "storage": {"domain", "settings"},
    "marketing": {"domain", "storage", "settings"},
    "batches": {"domain", "storage", "marketing", "settings"},
    # The emulator's journal, faults, pace and test controls (docs/emulator.md).
    "emulator": {"domain", "storage", "marketing", "batches", "settings"},
    # Metrics and log context (docs/observability.md), below the edge: the engine uses them.
    "observability": {"domain", "storage", "batches", "settings"},
    "http": {
        "domain",
        "storage",
        "marketing",
        "batches",
        "settings",
        "reference",
        "emulator",
        "observability",
    },
    "runtime": {"domain", "storage", "marketing", "batches", "settings"},
    # The composition root and the entry points wire everything.
    "composition": {
        "domain",
        "storage",
        "marketing",
        "batches",
        "settings",
        "emulator",
        "observability",
    },
    # The pytest plugin starts an in-process server, as `conveyor emulate` does.
    "testing": {"composition", "http", "runtime", "settings", "domain", "emulator"},
    "worker_entry": {"composition", "runtime", "settings", "observability"},
    "cli": {
        "composition",
        "http",
        "runtime",
        "storage",
        "client",
        "settings",
        "domain",
        "emulator",
        "observability",
    },
}

# Third-party packages a part must not know.
FORBIDDEN_LIBRARIES: dict[str, set[str]] = {
    "domain": {"sqlalchemy", "starlette", "httpx", "dramatiq", "psycopg", "sqlite3"},
    "marketing": {"starlette", "psycopg", "sqlite3", "dramatiq"},
    "emulator": {"starlette", "psycopg", "sqlite3", "dramatiq"},
    "batches": {"starlette", "psycopg", "sqlite3", "dramatiq"},
    "storage": {"starlette", "dramatiq", "httpx"},
    "http": {"dramatiq"},
    # The client reads the user's own database (members sync) with SQLAlchemy: allowed.
    "client": {"starlette", "dramatiq", "alembic", "obstore"},
}


def part_of(module: str) -> str | None:
    """`conveyor.storage.batches` → `storage`; None outside Conveyor."""
    parts = module.split(".")
    if parts[0] != "conveyor" or len(parts) < 2:
        return None
    return parts[1]


def imports() -> list[tuple[str, str, str]]:
    """(importing part, imported module, file) for every import in the package."""
    found: list[tuple[str, str, str]] = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0] == "storage" and "migrations" in relative.parts:
            continue  # migration scripts are frozen history, not code that runs at import
        part = relative.parts[0].removesuffix(".py")
        if part == "__init__":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.extend((part, alias.name, str(relative)) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((part, node.module, str(relative)))
    return found


def test_every_part_is_known() -> None:
    parts = {part for part, _module, _file in imports()}
    assert parts <= set(ALLOWED), f"parts without a rule: {parts - set(ALLOWED)}"


def breaks_in(found: list[tuple[str, str, str]]) -> list[str]:
    breaks = []
    for part, module, file in found:
        target = part_of(module)
        if target is None:
            library = module.split(".")[0]
            if library in FORBIDDEN_LIBRARIES.get(part, set()):
                breaks.append(f"{file}: {part} must not use {library}")
            continue
        if target != part and target not in ALLOWED[part]:
            breaks.append(f"{file}: {part} must not import {module}")
    return breaks


def test_no_part_imports_one_it_should_not_know() -> None:
    breaks = breaks_in(imports())
    assert not breaks, "\n".join(breaks)


def test_no_two_parts_import_each_other() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for part, module, _file in imports():
        target = part_of(module)
        if target is not None and target != part:
            graph[part].add(target)
    cycles = []
    for start in list(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append(" → ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "\n".join(cycles)


def test_the_rules_catch_a_break() -> None:
    """The checker itself finds what the rules forbid, and passes what they allow."""
    found = [
        ("batches", "conveyor.http.app", "batches/x.py"),
        ("marketing", "starlette.requests", "marketing/y.py"),
        ("domain", "conveyor.storage.tables", "domain/z.py"),
        ("http", "conveyor.batches.service", "http/ok.py"),
    ]
    assert breaks_in(found) == [
        "batches/x.py: batches must not import conveyor.http.app",
        "marketing/y.py: marketing must not use starlette",
        "domain/z.py: domain must not import conveyor.storage.tables",
    ]
