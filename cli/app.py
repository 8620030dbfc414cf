"""Plumbing shared by the `ob` commands: settings, the backlog, output and error reporting.

Agents call `ob heartbeat` and `ob done` in loops, so `ob` starts fast: this module and the
command modules import only typer at load time; core, rich and httpx are imported by the
command that runs.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from core.backlog import Backlog
    from core.models import Actor
    from core.settings import Settings

T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts and agents).")]
KeyArg = Annotated[str, typer.Argument(help="Task key, e.g. OB-12.", show_default=False)]


def operator() -> Actor:
    """Everything done from the CLI is the operator's (`operator:cli` in the event log)."""
    from core.models import Actor

    return Actor.operator("cli")


@cache
def console() -> Console:
    from rich.console import Console

    return Console()


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def print_json(value: Any) -> None:
    """JSON for scripts and agents: models (however nested), lists, plain data."""
    import json

    from pydantic_core import to_jsonable_python

    print(json.dumps(to_jsonable_python(value), indent=2, ensure_ascii=False))


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(typer.style("error:", fg="red") + f" {message}", err=True)
    raise typer.Exit(code)


def read_text(path: Path) -> str:
    """A UTF-8 text file, or the standard input for '-'; anything else is one clear line."""
    name = "the standard input" if str(path) == "-" else str(path)
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as err:
        fail(f"cannot read {name}: {err.strerror or err}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        fail(
            f"{name} is not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}); save it "
            "as UTF-8"
        )


def rewrap_help(app: typer.Typer) -> None:
    """Give every command of `app` (and of its sub-apps) its docstring with each paragraph on
    one line: rich then wraps it to the terminal, instead of breaking a sentence where the
    source line ended."""
    import inspect

    for info in app.registered_commands:
        doc = info.help or (inspect.getdoc(info.callback) if info.callback else None)
        if doc:
            info.help = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))
    for group in app.registered_groups:
        if group.typer_instance is not None:
            rewrap_help(group.typer_instance)


def warn(message: str) -> None:
    typer.echo(typer.style("warning:", fg="yellow") + f" {message}", err=True)


def settings() -> Settings:
    from core.settings import SettingsError, get_settings

    try:
        return get_settings()
    except SettingsError as err:
        fail(str(err), 2)


def run_backlog(fn: Callable[[Backlog], Awaitable[T]]) -> T:
    """Open the database (migrating it), run `fn` against the backlog, report errors plainly."""
    from core.backlog import open_backlog

    cfg = settings()

    async def main() -> T:
        async with open_backlog(cfg, max_size=2) as backlog:
            return await fn(backlog)

    return run(main())


def run(coro: Coroutine[Any, Any, T], *, fast_loop: bool = False) -> T:
    """Run a coroutine to completion; `fast_loop` uses uvloop where it is installed."""
    import asyncio

    loop_factory = None
    if fast_loop:
        with contextlib.suppress(ImportError):
            import uvloop

            loop_factory = uvloop.new_event_loop
    with reported(), asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coro)


@contextmanager
def reported() -> Iterator[None]:
    """Turn the backlog's typed errors into one plain line on stderr and an exit code."""
    from core.db import DatabaseUnavailable
    from core.errors import BacklogError
    from core.migrate import MigrationError
    from core.spec import SpecError

    try:
        yield
    except SpecError as err:
        fail("the spec is invalid:\n  " + "\n  ".join(err.problems))
    except BacklogError as err:
        fail(err.message)
    except (DatabaseUnavailable, MigrationError) as err:
        fail(str(err), 3)
    except KeyboardInterrupt:
        sys.exit(130)
