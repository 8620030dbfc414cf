"""The layering rule, checked on the source: the faces (bot, gateway, cli) are thin faces over
core; they never talk SQL, import asyncpg or reach for a pool, and core never imports a face.
And the one calling convention (core/service.py): faces call `Service(backlog).verb(...)` or a
method of the Backlog, never a core function that takes a connection; core's services are
classes on one base, not functions over a backlog, and none copies its constructor."""

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


# A parameter annotated as a connection or a pool.
CONNECTION = re.compile(r"\basyncpg\.(Connection|Pool)\b")


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


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _first_parameter(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.arg | None:
    args = [*fn.args.posonlyargs, *fn.args.args]
    if args and args[0].arg in ("self", "cls"):
        args = args[1:]
    return args[0] if args else None


def _takes_first(fn: ast.AST, pattern: re.Pattern[str]) -> bool:
    if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    first = _first_parameter(fn)
    return first is not None and bool(pattern.search(ast.unparse(first.annotation or ast.Name(""))))


def connection_functions() -> tuple[dict[str, set[str]], set[str]]:
    """Core's query functions: per module, its functions that take a connection (or a pool)
    first; and the public methods that do (they run inside a caller's transaction)."""
    functions: dict[str, set[str]] = {}
    methods: set[str] = set()
    for path in modules("core"):
        tree = ast.parse(path.read_text("utf-8"))
        functions[module_name(path)] = {
            n.name for n in tree.body if _takes_first(n, CONNECTION) and hasattr(n, "name")
        }
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            methods |= {
                m.name
                for m in cls.body
                if _takes_first(m, CONNECTION) and not getattr(m, "name", "_").startswith("_")
            }
    return functions, methods


def connection_calls(tree: ast.AST, functions: dict[str, set[str]], methods: set[str]) -> list[str]:
    """The calls in `tree` of a core function (or method) that takes a connection first."""
    named: dict[str, str] = {}  # a local name -> the core function it is
    module_of: dict[str, str] = {}  # a local name -> the core module it is
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in functions:
            for alias in node.names:
                if alias.name in functions[node.module]:
                    named[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in functions:
                    module_of[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in functions:
                    module_of[alias.asname or alias.name] = alias.name
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        fn = node.func
        if isinstance(fn, ast.Name) and fn.id in named:
            found.append(f"line {node.lineno}: {named[fn.id]}")
        elif isinstance(fn, ast.Attribute):
            owner = ast.unparse(fn.value)
            module = module_of.get(owner, owner)
            if fn.attr in functions.get(module, ()) or fn.attr in methods:
                found.append(f"line {node.lineno}: {owner}.{fn.attr}")
    return found


@pytest.mark.parametrize(
    "path", [p for face in FACES for p in modules(face)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_faces_call_no_function_that_takes_a_connection(path: Path) -> None:
    """`verb(conn, ...)` functions are core's own: a face calls `Service(backlog).verb(...)`."""
    functions, methods = connection_functions()
    assert not connection_calls(ast.parse(path.read_text("utf-8")), functions, methods)


def test_the_check_sees_a_connection_function_called() -> None:
    functions, methods = connection_functions()
    assert "fetch_task" in functions["core.tasks"] and "edit_in" in methods
    calls = """
from core.tasks import fetch_task as fetch
from core import tasks
import core.events
fetch(conn, 1, "OB")
tasks.list_tasks(conn, flt, "OB")
core.events.history(conn, 1, "OB")
backlog.edit_in(conn, "OB-1", actor, {})
Backlog(pool, settings).get("OB-1")
"""
    assert len(connection_calls(ast.parse(calls), functions, methods)) == 4


@pytest.mark.parametrize("path", modules("core"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_services_are_classes_over_a_backlog(path: Path) -> None:
    """No `verb(backlog, ...)` functions: what takes a backlog is a service (core/service.py)."""
    tree = ast.parse(path.read_text("utf-8"))
    over_a_backlog = re.compile(r"^Backlog$")
    assert not [getattr(n, "name", "") for n in tree.body if _takes_first(n, over_a_backlog)]


COPIED = {"pool", "settings", "prefix"}


@pytest.mark.parametrize("path", modules("core"), ids=lambda p: str(p.relative_to(ROOT)))
def test_services_share_one_constructor(path: Path) -> None:
    """The backlog's pool, settings and prefix are handed on by Service alone."""
    copies = []
    for cls in ast.walk(ast.parse(path.read_text("utf-8"))):
        if not isinstance(cls, ast.ClassDef) or cls.name == "Service":
            continue
        for node in ast.walk(cls):
            if not isinstance(node, ast.Assign) or "backlog" not in ast.unparse(node.value):
                continue
            for target in node.targets:
                if ast.unparse(target) in {f"self.{a}" for a in COPIED}:
                    copies.append(f"{cls.name}: line {node.lineno} {ast.unparse(node)}")
    assert not copies, copies
