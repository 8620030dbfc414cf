"""The git commands as a user runs them: a real `ob` process, real repos, real PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import create_database, drop_database
from tests.test_cli import ob


@pytest.fixture
async def cli_env(admin_url: str):
    url = await create_database(admin_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
    env.update(OB_DATABASE_URL=url, COLUMNS="200")
    yield env
    await drop_database(admin_url, url)


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


def test_rewrites_skips_checklists_and_branches_as_the_user_sees_them(
    cli_env: dict[str, str], tmp_path: Path, make_repo
) -> None:
    roots = tmp_path / "repos"
    env = {**cli_env, "OB_REPO_ROOTS": str(roots)}

    def run(*args: str):
        return ob(*args, env=env, cwd=tmp_path)

    repo = make_repo("web")
    repo.commit("init")
    junk = roots / "junk"
    junk.mkdir(parents=True)
    (junk / ".git").write_text("garbage\n")
    assert run("add", "Fix the login", "-l", "autonomous").returncode == 0
    fix = repo.commit("Fix the login\n\nCloses: OB-1\n")

    r = run("reconcile")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "discovered: web" in r.stdout and "1 folder(s) under OB_REPO_ROOTS skipped" in r.stdout
    assert str(junk) in r.stdout and "not a gitdir link" in r.stdout
    assert "1 closed" in r.stdout and "commit(s) read" in r.stdout
    r = run("repo", "list")
    assert "web" in r.stdout and "main" in r.stdout and "not a gitdir link" in r.stdout

    repo.git("revert", "--no-edit", fix)
    r = run("reconcile")
    assert r.returncode == 0 and "1 lost their evidence" in r.stdout, r.stdout
    r = run("list", "--unverified")
    assert "OB-1" in r.stdout and "evidence reverted" in r.stdout

    r = run("repo", "add", str(repo.path), "--branch", "main")
    assert r.returncode == 0 and "default branch main, pinned" in r.stdout
    r = run("repo", "add", str(repo.path), "--follow")
    assert r.returncode == 0 and "default branch main, followed" in r.stdout

    todo = repo.path / "TODO.md"
    todo.write_text("# TODO\n\n- [ ] write docs\n- [x] ship it\n- [ ] add tests\n")
    r = run("import-todo", str(todo))
    assert r.returncode == 0, r.stderr
    assert "2 filed (OB-2, OB-3)" in r.stdout and "1 skipped (1 checked item(s))" in r.stdout
    big = tmp_path / "big.md"
    big.write_bytes(b"## big\n" + b"x" * (5 * 1024 * 1024))
    r = run("import-todo", str(big))
    assert r.returncode != 0 and "at most 4 MiB" in r.stderr


def test_remotes_as_the_operator_sees_them(
    cli_env: dict[str, str], tmp_path: Path, make_forge
) -> None:
    """`ob repo add URL` keeps a bare clone; fetching is on by default, off per repo or per
    run; a fetch that fails says why and how old the truth is; `ob show` shows the drift."""
    env = {**cli_env, "OB_DATA_DIR": str(tmp_path / "data")}

    def run(*args: str):
        return ob(*args, env=env, cwd=tmp_path)

    forge, other = make_forge("nexus-ingest"), make_forge("other")
    agent = forge.clone("agent")
    agent.commit("init", files={"ingest/writer.py": "v1\n"})
    agent.git("push", "-q", "origin", "main")
    other_agent = other.clone("agent")
    other_agent.commit("init")
    other_agent.git("push", "-q", "origin", "main")
    url = f"file://{forge.path}"
    r = run("repo", "add", f"file://{other.path}")
    assert r.returncode == 0, r.stderr
    clone = tmp_path / "data" / "clones" / "origin.git"
    assert f"repo origin at {clone}" in r.stdout and "fetches origin before each" in r.stdout
    r = run("repo", "add", url, "--name", "ingest")
    assert r.returncode == 0 and "ingest" in r.stdout, r.stderr
    # one registration per remote and branch: a second would read every commit twice
    r = run("repo", "add", url, "--name", "ingest2")
    assert r.returncode == 1 and "registered already as 'ingest'" in r.stderr, r.stderr
    assert not (tmp_path / "data" / "clones" / "ingest2.git").exists()
    r = run("repo", "add", str(agent.path), "--name", "agent-clone")
    assert r.returncode == 1 and "registered already as 'ingest'" in r.stderr, r.stderr
    assert run("reconcile").returncode == 0
    r = run(
        "add", "Batch inserts", "-r", "ingest", "-l", "autonomous", "-s", "rewrite ingest/writer.py"
    )
    assert r.returncode == 0, r.stderr
    agent.commit("writer: flush every 100 rows", files={"ingest/writer.py": "v2\n"})
    agent.commit("Batch the inserts\n\nCloses: OB-9\n")
    agent.git("push", "-q", "origin", "main")

    r = run("reconcile", "--no-fetch")
    assert r.returncode == 0 and "0 commit(s) read" in r.stdout, r.stdout
    r = run("reconcile", "ingest")
    assert r.returncode == 0 and "2 commit(s) read" in r.stdout, r.stdout
    r = run("show", "OB-1")
    assert "2 commit(s) on ingest since the plan was approved" in r.stdout, r.stdout
    assert "ingest/writer.py" in r.stdout and "as of the last fetch of ingest" in r.stdout

    r = run("repo", "set", "origin", "--no-fetch")
    assert r.returncode == 0 and "origin not fetched (--no-fetch)" in r.stdout
    shutil.rmtree(forge.path)  # the forge lost the repository
    r = run("reconcile")
    assert r.returncode == 0, r.stdout  # a failed fetch is shown; the round went on
    assert "1 fetch(es) failed" in r.stdout and "fetch failed:" in r.stdout
    r = run("repo", "list")
    assert "fetch failed" in r.stdout and "last good fetch" in r.stdout, r.stdout
    assert "off (--no-fetch)" in r.stdout and "(ob's clone)" in r.stdout
    (ingest,) = [
        i for i in json.loads(run("repo", "list", "--json").stdout) if i["name"] == "ingest"
    ]
    assert "does not appear to be a git repository" in ingest["fetch_error"]
    assert ingest["last_fetch_at"] is not None
    r = run("status")
    assert "git: 1 repo(s) fetched, 1 failing to fetch" in r.stdout, r.stdout
    assert "ingest: last good fetch" in r.stdout and "fetch failed" in r.stdout
    r = run("repo", "add", "https://127.0.0.1:9/nothing/here.git", "--name", "gone")
    assert r.returncode != 0 and "git clone" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "data" / "clones" / "gone.git").exists()


def test_export_and_import_of_a_repo_without_a_work_tree(
    cli_env: dict[str, str], tmp_path: Path, make_forge
) -> None:
    """A repo ob keeps as a bare clone (`ob repo add URL`) has no TODO.md a person edits:
    `ob export-todo` does not write one into the git directory (it says how to write it
    elsewhere), and `ob import-todo --all` does not read one from there."""
    env = {**cli_env, "OB_DATA_DIR": str(tmp_path / "data")}

    def run(*args: str):
        return ob(*args, env=env, cwd=tmp_path)

    forge = make_forge("web")
    agent = forge.clone("agent")
    agent.commit("init")
    agent.git("push", "-q", "origin", "main")
    assert run("repo", "add", f"file://{forge.path}", "--name", "web").returncode == 0
    assert run("add", "Fix the header", "-r", "web").returncode == 0
    clone = tmp_path / "data" / "clones" / "web.git"
    for args in (("export-todo", "web"), ("export-todo", "web", "--dry-run")):
        r = run(*args)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
        assert "web has no work tree" in r.stderr and "-o" in r.stderr, r.stderr
        assert not (clone / "TODO.md").exists()
    r = run("export-todo", "web", "-o", "-")
    assert r.returncode == 0 and "## Fix the header" in r.stdout, r.stderr
    out = tmp_path / "web-TODO.md"
    r = run("export-todo", "web", "-o", str(out))
    assert r.returncode == 0 and "## Fix the header" in out.read_text(), r.stderr
    (clone / "TODO.md").write_text("- [ ] not the repo's file\n")  # left in the git dir
    r = run("import-todo", "--all")
    assert r.returncode == 0 and "not the repo" not in r.stdout, r.stdout
    assert "no TODO.md files found" in r.stdout


def test_show_with_no_new_commits_but_a_mention_elsewhere(
    cli_env: dict[str, str], tmp_path: Path, make_repo
) -> None:
    """No commit since the plan, but another repo's commit mentions the task: `ob show` says
    there are none (no "0 commit(s) ...:" over an empty list) and names each mention once,
    with its repo."""

    def run(*args: str):
        return ob(*args, env=cli_env, cwd=tmp_path)

    api, web = make_repo("api"), make_repo("web")
    api.commit("init")
    web.commit("init")
    assert run("repo", "add", str(api.path)).returncode == 0
    assert run("repo", "add", str(web.path)).returncode == 0
    assert run("add", "Tune the pool", "-r", "api", "-l", "autonomous").returncode == 0
    sha = web.commit("Pool settings, see OB-1")
    assert run("reconcile").returncode == 0
    r = run("show", "OB-1")
    assert r.returncode == 0, r.stderr
    assert "0 commit(s)" not in r.stdout, r.stdout
    assert "no commits on api since the plan was approved" in r.stdout, r.stdout
    assert f"commits already mention this task: {sha[:10]} (web)" in r.stdout, r.stdout
