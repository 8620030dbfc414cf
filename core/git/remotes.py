"""Which remote a repository's default branch comes from, and the tip ob reads.

The truth is the remote as the last fetch saw it, not the operator's local branch: in a clone
the tip read is the default branch's remote-tracking branch (`refs/remotes/origin/main`), so
commits that agents pushed count once fetched, whatever the work tree has checked out; the
local branch is read only where there is no remote-tracking one (a repository without remote,
a bare clone whose branches are the remote's own).

All of it from the repository's files (its git config and ref files), without starting git.
Remote URLs are normalised into one key per repository (`normalise_url`), which is what a
forge's push webhook is matched by.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from core.git.refs import branch_ref, git_dirs, read_refs, resolve_branch

_SECTION = re.compile(r'^\s*\[\s*([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\]\s*(.*)$')
_KEY_VALUE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9-]*)\s*(?:=\s*(.*))?$")
_SCP_LIKE = re.compile(r"^(?:[^@/\s]+@)?([^:/\s]+):(?!//)(.+)$")


class Remote(NamedTuple):
    name: str
    url: str | None
    key: str | None  # the URL normalised (see normalise_url)


class Scanned(NamedTuple):
    """The default branch as ob reads it now."""

    branch: str
    refs: dict[str, str]  # every branch tip
    tip: str | None  # None: the branch is unborn (an empty repository)
    remote: Remote | None


def _git_config(path: str | os.PathLike[str]) -> dict[tuple[str, str], dict[str, str]]:
    """The sections of a repository's own config file: {(section, subsection): {key: value}}
    (the first value of each key; what ob needs of it: remotes and branches)."""
    _, common = git_dirs(path)
    try:
        text = (common / "config").read_text("utf-8", errors="replace")
    except OSError:
        return {}
    out: dict[tuple[str, str], dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        m = _SECTION.match(line)
        if m:
            current = out.setdefault((m.group(1).lower(), m.group(2) or ""), {})
            line = m.group(3)
        if current is None or not line.strip() or line.lstrip()[:1] in "#;":
            continue
        kv = _KEY_VALUE.match(line)
        if kv:
            value = (kv.group(2) or "").strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            current.setdefault(kv.group(1).lower(), value)
    return out


def default_remote(path: str | os.PathLike[str], branch: str | None) -> Remote | None:
    """The remote the default branch comes from (`branch.<name>.remote`, else origin, else the
    only remote), or None: a repository without remotes, such as a bare one agents push to."""
    config = _git_config(path)
    remotes = [sub for (section, sub) in config if section == "remote" and sub]
    if not remotes:
        return None
    name = config.get(("branch", branch or ""), {}).get("remote")
    if name not in remotes:
        name = "origin" if "origin" in remotes else remotes[0] if len(remotes) == 1 else None
    if name is None:
        return None
    url = config[("remote", name)].get("url")
    return Remote(name, url, normalise_url(url) if url else None)


def read_default_branch(path: str | os.PathLike[str], current: str | None, pinned: bool) -> Scanned:
    """The branch ob reads now (refs.resolve_branch), every tip, the tip of the branch (its
    remote-tracking branch where there is one) and its remote."""
    refs = read_refs(path)
    branch = resolve_branch(path, refs, current, pinned)
    remote = default_remote(path, branch)
    ref = branch_ref(refs, branch, remote.name if remote else None)
    return Scanned(branch, refs, refs[ref] if ref else None, remote)


def normalise_url(url: str) -> str:
    """A remote URL as one key, whatever form names it: `https://github.com/Acme/Web.git`,
    `git@github.com:acme/web.git` and `ssh://git@github.com:22/acme/web` are all
    `github.com/acme/web`; a local path (or file:// URL) is the absolute path without `.git`."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme == "file":
        return _path_key(parts.path)
    if parts.scheme and parts.netloc:
        return f"{(parts.hostname or '').lower()}/{_clean(parts.path)}".lower()
    m = _SCP_LIKE.match(url)
    if m and not re.match(r"^[A-Za-z]:[\\/]", url):  # not a Windows drive
        return f"{m.group(1).lower()}/{_clean(m.group(2))}".lower()
    return _path_key(url)


def _clean(path: str) -> str:
    path = path.strip("/")
    return path.removesuffix(".git")


def _path_key(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path)).rstrip("/").removesuffix(".git")


def looks_like_url(text: str) -> bool:
    """An argument of `ob repo add` that names a remote repository rather than a local path."""
    if Path(text).expanduser().exists():
        return False
    parts = urlsplit(text)
    if parts.scheme in ("http", "https", "ssh", "git") and parts.netloc:
        return True
    if parts.scheme == "file":
        return True
    return bool(_SCP_LIKE.match(text)) and "@" in text.split(":", 1)[0]
