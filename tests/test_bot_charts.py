"""The digest's picture: lane sizes over the last 14 days rebuilt from the event log, tasks done
per agent per day, drawn as a valid PNG that shows exactly those series."""

from __future__ import annotations

import io
import json
from datetime import timedelta

from PIL import Image

from bot.charts import render_png, series
from core.backlog import Backlog
from core.leases import Leases
from core.models import Actor, Lane
from core.shaping import local_today
from core.spec import make_spec
from core.stats import Stats

OP = Actor.operator("t")


async def days_ago(backlog: Backlog, key: str, kind: str, days: int) -> None:
    """Move an event of the task back in time (and its completion, for `completed`): history
    written days ago. The log refuses updates, so its guard trigger is bypassed here."""
    number = int(key.split("-")[1])
    async with backlog.pool.acquire() as conn, conn.transaction():
        await conn.execute("set local session_replication_role = replica")
        await conn.execute(
            "update events set at = now() - make_interval(days => $3) where kind = $2"
            " and task_id = (select id from tasks where number = $1)",
            number,
            kind,
            days,
        )
    if kind == "completed":
        await backlog.pool.execute(
            "update tasks set completed_at = now() - make_interval(days => $2) where number = $1",
            number,
            days,
        )


async def test_lane_history_and_done_per_agent(backlog: Backlog, make_agent) -> None:
    codex, _ = await make_agent("codex")
    old = await backlog.file(make_spec(title="long-lived"), OP, lane=Lane.INVESTIGATION)
    await days_ago(backlog, old.key, "filed", 30)  # untouched in the window: there every day
    moved = await backlog.file(make_spec(title="moved"), OP, lane=Lane.TRIAGE)
    await days_ago(backlog, moved.key, "filed", 3)
    await backlog.move_lane(moved.key, Lane.AUTONOMOUS, OP)
    await days_ago(backlog, moved.key, "lane_changed", 1)
    shipped = await backlog.file(make_spec(title="shipped", priority=0), OP, lane=Lane.AUTONOMOUS)
    await days_ago(backlog, shipped.key, "filed", 2)
    lease = await Leases(backlog).claim(codex)
    assert lease is not None and lease.key == shipped.key
    await Leases(backlog).complete(lease.key, codex, lease.epoch)
    await days_ago(backlog, lease.key, "completed", 1)
    dropped = await backlog.file(make_spec(title="dropped"), OP, lane=Lane.DECISION)
    await backlog.reject(dropped.key, OP)
    await backlog.file(make_spec(title="today"), OP, lane=Lane.DECISION)
    await backlog.file(make_spec(title="an agent's draft"), codex)  # not in a lane

    today = local_today(backlog.settings.tz)
    a = await Stats(backlog).activity(today=today)
    assert a.days[0] == today - timedelta(days=13) and a.days[-1] == today
    last4 = {lane.short: values[-4:] for lane, values in a.lanes.items()}
    assert last4 == {
        "triage": [1, 1, 0, 0],  # `moved`, until it moved yesterday
        "decision": [0, 0, 0, 1],  # `today`; `dropped` was rejected within the day
        "investigation": [1, 1, 1, 1],  # `long-lived`, every day
        "autonomous": [0, 1, 1, 1],  # `shipped` until done yesterday; `moved` from yesterday
    }
    assert a.lanes[Lane.INVESTIGATION] == [1] * 14
    assert a.done == {"agent:codex": [0] * 12 + [1, 0]}

    png = render_png(a)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.verify()  # a valid PNG, whole
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (800, 600)
    shown = json.loads(image.text["Description"])
    assert shown == series(a)
    assert shown["lanes"]["autonomous"][-4:] == [0, 1, 1, 1]
    assert shown["done"] == {"codex": [0] * 12 + [1, 0]}


async def test_an_empty_backlog_still_draws(backlog: Backlog) -> None:
    a = await Stats(backlog).activity(days=7)
    assert len(a.days) == 7 and a.done == {}
    assert all(values == [0] * 7 for values in a.lanes.values())
    assert render_png(a).startswith(b"\x89PNG")
