"""The layering rule, checked on the source: the faces (bot, gateway, cli) are thin faces over
core; they never talk SQL, import asyncpg or reach for a pool, and core never imports a face."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FACES = ("bot", "gateway", "cli")
DATABASE_ATTRIBUTES = {"pool", "acquire", "fetch", "fetchrow", "fetchval", "executemany"}
# A string that reads as SQL: a statement keyword followed, later, by its clause keyword.
SQL = re.compile(
    r"\b(select\b[\s\S]*\bfrom|insert\s+into|update\b[\s\S]*\bset|delete\s+from"
    r"|create\s+(table|index)|alter\s+table|drop\s+(table|index))\b",
    re.I,
)


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "path", [p for face in FACES for p in modules(face)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_faces_do_not_talk_sql(path: Path) -> None:
    tree = ast.parse(path.read_text("utf-8"))
    problems = [f"imports {n}" for n in imported(tree) if n.split(".")[0] == "asyncpg"]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in DATABASE_ATTRIBUTES:
            problems.append(f"line {node.lineno}: reaches for .{node.attr}")
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and SQL.search(node.value)
        ):
            problems.append(f"line {node.lineno}: SQL text {node.value[:60]!r}")
    assert not problems, problems


@pytest.mark.parametrize("path", modules("core"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_no_face(path: Path) -> None:
    names = imported(ast.parse(path.read_text("utf-8")))
    assert not {n for n in names if n.split(".")[0] in FACES}


def test_the_check_sees_sql() -> None:
    """The checker itself: it would catch what it is meant to catch."""
    assert SQL.search("select id from tasks where number = $1")
    assert SQL.search("UPDATE bot_cards SET state = 'x'")
    assert SQL.search("insert into outbox (kind) values ($1)")
    assert not SQL.search("Select a lane for the task, or tap Skip.")
    assert not SQL.search("update the card")
