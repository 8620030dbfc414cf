"""Task keys in commit messages: mentions anywhere (subject, body, trailers), and closing
references — `Closes|Fixes|Resolves OB-12` (also close/closed/fix/fixed/resolve/resolved, and the
trailer form `Closes: OB-12`), each naming one or more keys (`Fixes OB-1, OB-2 and OB-3`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class KeyPatterns:
    any_key: re.Pattern[str]
    closing: re.Pattern[str]
    maybe: re.Pattern[str]  # the fast path: `PREFIX-` anywhere, any case


@lru_cache(maxsize=8)
def patterns(prefix: str) -> KeyPatterns:
    p = re.escape(prefix)
    key = rf"{p}-\d{{1,12}}(?![0-9])"
    return KeyPatterns(
        maybe=re.compile(rf"{p}-", re.I),
        any_key=re.compile(rf"(?<![A-Za-z0-9_]){p}-(\d{{1,12}})(?![0-9])", re.I),
        closing=re.compile(
            rf"(?<![A-Za-z])(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)[ \t]*:?[ \t]*"
            rf"((?:{key})(?:(?:[ \t]*,[ \t]*|[ \t]+and[ \t]+|[ \t]*&[ \t]*|[ \t]+)(?:{key}))*)",
            re.I,
        ),
    )


def find_keys(message: str, prefix: str) -> dict[int, bool]:
    """{task number: closes?} for every key the message names (empty when none)."""
    pat = patterns(prefix)
    if not pat.maybe.search(message):  # the fast path for most commits
        return {}
    found = {int(m.group(1)): False for m in pat.any_key.finditer(message)}
    if found:
        for m in pat.closing.finditer(message):
            for k in pat.any_key.finditer(m.group(1)):
                found[int(k.group(1))] = True
    return found
