"""[Close it] / [Ignore] on a notice that one repo's commit says it closes another repo's task.

The decision goes through core (an operator-only action, decided once: core.git.crossrepo); the
tap is answered with the outcome and the notice is edited to show it, without its buttons. A
tap on a question decided already (here, in another chat, by another `ob serve`) or whose
commit git no longer shows answers why nothing happened.
"""

from __future__ import annotations

from aiogram.types import CallbackQuery, Message

from bot import render
from bot.callbacks import CrossRepoAction, CrossRepoCB
from bot.cards import operator
from bot.routing import Routes
from core.backlog import Backlog
from core.git.crossrepo import CrossRepo

router = Routes(name="crossrepo")


@router.callback_query(CrossRepoCB.filter())
async def decide(cq: CallbackQuery, callback_data: CrossRepoCB, backlog: Backlog) -> None:
    close = callback_data.action == CrossRepoAction.CLOSE
    ask = await CrossRepo(backlog).decide(callback_data.ask, close, operator(cq.from_user.id))
    if close:
        outcome = f"✅ closed by you with commit {ask.sha[:10]} in {ask.repo} as evidence"
        answer = f"{ask.key} closed"
    else:
        outcome = f"🙈 ignored: commit {ask.sha[:10]} in {ask.repo} does not close it"
        answer = f"Ignored; {ask.key} stays as it is"
    await cq.answer(answer)
    if isinstance(cq.message, Message) and cq.message.html_text:
        await cq.message.edit_text(
            render.fit(f"{cq.message.html_text}\n\n<b>{render.esc(outcome)}</b>"),
            reply_markup=None,
        )
