"""Static checks run by the test command: types (mypy over core, bot, gateway, cli, as configured
in pyproject.toml) and lint/format (ruff)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_types_check() -> None:
    r = run("mypy")
    assert r.returncode == 0, r.stdout + r.stderr


def test_lint_and_format() -> None:
    r = run("ruff", "check", ".")
    assert r.returncode == 0, r.stdout + r.stderr
    r = run("ruff", "format", "--check", ".")
    assert r.returncode == 0, r.stdout + r.stderr
