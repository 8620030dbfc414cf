"""Reading a repository's refs without starting git: the branch tips decide whether a repo
changed since its last scan, so an incremental reconcile of an unchanged repo costs a few file
reads. Anything unusual (reftable, odd layouts) falls back to one `git for-each-ref`."""

from __future__ import annotations

import os
import re
from pathlib import Path

SHA40 = re.compile(r"^[0-9a-f]{40}$")
SCANNED = ("refs/heads/", "refs/remotes/")


class RepoGone(Exception):
    """The repository's path no longer holds a git repository."""


def git_dirs(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(git dir, common dir) of a work tree or bare repository."""
    p = Path(path)
    if not p.exists():
        raise RepoGone(f"path {p} does not exist (moved or deleted?)")
    dot = p / ".git"
    if dot.is_dir():
        gd = dot
    elif dot.is_file():
        text = dot.read_text("utf-8", errors="replace").strip()
        if not text.startswith("gitdir:"):
            raise RepoGone(f"{dot} is not a gitdir link")
        gd = Path(text[7:].strip())
        if not gd.is_absolute():
            gd = (p / gd).resolve()
    elif (p / "HEAD").is_file() and (p / "objects").is_dir():
        gd = p  # bare
    else:
        raise RepoGone(f"{p} is not a git repository (no .git)")
    common = gd
    cd = gd / "commondir"
    if cd.is_file():
        rel = cd.read_text("utf-8").strip()
        common = (gd / rel).resolve() if not os.path.isabs(rel) else Path(rel)
    return gd, common


def read_refs(path: str | os.PathLike[str]) -> dict[str, str]:
    """Every branch tip, {'refs/heads/main': sha, 'refs/remotes/origin/x': sha, ...}."""
    _, common = git_dirs(path)
    if (common / "reftable").is_dir():
        return _for_each_ref(path)
    refs: dict[str, str] = {}
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text("utf-8", errors="replace").splitlines():
            if not line or line[0] in "#^":
                continue
            sha, _, name = line.partition(" ")
            if name.startswith(SCANNED) and SHA40.match(sha):
                refs[name] = sha
    for prefix in SCANNED:
        base = common / prefix
        if not base.is_dir():
            continue
        for root, _dirs, files in os.walk(base):
            for f in files:
                full = Path(root) / f
                name = full.relative_to(common).as_posix()
                try:
                    content = full.read_text("utf-8", errors="replace").strip()
                except OSError:
                    continue
                if SHA40.match(content):
                    refs[name] = content
                # symbolic refs (origin/HEAD) are not tips of their own
    return refs


def _for_each_ref(path: str | os.PathLike[str]) -> dict[str, str]:
    import git  # GitPython loads slowly; `ob list` reaches this module without needing it

    out = git.Git(str(path)).for_each_ref(
        "--format=%(objectname) %(refname)", "refs/heads", "refs/remotes"
    )
    refs = {}
    for line in out.splitlines():
        sha, _, name = line.partition(" ")
        if SHA40.match(sha):
            refs[name] = sha
    return refs


def detect_default_branch(path: str | os.PathLike[str]) -> str:
    """origin/HEAD's branch, else main, else master, else the checked-out branch."""
    gd, common = git_dirs(path)
    origin_head = common / "refs/remotes/origin/HEAD"
    if origin_head.is_file():
        text = origin_head.read_text("utf-8", errors="replace").strip()
        if text.startswith("ref: refs/remotes/origin/"):
            return text.removeprefix("ref: refs/remotes/origin/")
    refs = read_refs(path)
    for name in ("main", "master"):
        if f"refs/heads/{name}" in refs or f"refs/remotes/origin/{name}" in refs:
            return name
    head = gd / "HEAD"
    if head.is_file():
        text = head.read_text("utf-8", errors="replace").strip()
        if text.startswith("ref: refs/heads/"):
            return text.removeprefix("ref: refs/heads/")
    raise RepoGone(f"cannot tell the default branch of {path}; give it with --branch")


def branch_ref(refs: dict[str, str], branch: str) -> str | None:
    """The ref of the default branch: the local branch, else origin's."""
    for name in (f"refs/heads/{branch}", f"refs/remotes/origin/{branch}"):
        if name in refs:
            return name
    return None


def branch_tip(path: str | os.PathLike[str], branch: str) -> str | None:
    refs = read_refs(path)
    ref = branch_ref(refs, branch)
    return refs[ref] if ref else None
