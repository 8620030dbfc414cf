"""Real git repositories in temp dirs for the git tests (the `git` CLI, no mocks)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}


class GitRepo:
    def __init__(self, path: Path, branch: str = "main"):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", branch)
        self.git("config", "commit.gpgsign", "false")
        self.n = 0

    def git(self, *args: str, input: bytes | None = None, email: str | None = None) -> str:
        return self.run_git(self.path, *args, input=input, email=email)

    @staticmethod
    def run_git(cwd: Path, *args: str, input: bytes | None = None, email: str | None = None) -> str:
        env = {**os.environ, **GIT_ENV, "HOME": str(cwd)}
        if email:
            env["GIT_AUTHOR_EMAIL"] = email
        out = subprocess.run(
            ["git", *args], cwd=cwd, env=env, input=input, capture_output=True, check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)}: {out.stderr.decode(errors='replace')}")
        return out.stdout.decode("utf-8", errors="replace").strip()

    def commit(
        self, message: str | bytes, files: dict[str, str] | None = None, email: str | None = None
    ) -> str:
        self.n += 1
        for name, content in (files or {f"file{self.n}.txt": f"change {self.n}\n"}).items():
            f = self.path / name
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(content)
            self.git("add", name)
        msg = message if isinstance(message, bytes) else message.encode()
        self.git("commit", "-q", "--allow-empty", "-F", "-", input=msg, email=email)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")


def repo_factory(tmp_path: Path):
    """make_repo("web") -> a GitRepo under tmp_path/repos (the `make_repo` fixture)."""

    def make(name: str, branch: str = "main") -> GitRepo:
        return GitRepo(tmp_path / "repos" / name, branch)

    return make


class Forge:
    """A bare "origin" in a temp dir (what GitHub or GitLab holds), with clones of it: the
    operator's (registered with ob) and the agents' (which commit and push)."""

    def __init__(self, root: Path, name: str = "origin", branch: str = "main"):
        self.root = root
        self.path = root / f"{name}.git"
        self.path.mkdir(parents=True)
        self.branch = branch
        self.git("init", "-q", "--bare", "-b", branch)

    @property
    def url(self) -> str:
        return str(self.path)

    def git(self, *args: str) -> str:
        return GitRepo.run_git(self.path, *args)

    def clone(self, name: str, *args: str, url: str | None = None) -> GitRepo:
        """A working clone of the origin under root/name (extra `git clone` args, e.g.
        --depth 3 with url=file://...)."""
        path = self.root / name
        GitRepo.run_git(self.root, "clone", "-q", *args, url or self.url, str(path))
        repo = GitRepo.__new__(GitRepo)
        repo.path, repo.n = path, 0
        repo.git("config", "commit.gpgsign", "false")
        return repo

    def head(self, branch: str | None = None) -> str:
        return self.git("rev-parse", f"refs/heads/{branch or self.branch}")
