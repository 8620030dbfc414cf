"""The git commands as a user runs them: a real `ob` process, real repos, real PostgreSQL."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import create_database, drop_database
from tests.test_cli import ob
from tests.test_git_helpers import repo_factory


@pytest.fixture
async def cli_env(admin_url: str):
    url = await create_database(admin_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
    env.update(OB_DATABASE_URL=url, COLUMNS="200")
    yield env
    await drop_database(admin_url, url)


@pytest.fixture
def make_repo(tmp_path: Path):
    return repo_factory(tmp_path)


def test_repo_reconcile_unverified_and_todo(
    cli_env: dict[str, str], tmp_path: Path, make_repo
) -> None:
    def run(*args: str):
        r = ob(*args, env=cli_env, cwd=tmp_path)
        return r

    repo = make_repo("nexus-ingest")
    repo.commit("init")
    gone = make_repo("gone")
    gone.commit("init")
    assert run("repo", "add", str(repo.path)).returncode == 0
    r = run("repo", "add", str(gone.path), "--name", "old", "--branch", "main")
    assert r.returncode == 0 and "default branch main" in r.stdout
    assert run("add", "Fix the pool", "-r", "nexus-ingest", "-l", "autonomous").returncode == 0
    assert run("add", "Other", "-l", "autonomous").returncode == 0
    repo.commit("Closes OB-1\n\nAgent: codex\n")
    gone_path = gone.path
    shutil.rmtree(gone_path)
    r = run("reconcile")
    assert r.returncode == 4, r.stderr  # a repo failed; the rest was done
    assert "1 closed" in r.stdout and "1 error" in r.stdout and "does not exist" in r.stdout
    r = run("repo", "list")
    assert "nexus-ingest" in r.stdout and "does not exist" in r.stdout
    r = run("log", "OB-1")
    assert "closed_by_commit" in r.stdout and "git:codex" in r.stdout
    r = run("list", "--unverified")
    assert r.returncode == 0 and "every completion is verified" in r.stdout

    r = run("export-todo", "nexus-ingest", "-o", "-")
    assert r.returncode == 0 and r.stdout.startswith("# TODO (nexus-ingest)")
    todo = repo.path / "TODO.md"
    todo.write_text("## New idea\nsteps:\n- look at ingest/db.py\n---\nSecond idea\n")
    r = run("import-todo", "--all")
    assert r.returncode == 0 and "2 filed (OB-3, OB-4)" in r.stdout, r.stdout + r.stderr
    r = run("import-todo", str(todo))
    assert "0 filed, 2 already in the backlog" in r.stdout
    r = run("replan", "OB-2")
    assert r.returncode == 1 and "has no repo" in r.stderr
