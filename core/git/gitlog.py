"""Reading commits from git: one `git log` process, streamed, parsed in a worker thread and
handed to the event loop in batches (so a first scan of a large history never holds the whole
output, and the event loop stays free for the gateway while it runs).

The format puts NUL between the fields (a commit message cannot contain NUL); each record
starts with RS RS and the 40-hex SHA; with `--name-only -z` the touched files follow as NUL
terminated tokens. Trailers (`Agent:`) are parsed here, and only for the few commits that
name a task, instead of asking git to parse every commit's trailers.

What to read is decided by the reconciler (see reconcile.py): the default branch's new commits
(`tip --not cursor`, newest first in topological order, with file lists) and, separately, the
other branches' new commits (`new tips --not <default tip> <every tip seen before>`, messages
only).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import IO, NamedTuple

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

REC = b"\x1e\x1e"
SEP = b"\x00\x1e\x1e"
FORMAT = "--format=%x1e%x1e%H%x00%P%x00%ae%x00%ct%x00%B"
MAX_FILES = 200  # files kept per commit
MAX_MESSAGE = 1 << 20  # characters of a message searched for keys
BATCH = 2000  # commits handed over at a time
IN_FLIGHT = 16  # chunks read ahead of the parser
READ_CHUNK = 1 << 20

GIT_ENV = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
_MISSING = re.compile(r"bad revision|unknown revision|bad object|invalid object|not a valid", re.I)
_REVERTS = re.compile(r"This reverts commit ([0-9a-fA-F]{7,40})\b")
_REVERT_SUBJECT = re.compile(r"^\s*(?:Revert|Reapply)\s+\"", re.I)
_TRAILER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")


class GitError(Exception):
    """git exited with an error."""

    def __init__(self, args: list[str], returncode: int, stderr: str):
        self.args_ = args
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(
            f"git {args[0] if args else ''} failed ({returncode}): {self.stderr[:300]}"
        )

    @property
    def missing_object(self) -> bool:
        return bool(_MISSING.search(self.stderr))


class Commit(NamedTuple):
    sha: str
    parents: list[str]
    author_email: str
    committed_at: datetime
    message: str
    file_lines: str  # the touched files, one a line (as git_commits.files stores them)

    @property
    def files(self) -> list[str]:
        return self.file_lines.split("\n") if self.file_lines else []

    @property
    def subject(self) -> str:
        return self.message.partition("\n")[0].strip()[:200]

    @property
    def agent(self) -> str | None:
        """The `Agent:` trailer, lower-cased (the first one)."""
        return agent_trailer(self.message)


def _decode(b: bytes) -> str:
    return b.decode("utf-8", errors="replace")


def trailers(message: str) -> list[tuple[str, str]]:
    """The trailers of a message, the way `git interpret-trailers` finds them: the last
    paragraph (never the subject), if it consists of trailers (`Key: value`, continuation
    lines indented), or holds at least 25% trailers and one git wrote (`Signed-off-by`,
    `(cherry picked from commit ...)`)."""
    paras = [p for p in re.split(r"\n[ \t]*\n", message.strip()) if p.strip()]
    if len(paras) < 2:
        return []
    lines = [ln for ln in paras[-1].split("\n") if not ln.startswith("#")]
    found: list[tuple[str, str]] = []
    other = 0
    git_made = False
    for ln in lines:
        if ln[:1] in (" ", "\t") and found:
            found[-1] = (found[-1][0], found[-1][1] + " " + ln.strip())
            continue
        m = _TRAILER.match(ln)
        if m:
            found.append((m.group(1), m.group(2).strip()))
            git_made = git_made or m.group(1).lower() == "signed-off-by"
        elif ln.startswith("(cherry picked from commit "):
            git_made = True
        else:
            other += 1
    if not found:
        return []
    if other and not (git_made and len(found) * 3 >= other):
        return []
    return found


def agent_trailer(message: str) -> str | None:
    if "agent" not in message.lower():
        return None
    for key, value in trailers(message):
        if key.lower() == "agent":
            value = value.split(",")[0].strip().lower()
            if value:
                return value[:40]
    return None


def reverted_shas(message: str) -> list[str] | None:
    """What a revert commit reverts: the SHAs of its `This reverts commit X.` lines (empty
    when a `Revert "..."` subject names none); None when the commit is not a revert."""
    found = [m.group(1).lower() for m in _REVERTS.finditer(message)]
    if found:
        return list(dict.fromkeys(found))
    if _REVERT_SUBJECT.match(message):
        return []
    return None


class LogParser:
    """Incremental parser of the NUL-separated log: feed bytes, get finished commits.

    Records are split on NUL RS RS (a message holds no NUL, so only a record start follows a
    NUL with RS RS; a file name starting with RS RS would be misread, and none does), then
    each record on NUL into its fields and files."""

    def __init__(self) -> None:
        self.buf: list[bytes] = []
        self.tail = b""  # the last bytes seen, for a separator split across two chunks
        self.first = True

    def feed(self, data: bytes) -> list[Commit]:
        probe = self.tail + data[:2]
        self.tail = (self.tail + data)[-2:]
        self.buf.append(data)
        if SEP not in probe and SEP not in data:
            return []  # still inside one record (a long message): join once it ends
        parts = b"".join(self.buf).split(SEP)
        rest = parts.pop()
        self.buf = [rest] if rest else []
        return [c for c in map(self._record, parts) if c is not None]

    def close(self) -> list[Commit]:
        data = b"".join(self.buf)
        self.buf, self.tail = [], b""
        if not data.strip(b"\x00\n"):
            return []
        c = self._record(data)
        return [c] if c is not None else []

    def _record(self, rec: bytes) -> Commit | None:
        if self.first:
            self.first = False
            if not rec.startswith(REC):
                return None  # output before the first record (none is expected)
            rec = rec[2:]
        f = rec.split(b"\x00", 5)
        if len(f) < 5:
            f += [b""] * (5 - len(f))
        try:
            when = datetime.fromtimestamp(int(f[3] or b"0"), UTC)
        except (ValueError, OverflowError):
            when = datetime.fromtimestamp(0, UTC)
        files = ""
        if len(f) > 5 and f[5]:
            names = f[5].rstrip(b"\x00")
            if names.count(b"\x00") >= MAX_FILES:
                names = b"\x00".join(names.split(b"\x00", MAX_FILES)[:MAX_FILES])
            files = names.decode("utf-8", "replace").lstrip("\n").replace("\x00", "\n")
        return Commit(
            f[0].decode("ascii", "replace"),
            f[1].decode("ascii", "replace").split(),
            f[2].decode("utf-8", "replace").strip().lower()[:320],
            when,
            f[4][:MAX_MESSAGE].decode("utf-8", "replace"),
            files,
        )


def parse_log(out: bytes) -> list[Commit]:
    """Parse a whole log output at once."""
    p = LogParser()
    return p.feed(out) + p.close()


def log_args(*, files: bool, topo: bool = False) -> list[str]:
    args = ["log", "-z", "--no-color", "--no-show-signature", FORMAT]
    if topo:
        args.append("--topo-order")
    if files:
        args += ["--name-only", "--no-renames", "--no-ext-diff"]
    return args


def run_git(path: str | os.PathLike[str], *args: str, check: bool = True) -> tuple[int, bytes]:
    """Run a short git command; (return code, stdout)."""
    out = subprocess.run(
        ["git", *args],
        cwd=path,
        env=GIT_ENV,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if check and out.returncode != 0:
        raise GitError(list(args), out.returncode, _decode(out.stderr))
    return out.returncode, out.stdout


def rev_list(path: str | os.PathLike[str], *args: str) -> list[str]:
    """`git rev-list ARGS`: SHAs, in git's order."""
    _, out = run_git(path, "rev-list", *args)
    return out.decode("ascii", errors="replace").split()


async def stream_log(
    path: str | os.PathLike[str],
    args: list[str],
    *,
    stdin: bytes | None = None,
    batch: int = BATCH,
) -> AsyncGenerator[list[Commit], None]:
    """Run `git ARGS` and yield its commits in batches, in git's order (`stdin`: written to
    git first, e.g. revisions for `--stdin`, which git reads before it writes anything).
    Raises GitError (after the batches read so far) when git fails.

    A worker thread only drains git's stdout (it holds the GIL for a moment per chunk, so git
    never waits on Python); the chunks are parsed here, between the consumer's awaits. At most
    IN_FLIGHT chunks wait, so memory stays bounded however large the history."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
    room = threading.Semaphore(IN_FLIGHT)
    stop = threading.Event()
    procs: list[subprocess.Popen[bytes]] = []

    def hand_over(item: bytes | BaseException | None) -> bool:
        if isinstance(item, bytes):
            while not room.acquire(timeout=0.1):
                if stop.is_set():
                    return False
        if stop.is_set():
            return False
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is gone: nobody is listening any more
            return False
        return True

    def work() -> None:
        try:
            with tempfile.TemporaryFile() as err:
                proc = subprocess.Popen(
                    ["git", *args],
                    cwd=path,
                    env=GIT_ENV,
                    stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                )
                procs.append(proc)
                stdout: IO[bytes] = proc.stdout  # type: ignore[assignment]
                _widen_pipe(stdout)
                if stdin is not None:
                    assert proc.stdin is not None
                    try:
                        proc.stdin.write(stdin)
                        proc.stdin.close()
                    except BrokenPipeError:  # git failed early; its stderr says why
                        pass
                while not stop.is_set():
                    chunk = stdout.read1(READ_CHUNK)  # type: ignore[attr-defined]
                    if not chunk or not hand_over(chunk):
                        break
                if stop.is_set():
                    proc.kill()
                    proc.wait()
                    return
                stdout.close()
                rc = proc.wait()
                if rc != 0:
                    err.seek(0)
                    hand_over(GitError(args, rc, _decode(err.read())))
                    return
            hand_over(None)
        except BaseException as exc:  # handed to the consumer, raised there
            hand_over(exc)

    worker = threading.Thread(target=work, name="ob-git-log", daemon=True)
    worker.start()
    parser = LogParser()
    pending: list[Commit] = []
    try:
        while True:
            item = await queue.get()
            if item is None:
                pending.extend(parser.close())
                if pending:
                    yield pending
                return
            if isinstance(item, BaseException):
                raise item
            room.release()
            pending.extend(parser.feed(item))
            if len(pending) >= batch:
                yield pending
                pending = []
    finally:
        stop.set()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def _widen_pipe(f: IO[bytes]) -> None:
    """Let git write up to 1 MiB ahead of the reader (Linux; elsewhere the default stays)."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl else None
    if setsize is None:
        return
    with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size, or not a pipe
        fcntl.fcntl(f.fileno(), setsize, 1 << 20)
