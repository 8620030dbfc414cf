"""Reading a text as ideas, and a reply as an amendment (pure functions of core)."""

from __future__ import annotations

from datetime import date

import pytest

from core.ideas import MAX_IDEAS, idea_texts, read_ideas, with_context
from core.models import Lane
from core.shaping import Later, amend_spec, changes, describe, parse_amendment, snooze_until
from core.spec import SpecError, make_spec


@pytest.mark.parametrize(
    ("text", "titles"),
    [
        ("Add retries\nrepo: web\nsteps:\n- wrap calls\n- test", ["Add retries"]),
        ("Plan for the week\n1. fix login\n2. dark mode", ["Plan for the week"]),
        ("- fix login\n- dark mode\n3) export csv", ["fix login", "dark mode", "export csv"]),
        ("## One\nrepo: a\n## Two\n---\nThree", ["One", "Two", "Three"]),
        ("TODO:\nfix login\ndark mode\n\nmore prose", ["fix login", "dark mode"]),
        ("Ideas for the bot:\n\n- [ ] stats\n- [x] done already\n- charts", ["stats", "charts"]),
        ("# Notes\n\njust one thought", ["Notes"]),
    ],
)
def test_how_a_text_splits(text: str, titles: list[str]) -> None:
    assert [s.title for s in read_ideas(text)] == titles


def test_an_idea_keeps_its_indented_lines_and_the_prose_around_it() -> None:
    specs = read_ideas(
        "Thinking about the release.\ntodo:\n- migrate ingest\n  - swap psycopg2\n"
        "  repo: nexus\n- bump version\n\nAsk Bob first."
    )
    assert [(s.title, s.repo, s.steps) for s in specs] == [
        ("migrate ingest", "nexus", ["swap psycopg2"]),
        ("bump version", None, []),
    ]
    assert specs[0].notes == "Thinking about the release.\nAsk Bob first."


def test_problems_name_the_idea_and_the_count_is_bounded() -> None:
    with pytest.raises(SpecError) as err:
        read_ideas("- fine\n- " + "x" * 300)
    assert err.value.problems[0].startswith("idea 2: title")
    with pytest.raises(SpecError, match="at most"):
        read_ideas("\n".join(f"- idea {i}" for i in range(MAX_IDEAS + 1)))
    assert len(idea_texts("\n".join(f"- idea {i}" for i in range(MAX_IDEAS)))) == MAX_IDEAS


def test_context_goes_into_the_notes() -> None:
    spec = with_context(make_spec(title="x", notes="mine"), origin="Forwarded from A", repo="web")
    assert (spec.notes, spec.repo) == ("mine\n\nForwarded from A", "web")
    assert with_context(make_spec(title="x", repo="api"), repo="web").repo == "api"


def test_amendments() -> None:
    a = parse_amendment("step: write tests\nrisk: flaky\nP0\n- another step\nlane decision")
    assert (a.steps, a.risks, a.priority, a.lane) == (
        ["write tests", "another step"],
        ["flaky"],
        0,
        Lane.DECISION,
    )
    prose = parse_amendment("Lane changes are slow\nrepo of the year\nTitle of my talk")
    assert prose.notes == ["Lane changes are slow", "repo of the year", "Title of my talk"]
    assert prose.lane is None and prose.repo is None and prose.title is None
    with pytest.raises(SpecError, match="P0, P1, P2 or P3"):
        parse_amendment("priority: P7")
    with pytest.raises(SpecError, match="not a date"):
        parse_amendment("trigger_on: soon")
    spec = make_spec(title="t", steps=["a"], notes="n")
    a = parse_amendment("step: b\nsee the thread\ntrigger_on: 2026-05-01\nrepo: web")
    assert changes(spec, a) == {
        "repo": "web",
        "trigger_on": date(2026, 5, 1),
        "steps": ["a", "b"],
        "notes": "n\nsee the thread",
    }
    amended = amend_spec(spec, parse_amendment("lane autonomous"))
    assert amended.lane == Lane.AUTONOMOUS
    assert describe(spec, a, None) == [
        "repo - → web",
        "trigger on → 2026-05-01",
        "+ step: b",
        "+ note: see the thread",
    ]
    with pytest.raises(SpecError):
        changes(spec, parse_amendment("repo: not a repo!"))


def test_snooze_dates() -> None:
    friday, sunday = date(2026, 1, 9), date(2026, 1, 11)
    assert snooze_until(Later.TOMORROW, friday) == date(2026, 1, 10)
    assert snooze_until(Later.NEXT_WEEK, friday) == date(2026, 1, 12)  # Monday
    assert snooze_until(Later.NEXT_WEEK, sunday) == date(2026, 1, 12)
    assert snooze_until(Later.NEXT_WEEK, date(2026, 1, 12)) == date(2026, 1, 19)
