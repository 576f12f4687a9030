"""Path globs of the test controls: `*` is one path segment (or part of one), `**` any depth.

`/3.0/lists/*/members` matches a list's members and nothing below them; fnmatch's `*` would
also cross `/` and match `/3.0/lists/a/members/b/notes`.
"""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=256)
def compile_glob(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            parts.append(".*")
            i += 2
            continue
        if char == "*":
            parts.append("[^/]*")
        elif char == "?":
            parts.append("[^/]")
        else:
            parts.append(re.escape(char))
        i += 1
    return re.compile("".join(parts))


def matches(pattern: str | None, path: str) -> bool:
    """True when `path` matches `pattern` whole; no pattern matches every path."""
    if not pattern:
        return True
    return compile_glob(pattern).fullmatch(path) is not None
