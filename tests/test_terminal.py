"""The operator's terminal (issue 17), as a user runs it: real `ob` processes against a real
database. Repair verbs, bulk decisions, the inbox drain, the digest and the feed, and one clear
line for every mistake."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import ob

Env = dict[str, str]


def run(env: Env, cwd: Path, *args: str, stdin: str | None = None):
    return ob(*args, env=env, cwd=cwd, stdin=stdin)


def test_repo_rm(cli_env: Env, tmp_path: Path, make_repo) -> None:
    repo = make_repo("web")
    repo.commit("init")
    assert run(cli_env, tmp_path, "repo", "add", str(repo.path)).returncode == 0
    assert run(cli_env, tmp_path, "add", "fix it", "-r", "web").returncode == 0
    r = run(cli_env, tmp_path, "repo", "rm", "web")
    assert r.returncode == 0, r.stderr
    assert "removed repo web" in r.stdout and "1 unfinished task(s) still name web" in r.stdout
    assert f"ob repo add {repo.path}" in r.stdout
    r = run(cli_env, tmp_path, "repo", "list")
    assert "no repos yet" in r.stdout
    r = run(cli_env, tmp_path, "repo", "rm", "web")
    assert r.returncode == 1 and r.stderr.strip() == (
        "error: no repo named 'web'; see `ob repo list`"
    )
    task = json.loads(run(cli_env, tmp_path, "show", "OB-1", "--json").stdout)
    assert task["repo"] == "web"
