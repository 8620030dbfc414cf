"""Plumbing shared by the `ob` commands: settings, the database, and error reporting."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn, TypeVar

import typer

from cli.output import err_console
from core.backlog import Backlog, open_backlog
from core.db import DatabaseUnavailable
from core.errors import BacklogError
from core.migrate import MigrationError
from core.models import Actor
from core.settings import Settings, SettingsError, get_settings
from core.spec import SpecError

T = TypeVar("T")

OPERATOR = Actor.operator("cli")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts and agents).")]
KeyArg = Annotated[str, typer.Argument(help="Task key, e.g. OB-12.", show_default=False)]


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        return get_settings()
    except SettingsError as err:
        fail(str(err), 2)


def run_backlog(fn: Callable[[Backlog], Awaitable[T]]) -> T:
    """Open the database (migrating it), run `fn` against the backlog, report errors plainly."""
    cfg = settings()

    async def main() -> T:
        async with open_backlog(cfg, max_size=2) as backlog:
            return await fn(backlog)

    return run(main())


def run(coro: Awaitable[T], *, fast_loop: bool = False) -> T:
    """Run a coroutine to completion; `fast_loop` uses uvloop where it is installed."""
    loop_factory = None
    if fast_loop:
        with contextlib.suppress(ImportError):
            import uvloop

            loop_factory = uvloop.new_event_loop
    with reported(), asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coro)  # type: ignore[arg-type]


@contextmanager
def reported() -> Iterator[None]:
    """Turn the backlog's typed errors into one plain line on stderr and an exit code."""
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
