"""Errors in handlers, answered in one place for every router.

A refusal from core (`BacklogError`: not found, a stale decision, an operator-only action …)
or a text that does not read (`SpecError`) is answered with the one clear line it carries: as
a message to a message, as an alert to a button's tap. Anything else is a defect: logged with
its traceback, and answered politely. A handler catches such an error only to do something
other than saying it (show a stale card's outcome, go on with a drain, ask again).
"""

from __future__ import annotations

import logging

from aiogram.filters import ExceptionTypeFilter
from aiogram.types import ErrorEvent, Update

from bot import render
from bot.routing import Routes
from core.errors import BacklogError
from core.spec import SpecError

log = logging.getLogger("ob.bot.errors")
router = Routes(name="errors")
ALERT_LIMIT = 200  # Telegram shows at most this many characters in a tap's alert


def problems(err: SpecError | BacklogError) -> str:
    """Why a text is not a task (yet), and how to write one (HTML)."""
    if isinstance(err, BacklogError):
        return render.esc(str(err), 1000)
    return render.fit(
        "I could not read that as a task:\n"
        f"{problem_list(err)}\n\nThe first line is the title (at most 200 characters); fields "
        "like <code>repo: name</code>, <code>priority: P1</code> and sections "
        "<code>steps:</code>, <code>risks:</code> follow. /new walks you through it."
    )


def problem_list(err: SpecError) -> str:
    """A spec's problems, one bullet each (HTML)."""
    return "\n".join(f"• {render.esc(p, 300)}" for p in err.problems[:10])


@router.errors(ExceptionTypeFilter(SpecError, BacklogError))
async def refused(event: ErrorEvent) -> bool:
    """Core said no, or the text does not read: say so in one line."""
    err = event.exception
    assert isinstance(err, SpecError | BacklogError)
    await _tell(event.update, alert=str(err)[:ALERT_LIMIT], text=problems(err), show_alert=True)
    return True


@router.errors()
async def unexpected(event: ErrorEvent) -> bool:
    """A failing handler never takes the bot down: log it, tell the operator briefly."""
    log.error("handler failed on update %s", event.update.update_id, exc_info=event.exception)
    await _tell(
        event.update,
        alert="Something went wrong; try again.",
        text="Something went wrong; the details are logged.",
    )
    return True


async def _tell(update: Update, *, alert: str, text: str, show_alert: bool = False) -> None:
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(alert, show_alert=show_alert)
        elif update.message is not None:
            await update.message.answer(text)
    except Exception:
        log.exception("could not report the failure")
