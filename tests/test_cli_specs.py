"""The single-spec paths of the CLI agree with the file path: `ob add -f` with several specs,
a spec without a title, the status as written on `ob show` and `ob list`, and `ob import-todo
--dry-run` / `ob export-todo --dry-run` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import ob

SEVERAL = """\
Rotate the ingest credentials
Status: blocked (2026-11-18) — waiting for finance
priority: P0
---
Cache the embeddings
risk: a stale cache after a model upgrade
step: hash the normalised text
"""


def test_add_files_each_spec_of_a_file_and_shows_the_status_as_written(
    cli_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    r = ob("add", "-f", "-", env=cli_env, cwd=tmp_path, stdin=SEVERAL)
    assert r.returncode == 0, r.stderr
    assert "filed OB-1, OB-2 into requires_triage" in r.stdout
    r = ob("list", "--json", env=cli_env, cwd=tmp_path)
    tasks = {t["key"]: t for t in json.loads(r.stdout)}
    assert tasks["OB-2"]["risks"] == ["a stale cache after a model upgrade"]
    assert tasks["OB-2"]["steps"] == ["hash the normalised text"]
    assert (tasks["OB-1"]["status_word"], tasks["OB-1"]["status_date"]) == ("blocked", "2026-11-18")
    r = ob("show", "OB-1", env=cli_env, cwd=tmp_path)
    assert "status as written: blocked since 2026-11-18 — waiting for finance" in r.stdout
    r = ob("list", env=cli_env, cwd=tmp_path)
    assert "open (blocked)" in r.stdout
    r = ob("list", "-q", "normalised", "--json", env=cli_env, cwd=tmp_path)  # steps are searched
    assert [t["key"] for t in json.loads(r.stdout)] == ["OB-2"]
    r = ob("spec", "OB-1", env=cli_env, cwd=tmp_path)
    assert "status: blocked 2026-11-18 — waiting for finance\n" in r.stdout

    # one bad spec of several: none is filed, the problem names the spec and its line
    r = ob("add", "-f", "-", env=cli_env, cwd=tmp_path, stdin="A\n---\nB\npriority: P7\n")
    assert r.returncode == 1 and "spec 2 (line 3): line 2: priority must be" in r.stderr
    # a first line that is a field label is no title
    r = ob("add", "-f", "-", env=cli_env, cwd=tmp_path, stdin="steps:\n- a step\n")
    assert r.returncode == 1 and "the first line must be the title" in r.stderr
    # an unknown status word is kept, with a warning
    r = ob("add", "-f", "-", env=cli_env, cwd=tmp_path, stdin="Tidy\nstatus: marinating\n")
    assert r.returncode == 0 and "not a word ob knows" in r.stderr
    # `ob edit -f` takes one spec
    r = ob("edit", "OB-1", "-f", "-", env=cli_env, cwd=tmp_path, stdin=SEVERAL)
    assert r.returncode == 1 and "holds 2 specs" in r.stderr
    r = ob("list", "--json", env=cli_env, cwd=tmp_path)
    assert len(json.loads(r.stdout)) == 3


def test_import_dry_run_and_export_diff(
    cli_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    make_repo,
) -> None:
    todo = tmp_path / "TODO.md"
    text = (
        "# TODO\n\nNotes: kept.\n\n## Now\n- [ ] write docs\n- [x] ship it\n\n"
        "## broken\npriority: P9\n"
    )
    todo.write_text(text)
    r = ob("import-todo", str(todo), "--dry-run", env=cli_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "1 would be filed" in r.stdout and "1 could not be read" in r.stdout
    assert "write docs" in r.stdout and "checked" in r.stdout and "priority must be" in r.stdout
    assert "dry run: nothing was written" in r.stdout
    r = ob("list", "--json", env=cli_env, cwd=tmp_path)
    assert json.loads(r.stdout) == []
    r = ob("import-todo", str(todo), "-r", "web", env=cli_env, cwd=tmp_path)
    assert (
        "1 filed (OB-1)" in r.stdout
        and "not read: line 9: broken: line 10: priority must" in r.stdout
    )
    assert "no repo named 'web' is registered" in r.stderr  # as `ob add -r` warns

    git = make_repo("web")
    git.commit("init")
    repo = git.path
    assert ob("repo", "add", str(repo), env=cli_env, cwd=tmp_path).returncode == 0
    (repo / "TODO.md").write_text(text)
    r = ob("export-todo", "web", "--dry-run", env=cli_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "in the file without their key" in r.stdout and "up to date" in r.stdout
    ob("add", "Sign the release", "-r", "web", env=cli_env, cwd=tmp_path)
    r = ob("export-todo", "web", "--dry-run", env=cli_env, cwd=tmp_path)
    assert "+## Sign the release" in r.stdout and "would change" in r.stdout
    assert (repo / "TODO.md").read_text() == text
    r = ob("export-todo", "web", env=cli_env, cwd=tmp_path)
    assert r.returncode == 0 and "TODO.md.orig" in r.stdout
    assert (repo / "TODO.md").read_text().startswith(text)
    # again: the owned spec is written as it is; nothing was rewritten, and it says so
    r = ob("export-todo", "web", env=cli_env, cwd=tmp_path)
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout
    assert "rewritten" not in r.stdout, r.stdout
    # a later export keeps the file it replaced too, and the original stays
    ob("add", "Tag the release", "-r", "web", env=cli_env, cwd=tmp_path)
    exported = (repo / "TODO.md").read_text()
    r = ob("export-todo", "web", env=cli_env, cwd=tmp_path)
    said = " ".join(r.stdout.split())
    assert f"the previous file is kept as {repo / 'TODO.md.orig.1'}" in said, said
    assert "the earlier backups stay too, until you delete them" in said
    assert (repo / "TODO.md.orig").read_text() == text
    assert (repo / "TODO.md.orig.1").read_text() == exported


def test_edit_from_the_printed_spec_changes_the_status_as_written(
    cli_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    """`ob spec KEY > s.txt; $EDITOR s.txt; ob edit KEY -f s.txt` with the status line changed
    to a word awaiting the operator (not a lifecycle verb's job) changes it; it is not
    "nothing changed"."""
    r = ob("add", "Rotate the ingest credentials", "-r", "ingest", env=cli_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    printed = ob("spec", "OB-1", env=cli_env, cwd=tmp_path).stdout
    status_line = next(ln for ln in printed.splitlines() if ln.startswith("status:"))
    edited = printed.replace(status_line, "status: blocked 2026-11-18 — waiting for finance")
    r = ob("edit", "OB-1", "-f", "-", env=cli_env, cwd=tmp_path, stdin=edited)
    assert r.returncode == 0, r.stderr
    assert "nothing changed" not in r.stdout and "status" in r.stdout
    task = json.loads(ob("show", "OB-1", "--json", env=cli_env, cwd=tmp_path).stdout)
    assert (task["status"], task["status_word"], task["status_date"], task["status_reason"]) == (
        "open",
        "blocked",
        "2026-11-18",
        "waiting for finance",
    )
    # the spec as printed now edits nothing; writing the lifecycle back clears the word
    again = ob("spec", "OB-1", env=cli_env, cwd=tmp_path).stdout
    assert "status: blocked 2026-11-18 — waiting for finance" in again
    r = ob("edit", "OB-1", "-f", "-", env=cli_env, cwd=tmp_path, stdin=again)
    assert r.returncode == 0 and "nothing changed" in r.stdout, r.stdout + r.stderr
    cleared = again.replace("status: blocked 2026-11-18 — waiting for finance", "status: open")
    r = ob("edit", "OB-1", "-f", "-", env=cli_env, cwd=tmp_path, stdin=cleared)
    assert r.returncode == 0, r.stderr
    task = json.loads(ob("show", "OB-1", "--json", env=cli_env, cwd=tmp_path).stdout)
    assert (task["status"], task["status_word"], task["status_reason"]) == ("open", None, None)


def test_a_status_dated_in_the_future_is_not_since_then(
    cli_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    """`status: planned 2099-01-15` is planned for that day: the card says so, not "planned
    since 2099-01-15"."""
    spec = "Drop the v1 endpoint\nstatus: planned 2099-01-15 — after the clients move\n"
    r = ob("add", "-f", "-", env=cli_env, cwd=tmp_path, stdin=spec)
    assert r.returncode == 0, r.stderr
    r = ob("show", "OB-1", env=cli_env, cwd=tmp_path)
    assert "status as written: planned 2099-01-15 — after the clients move" in r.stdout, r.stdout
    assert "since 2099" not in r.stdout
