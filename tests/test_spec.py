"""The spec text form: forgiving for humans, strict about limits, and round-trip exact."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from core.models import Lane, Status
from core.spec import MAX_SPEC_BYTES, Spec, SpecError, make_spec, parse, render

DESIGN_EXAMPLE = """\
Migrate ingest workers to asyncpg
repo: nexus-ingest
priority: P1
trigger: pool exhaustion alerts twice this week
steps:
- swap psycopg2 for asyncpg in ingest/db.py
- run the 10k-row load test
risks:
- connection leak under cancellation
"""


def test_design_example() -> None:
    spec = parse(DESIGN_EXAMPLE)
    assert spec == Spec(
        title="Migrate ingest workers to asyncpg",
        repo="nexus-ingest",
        priority=1,
        trigger="pool exhaustion alerts twice this week",
        steps=["swap psycopg2 for asyncpg in ingest/db.py", "run the 10k-row load test"],
        risks=["connection leak under cancellation"],
    )
    assert render(spec) == DESIGN_EXAMPLE


def test_forgiving_markdown() -> None:
    text = """

# Fix the login timeout

Repo: web-app
Priority: high
Lane: Autonomous
Trigger On: 2026-12-01
Customers on slow links hit the 5 s timeout.

## Steps
1. raise the timeout to 15 s
2) add a retry
   with jitter
* log the slow requests

**Risks**
+ masks real outages
"""
    spec = parse(text)
    assert spec.title == "Fix the login timeout"
    assert spec.repo == "web-app"
    assert spec.priority == 1
    assert spec.lane is Lane.AUTONOMOUS
    assert spec.trigger_on == date(2026, 12, 1)
    assert spec.steps == [
        "raise the timeout to 15 s",
        "add a retry with jitter",
        "log the slow requests",
    ]
    assert spec.risks == ["masks real outages"]
    assert spec.notes == "Customers on slow links hit the 5 s timeout."


def test_notes_and_findings_keep_their_lines() -> None:
    spec = make_spec(
        title="Investigate flaky test",
        notes="first line\n\n  indented: yes\nsteps:",
        findings="root cause: DNS\n- not a bullet",
        key="OB-7",
        status="open",
    )
    text = render(spec)
    assert "  steps:" in text
    assert parse(text) == spec


@pytest.mark.parametrize(
    "title",
    ["repo: looks like a field", "# hashes", "title: colon", "Steps: do it", "priority: P0"],
)
def test_ambiguous_titles_round_trip(title: str) -> None:
    spec = make_spec(title=title, steps=["x"])
    assert parse(render(spec)) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   \n\n  \n", "empty"),
        ("Title\nfoo: bar", "unknown field 'foo'"),
        ("Title\nBackground:\nsome text", "unknown section"),
        ("Title\n## Background\nsome text", "unknown section"),
        ("Title\npriority: P7", "priority must be P0, P1, P2 or P3"),
        ("Title\nlane: somewhere", "unknown lane"),
        ("Title\ntrigger_on: next week", "not a date"),
        ("Title\nrepo: a b c", "not a repository name"),
        ("Title\nrepo: x\nrepo: y", "repo is given twice"),
        ("Title\x07 bell", "control character U+0007"),
        ("Title\nsteps:\n- a\x00b", "control character U+0000"),
        ("repo: x\nTitle", "first line must be the title"),
        ("x" * 201, "at most 200"),
    ],
)
def test_hostile_texts_give_clear_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse(text)
    assert message in str(err.value)


def test_one_megabyte_is_refused_by_size() -> None:
    with pytest.raises(SpecError) as err:
        parse("Big\nnotes:\n" + "x" * (1024 * 1024))
    assert f"at most {MAX_SPEC_BYTES:,}" in str(err.value)


def test_ten_thousand_steps_are_refused_by_count() -> None:
    text = "Many steps\nsteps:\n" + "- s\n" * 10_000
    assert len(text.encode()) < MAX_SPEC_BYTES
    with pytest.raises(SpecError) as err:
        parse(text)
    assert "10000 steps; at most 100" in str(err.value)


def test_model_rejects_unknown_keys() -> None:
    with pytest.raises(SpecError) as err:
        make_spec(title="x", colour="red")
    assert "colour" in str(err.value)


def test_status_and_key_lines() -> None:
    spec = parse("Ship it\nkey: ob-4\nstatus: in progress\n")
    assert spec.key == "OB-4"
    assert spec.status is Status.CLAIMED


# ------------------------------------------------------------------ properties

line_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=0, max_size=60
)
multi_text = st.lists(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"),
        max_size=40,
    ).map(lambda s: "".join(c for c in s if c in "\t" or not (ord(c) < 32 or 127 <= ord(c) < 160))),
    max_size=6,
).map("\n".join)
repo_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,20}", fullmatch=True)


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    fields = {
        "title": draw(line_text),
        "repo": draw(st.none() | repo_names),
        "priority": draw(st.integers(0, 3)),
        "lane": draw(st.none() | st.sampled_from(list(Lane))),
        "trigger": draw(st.none() | line_text),
        "trigger_on": draw(st.none() | st.dates()),
        "steps": draw(st.lists(line_text, max_size=8)),
        "risks": draw(st.lists(line_text, max_size=5)),
        "notes": draw(multi_text),
        "findings": draw(multi_text),
        "key": draw(st.none() | st.integers(1, 10**6).map(lambda n: f"OB-{n}")),
        "status": draw(st.none() | st.sampled_from(list(Status))),
    }
    try:
        return make_spec(**fields)
    except SpecError:
        assume(False)
        raise


@settings(
    max_examples=400, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(specs())
def test_parse_render_round_trip(spec: Spec) -> None:
    assert parse(render(spec)) == spec


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_parse_never_crashes(text: str) -> None:
    try:
        spec = parse(text)
    except SpecError:
        return
    assert parse(render(spec)) == spec
