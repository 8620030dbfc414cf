"""The `ob` command as a user runs it: a real process against a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil


def ob(
    *args: str, env: dict[str, str], cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_operator_tour(cli_env: dict[str, str], tmp_path: Path) -> None:
    r = ob(
        "add",
        "Fix login timeout",
        "-r",
        "web",
        "-p",
        "P1",
        "-l",
        "autonomous",
        "-s",
        "raise timeout",
        "--risk",
        "masks outages",
        env=cli_env,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "filed OB-1 into autonomous_safe" in r.stdout

    spec = "Tune the pool\nrepo: api\npriority: P0\nsteps:\n- measure\n- tune\n"
    r = ob("add", "-f", "-", "--json", env=cli_env, cwd=tmp_path, stdin=spec)
    assert r.returncode == 0, r.stderr
    task = json.loads(r.stdout)
    assert (task["key"], task["priority"], task["steps"]) == ("OB-2", 0, ["measure", "tune"])

    r = ob("list", env=cli_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["key", "P", "status", "lane"]
    assert lines[1].split()[0] == "OB-2" and lines[2].split()[0] == "OB-1"  # priority first

    r = ob("list", "--json", "--lane", "autonomous", env=cli_env, cwd=tmp_path)
    assert [t["key"] for t in json.loads(r.stdout)] == ["OB-1"]

    r = ob("lane", "OB-2", "decision", env=cli_env, cwd=tmp_path)
    assert "moved OB-2 to requires_decision" in r.stdout

    r = ob("log", "OB-2", "--json", env=cli_env, cwd=tmp_path)
    assert [e["kind"] for e in json.loads(r.stdout)] == ["filed", "lane_changed"]
    assert json.loads(r.stdout)[1]["actor"] == "operator:cli"

    r = ob("show", "OB-1", env=cli_env, cwd=tmp_path)
    assert "OB-1 Fix login timeout" in r.stdout and "- raise timeout" in r.stdout

    r = ob("spec", "OB-2", env=cli_env, cwd=tmp_path)
    assert r.stdout.startswith("Tune the pool\nkey: OB-2\nstatus: open 20")


def test_errors_are_plain_and_store_nothing(cli_env: dict[str, str], tmp_path: Path) -> None:
    r = ob(
        "add", "-f", "-", env=cli_env, cwd=tmp_path, stdin="Title\nsteps:\n- a\x07\ncolour: red\n"
    )
    assert r.returncode == 1
    assert "control character U+0007" in r.stderr
    assert "Traceback" not in r.stderr

    r = ob("approve", "OB-77", env=cli_env, cwd=tmp_path)
    assert r.returncode == 1 and "no task 'OB-77'" in r.stderr

    r = ob("list", "--json", "--all", env=cli_env, cwd=tmp_path)
    assert json.loads(r.stdout) == []


def _postgres_running_for(pgdata: Path) -> bool:
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in " ".join(proc.info["cmdline"] or []):
            return True
    return False


def test_embedded_server_with_no_database_url(tmp_path: Path) -> None:
    """The zero-setup default: no OB_DATABASE_URL, no OB_TEST_DATABASE_URL, nothing running."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
    env["OB_DATA_DIR"] = str(tmp_path / "data")
    r = ob("add", "Embedded works", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = ob("list", "--json", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [t["title"] for t in json.loads(r.stdout)] == ["Embedded works"]
    pgdata = (tmp_path / "data" / "pgdata").resolve()
    assert (pgdata / "PG_VERSION").exists()
    # the last ob process to exit stops the server it started
    deadline = time.monotonic() + 30
    while _postgres_running_for(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _postgres_running_for(pgdata)


def test_help_texts_read_as_sentences(tmp_path: Path) -> None:
    """A docstring's line breaks are the source's, not the reader's: `--help` wraps its
    paragraphs to the terminal instead of breaking a sentence where the source line ended."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
    env["COLUMNS"] = "200"
    r = ob("import-todo", "--help", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "or parts between `---` lines), checklists and bullet lists are read" in r.stdout
    r = ob("--help", env=env, cwd=tmp_path)  # the summaries in the command list too
    assert "Plus the notices waiting, and how fresh the truth is" in r.stdout, r.stdout
    r = ob("ask", "--help", env=env, cwd=tmp_path)  # a paragraph of its own stays one
    assert '\n ob ask OB-12 "Redis or Postgres for this cache?"' in r.stdout, r.stdout
