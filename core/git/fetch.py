"""Fetching: bring a repository's remote-tracking branches up to date before it is read.

Only the default branch's remote is fetched (`branch.<default>.remote` in the repository's git
config, else `origin`, else its only remote), with that remote's own refspec, `--prune` and no
tags; nothing else is touched: no pull, no merge, no checkout, so the operator's work tree and
local branches stay as they are (the reconciler reads the remote-tracking branch). Credentials
come from the user's own git configuration (ssh agent, credential helper); ob stores none and
never waits for a prompt: git runs with GIT_TERMINAL_PROMPT=0, no terminal (a session of its
own, so ssh cannot ask either), and a timeout after which its whole process group is stopped.

`ob repo add URL` keeps a bare clone under the data dir (`clone_bare`), whose refspec maps the
remote's branches onto its own, so it is fetched like any other repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from core.git.gitlog import GIT_ENV

FETCH_ENV = {
    **GIT_ENV,
    "GIT_TERMINAL_PROMPT": "0",  # git: never ask for a user name or password
    "SSH_ASKPASS_REQUIRE": "never",  # ssh: never pop up an askpass program
    "GCM_INTERACTIVE": "never",  # Git Credential Manager: no dialog
}
BARE_REFSPEC = "+refs/heads/*:refs/heads/*"

_HINTS = (
    ("terminal prompts disabled", "git needs credentials it has no helper for"),
    ("could not read username", "git needs credentials it has no helper for"),
    ("permission denied", "the ssh key was refused"),
    ("host key verification failed", "ssh does not know the host's key yet"),
)
CREDENTIALS_HINT = (
    "; ob never prompts: set up an ssh agent or a credential helper for this user"
    " (`git fetch` in the repo must work without asking), or `ob repo set NAME --no-fetch`"
)


@dataclass
class FetchOutcome:
    ok: bool
    error: str | None = None
    seconds: float = 0.0


async def _run(args: list[str], cwd: str | os.PathLike[str], timeout: float) -> tuple[int, str]:
    """Run git with no terminal and no prompt; stop its whole process group after `timeout`.
    Returns (exit code, stderr); -1 when it was stopped."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=FETCH_ENV,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # no controlling terminal: ssh cannot prompt either
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError) as stopped:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if isinstance(stopped, asyncio.CancelledError):
            raise
        return -1, ""
    return proc.returncode or 0, err.decode("utf-8", errors="replace")


def describe_failure(stderr: str) -> str:
    """git's complaint in one line, with what to do about a credentials problem."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    text = " ".join(ln.removeprefix("fatal: ").removeprefix("error: ") for ln in lines)[:300]
    low = stderr.lower()
    for needle, why in _HINTS:
        if needle in low:
            return f"{why}: {text}{CREDENTIALS_HINT}"
    return text or "git fetch failed without saying why"


async def fetch_remote(path: str, remote: str, timeout: float) -> FetchOutcome:
    """`git fetch --prune --no-tags REMOTE` in the repository (remote-tracking refs only)."""
    t0 = time.perf_counter()
    args = [
        "fetch",
        "--prune",
        "--no-tags",
        "--quiet",
        "--no-write-fetch-head",
        "--no-recurse-submodules",
        remote,
    ]
    rc, err = await _run(args, path, timeout)
    seconds = time.perf_counter() - t0
    if rc == -1:
        why = f"git fetch {remote} took over {timeout:g}s and was stopped (OB_FETCH_TIMEOUT)"
        return FetchOutcome(False, why, seconds)
    if rc != 0:
        return FetchOutcome(False, describe_failure(err), seconds)
    return FetchOutcome(True, None, seconds)


class CloneError(Exception):
    """`git clone` failed; the message says why."""


async def clone_bare(url: str, target: Path, timeout: float) -> None:
    """A bare clone of `url` at `target` whose fetch keeps every branch of the remote as its own
    (refs/heads/*), so HEAD names the remote's default branch. Made in a temporary folder next
    to the target and moved into place: a failed clone leaves nothing behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        clone = ["clone", "--bare", "--quiet", "--no-tags", url, str(tmp)]
        rc, err = await _run(clone, target.parent, timeout)
        if rc == -1:
            raise CloneError(f"git clone {url} took over {timeout:g}s and was stopped")
        if rc != 0:
            raise CloneError(f"git clone {url} failed: {describe_failure(err)}")
        rc, err = await _run(["config", "remote.origin.fetch", BARE_REFSPEC], tmp, timeout)
        if rc != 0:
            raise CloneError(f"cannot configure the clone: {describe_failure(err)}")
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
