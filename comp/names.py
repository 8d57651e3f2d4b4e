"""The one rule for every name a user gives comp, and for every path comp writes.

Run ids, run names, submission names and study names become file and folder names, so
each is a plain name: letters, digits, '_', '.' and '-', starting with a letter, digit or
'_' (no separators, no leading dot, never '..'), at most MAX_LENGTH characters. A path a
user gives for comp to write (`--out`, `--store`) must lie inside the workspace.
"""

from __future__ import annotations

import re
from pathlib import Path

from comp.errors import CompError

MAX_LENGTH = 100
_PLAIN = re.compile(r"\w[\w.-]*")


def is_plain(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_LENGTH and _PLAIN.fullmatch(value) is not None


def plain_name(value: str, what: str) -> str:
    """`value`, or one sentence saying why it cannot name a file."""
    if not is_plain(value):
        raise CompError(f"{what} must be a plain name (letters, digits, '_', '.', '-'; not starting with "
                        f"'.' or '-'; at most {MAX_LENGTH} characters), got {value!r}")
    return value


def inside(root: Path, path: Path, what: str) -> Path:
    """`path` resolved, refused unless it lies inside `root` (links followed)."""
    resolved, base = path.resolve(), root.resolve()
    if resolved != base and base not in resolved.parents:
        raise CompError(f"{what} {path} lies outside the workspace {base}: comp writes only inside it")
    return resolved
