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


class BranchGone(RepoGone):
    """The default branch cannot be found; the message names the command that fixes it."""


def _symbolic(base: Path, name: str) -> str | None:
    """The target of a loose symbolic ref (`ref: refs/...`), else None."""
    f = base / name
    try:
        text = f.read_text("utf-8", errors="replace").strip() if f.is_file() else ""
    except OSError:
        return None
    return text[5:].strip() if text.startswith("ref: ") else None


def _symbolic_git(path: str | os.PathLike[str], name: str) -> str | None:
    import git  # loaded only when the ref files do not say (see _for_each_ref)

    try:
        return git.Git(str(path)).symbolic_ref("-q", name).strip() or None
    except git.GitCommandError:
        return None


def is_bare(path: str | os.PathLike[str]) -> bool:
    gd, _ = git_dirs(path)
    return gd == Path(path)


def remote_default(path: str | os.PathLike[str]) -> str | None:
    """The branch a remote's HEAD names (origin first, else the first remote that has one):
    what `git clone` set up and `git remote set-head` changes."""
    _, common = git_dirs(path)
    reftable = (common / "reftable").is_dir()
    remotes = ["origin"]
    base = common / "refs" / "remotes"
    if base.is_dir():
        remotes += sorted(d.name for d in base.iterdir() if d.is_dir() and d.name != "origin")
    for remote in remotes:
        name = f"refs/remotes/{remote}/HEAD"
        target = _symbolic_git(path, name) if reftable else _symbolic(common, name)
        prefix = f"refs/remotes/{remote}/"
        if target and target.startswith(prefix):
            return target.removeprefix(prefix)
    return None


def head_branch(path: str | os.PathLike[str]) -> str | None:
    """The branch HEAD names (None when detached)."""
    gd, common = git_dirs(path)
    if (common / "reftable").is_dir():
        target = _symbolic_git(path, "HEAD")
    else:
        target = _symbolic(gd, "HEAD")
    if target and target.startswith("refs/heads/"):
        return target.removeprefix("refs/heads/")
    return None


def follow_default_branch(
    path: str | os.PathLike[str], refs: dict[str, str], current: str | None = None
) -> str:
    """The repository's default branch now, for a repo whose branch is not pinned:

    1. the branch a remote's HEAD names (origin/HEAD), where there is one;
    2. in a bare repository, the branch HEAD names;
    3. in a work tree, the branch ob already follows while it exists (a work tree's HEAD is
       whatever is checked out, not the default branch); when it is gone (renamed, deleted),
       the branch HEAD names; at registration main, else master, else HEAD's branch;
    4. in an empty repository (no branch at all yet), the unborn branch HEAD names.
    """
    remote = remote_default(path)
    if remote and branch_ref(refs, remote):
        return remote
    head = head_branch(path)
    if is_bare(path) and head and branch_ref(refs, head):
        return head
    if current and branch_ref(refs, current):
        return current
    order = [head] if current else ["main", "master", head]
    for name in order:
        if name and branch_ref(refs, name):
            return name
    if not refs and (head or current):
        return current or head or ""  # an empty repository: the branch HEAD names is unborn
    if current:
        raise BranchGone(
            f"the default branch {current!r} no longer exists in {path} and HEAD names no"
            f" branch; pin the right one with `ob repo add {path} --branch NAME`"
        )
    raise BranchGone(
        f"cannot tell the default branch of {path}; pin it with `ob repo add {path} --branch NAME`"
    )


def detect_default_branch(path: str | os.PathLike[str]) -> str:
    """The default branch of a repository being registered."""
    return follow_default_branch(path, read_refs(path))


def resolve_branch(
    path: str | os.PathLike[str], refs: dict[str, str], current: str | None, pinned: bool
) -> str:
    """The branch to scan now: the pinned one (it must exist), else the repository's own."""
    if pinned and current:
        if branch_ref(refs, current) is None and refs:  # (no refs: an empty repository)
            raise BranchGone(
                f"the default branch {current!r} (pinned with --branch) does not exist in {path};"
                f" if it was renamed, `ob repo add {path} --branch NEW`; to follow the"
                f" repository's default branch instead, `ob repo add {path} --follow`"
            )
        return current
    return follow_default_branch(path, refs, current)


def branch_ref(refs: dict[str, str], branch: str, remote: str | None = None) -> str | None:
    """The ref of the default branch: the remote's copy where there is one (what the last
    fetch saw: the truth, not the operator's local branch), else the local branch, else
    origin's."""
    first = [f"refs/remotes/{remote}/{branch}"] if remote else []
    for name in (*first, f"refs/heads/{branch}", f"refs/remotes/origin/{branch}"):
        if name in refs:
            return name
    return None


def shallow_commits(path: str | os.PathLike[str]) -> list[str]:
    """A shallow clone's boundary commits (those whose parents it lacks), sorted; [] when the
    repository is complete."""
    _, common = git_dirs(path)
    try:
        text = (common / "shallow").read_text("ascii", errors="replace")
    except OSError:
        return []
    return sorted(ln.strip() for ln in text.splitlines() if SHA40.match(ln.strip()))
