"""A picture in the digest: open tasks per lane over the last 14 days, and tasks done per agent
per day, drawn server-side as a PNG (matplotlib's Agg canvas, imported only when a chart is
drawn, so neither `ob` nor `ob serve` pays for it at start) and sent with the daily digest;
/stats sends it on demand."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import date

from aiogram import Bot
from aiogram.filters import Command
from aiogram.types import BufferedInputFile, Message

from bot import render
from bot.routing import Routes
from core.backlog import Backlog
from core.stats import Activity, Stats

router = Routes(name="charts")


def series(a: Activity) -> dict[str, dict[str, list[int]]]:
    """What the chart shows, by name (also written into the PNG's Description)."""
    return {
        "lanes": {lane.short: values for lane, values in a.lanes.items()},
        "done": {render.actor_label(who): values for who, values in a.done.items()},
    }


def render_png(a: Activity) -> bytes:
    """The chart as PNG bytes (CPU-bound: run it in a thread)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    shown = series(a)
    x = list(range(len(a.days)))
    fig = Figure(figsize=(8, 6), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for name, values in shown["lanes"].items():
        top.plot(x, values, marker="o", markersize=3, label=name)
    top.set_title("Open tasks per lane, end of day")
    top.legend(loc="upper left", fontsize=8)
    stacked = [0] * len(x)
    for name, values in shown["done"].items():
        bottom.bar(x, values, bottom=stacked, label=name)
        stacked = [s + v for s, v in zip(stacked, values, strict=True)]
    bottom.set_title("Tasks done per day, by agent")
    if shown["done"]:
        bottom.legend(loc="upper left", fontsize=8)
    else:
        bottom.text(0.5, 0.5, "nothing done in these days", transform=bottom.transAxes, ha="center")
    for ax in (top, bottom):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
    bottom.set_xticks(x)
    bottom.set_xticklabels([d.strftime("%d %b") for d in a.days], rotation=45, fontsize=7)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(
        out,
        format="png",
        metadata={"Title": "Operator Backlog activity", "Description": json.dumps(shown)},
    )
    return out.getvalue()


def caption(a: Activity) -> str:
    now = ", ".join(f"{lane.short} {values[-1]}" for lane, values in a.lanes.items())
    done = sum(sum(values) for values in a.done.values())
    return render.esc(f"📊 Last {len(a.days)} days. Open now: {now}. Done in these days: {done}.")


async def send_chart(
    bot: Bot, chat_ids: list[int], backlog: Backlog, today: date | None = None
) -> None:
    """Draw the chart once and send it to every chat (uploaded once, then by file id)."""
    a = await Stats(backlog).activity(today=today)
    png = await asyncio.to_thread(render_png, a)
    photo: BufferedInputFile | str = BufferedInputFile(png, filename="activity.png")
    for chat_id in chat_ids:
        sent = await bot.send_photo(chat_id, photo, caption=caption(a))
        if sent.photo:
            photo = sent.photo[-1].file_id


@router.message(Command("stats"))
async def stats(message: Message, bot: Bot, backlog: Backlog) -> None:
    await send_chart(bot, [message.chat.id], backlog)
