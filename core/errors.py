"""Typed errors of the backlog. Each message says what is wrong and what to do instead."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class BacklogError(Exception):
    """Base class; `code` is a stable machine-readable name for interfaces."""

    code = "error"

    def __init__(self, message: str, **details: object):
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(BacklogError):
    code = "not_found"


class InvalidTransition(BacklogError):
    code = "invalid_transition"


class Forbidden(BacklogError):
    code = "forbidden"


class LeaseError(BacklogError):
    """A lease operation was refused: stale epoch, expired lease, or not the holder."""

    code = "lease_refused"


class Invalid(BacklogError):
    code = "invalid"


def plain_problems(errors: Iterable[Any], skip: tuple[str, ...] = ("body",)) -> list[str]:
    """A pydantic validation error's problems as people read them, one per field:
    `epoch: Input should be a valid integer` (no input dump, no documentation link)."""
    out = []
    for e in errors:
        where = ".".join(str(p) for p in e["loc"] if p not in skip)
        if e["type"] == "json_invalid":
            reason = (e.get("ctx") or {}).get("error", "")
            out.append(f"the body is not valid JSON ({reason} at position {where or 0})")
            continue
        msg = str(e["msg"]).removeprefix("Value error, ")
        out.append(f"{where}: {msg}" if where else msg)
    return out
