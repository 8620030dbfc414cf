"""Typed errors of the backlog. Each message says what is wrong and what to do instead."""

from __future__ import annotations


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
