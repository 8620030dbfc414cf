"""Agent bearer tokens: `ob_<id>_<secret>`. The id finds the agent row; the secret is checked
against its SHA-256 hash in constant time. Tokens carry 32 random bytes, so a fast hash is the
right one. (Standard library only: the CLI's agent verbs read token ids without loading core.)"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

TOKEN_RE = re.compile(r"^ob_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_token() -> tuple[str, str, bytes]:
    """(token, token id, hash of its secret)."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"ob_{token_id}_{secret}", token_id, secret_hash(secret)


def token_id(token: str) -> str | None:
    """The id part of a well-formed token (None for anything else)."""
    m = TOKEN_RE.match(token.strip())
    return m.group(1) if m else None


def secret_matches(expected: bytes | None, token: str) -> bool:
    """Constant-time check of a token's secret against a stored hash (None: no such id; the
    comparison still runs, so timing does not tell which ids exist)."""
    m = TOKEN_RE.match(token.strip())
    secret = m.group(2) if m else ""
    return hmac.compare_digest(expected or b"\0" * 32, secret_hash(secret)) and expected is not None
