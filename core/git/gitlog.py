"""One `git log` per repository, with a custom format, read as bytes and split on NUL.

A commit message cannot contain NUL, so NUL separates the fields; each record starts with
RS RS and the 40-hex SHA; `--name-only -z` lists the touched files after the fields. The log
covers every branch tip minus what the last scan already read from the default branch
(`tips --not cursor`); which commits are on the default branch is worked out here from the
parent links (everything reachable from the default tip inside the output), so the default
branch and the other branches are read in one call.

If the cursor is no longer an ancestor of the default tip (a force-push), the same output
still holds every rewritten commit (git lists what the cursor cannot reach); if the cursor
object is gone altogether, a window of the newest commits is read instead.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import git

REC = b"\x1e\x1e"
FORMAT = (
    "--format=%x1e%x1e%H%x00%P%x00%ae%x00%ct%x00"
    "%(trailers:key=Agent,valueonly,separator=%x2C)%x00%B"
)
WINDOW = 1000  # commits read when the cursor object no longer exists
MAX_FILES = 200  # files kept per commit
MAX_MESSAGE = 1 << 20  # characters of a message searched for keys
_MISSING = re.compile(r"bad revision|unknown revision|bad object|invalid object|not a valid", re.I)


@dataclass
class Commit:
    sha: str
    parents: list[str]
    author_email: str
    committed_at: datetime
    agent: str | None
    message: str
    files: list[str] = field(default_factory=list)
    on_default: bool = False

    @property
    def subject(self) -> str:
        line = self.message.split("\n", 1)[0].strip()
        return line[:200]


@dataclass
class LogScan:
    commits: list[Commit]  # in `git log --topo-order` order: newest first
    default_tip: str
    rewritten: bool  # the cursor is not an ancestor of the default tip
    windowed: bool  # the cursor object was gone; a window was read
    boundary: set[str]  # parents of default commits outside the output (already read)

    @property
    def default_commits(self) -> list[Commit]:
        return [c for c in self.commits if c.on_default]


def _decode(b: bytes) -> str:
    return b.decode("utf-8", errors="replace")


def parse_log(out: bytes) -> list[Commit]:
    commits: list[Commit] = []
    tokens = out.split(b"\x00")
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        if not tok.startswith(REC) or i + 5 >= n:
            if commits and tok.strip(b"\n"):
                cur = commits[-1]
                if len(cur.files) < MAX_FILES:
                    cur.files.append(_decode(tok.lstrip(b"\n")))
            i += 1
            continue
        sha = tok[2:].decode("ascii", errors="replace")
        parents = tokens[i + 1].decode("ascii", errors="replace").split()
        email = _decode(tokens[i + 2]).strip().lower()[:320]
        try:
            when = datetime.fromtimestamp(int(tokens[i + 3] or b"0"), UTC)
        except (ValueError, OverflowError):
            when = datetime.fromtimestamp(0, UTC)
        agents = [a.strip().lower() for a in _decode(tokens[i + 4]).split(",") if a.strip()]
        message = _decode(tokens[i + 5][:MAX_MESSAGE])
        commits.append(
            Commit(
                sha=sha,
                parents=parents,
                author_email=email,
                committed_at=when,
                agent=agents[0][:40] if agents else None,
                message=message,
            )
        )
        i += 6
    return commits


def read_log(
    path: str | os.PathLike[str],
    default_tip: str,
    tips: list[str],
    cursor: str | None,
    *,
    window: int = WINDOW,
) -> LogScan:
    """Read everything new in one `git log` call (two only when the cursor object is gone)."""
    g = git.Git(str(path))
    heads = sorted({default_tip, *tips})
    args = ["--topo-order", "-z", "--name-only", "--no-renames", FORMAT, *heads]
    windowed = False
    if cursor:
        try:
            out = g.log(*args, "--not", cursor, stdout_as_string=False)
        except git.GitCommandError as err:
            if not _MISSING.search(str(err.stderr)):
                raise
            out = g.log(f"--max-count={window}", *args, stdout_as_string=False)
            windowed = True
    else:
        out = g.log(*args, stdout_as_string=False)
    commits = parse_log(out)

    # the default branch: everything reachable from its tip inside the output
    by_sha = {c.sha: c for c in commits}
    boundary: set[str] = set()
    stack = [default_tip] if default_tip in by_sha else []
    if not stack:  # the tip is already known (e.g. the branch was reset to an older commit)
        boundary.add(default_tip)
    while stack:
        c = by_sha.get(stack.pop())
        if c is None or c.on_default:
            continue
        c.on_default = True
        for p in c.parents:
            if p in by_sha:
                stack.append(p)
            else:
                boundary.add(p)
    rewritten = windowed
    if cursor and cursor != default_tip and not windowed:
        # the cursor is an ancestor iff some new default commit has it as a parent
        rewritten = cursor not in boundary
    return LogScan(commits, default_tip, rewritten, windowed, boundary)
