"""The corpus: TODO.md files as people really write them (tests/todo_corpus, written for these
tests), each with the tasks a person means beside it. Every file reads (none is refused), and
reads as expected: the tasks in order with their fields, the skipped items and why, the items
that do not read with their line and why."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.spec import parse, render
from core.todo_format import Item, TodoDocument, read_document, rewrite

CORPUS = Path(__file__).parent / "todo_corpus"
FILES = sorted(p for p in CORPUS.iterdir() if not p.name.endswith(".json"))


def expected_for(path: Path) -> dict:
    name = path.name + ".expected.json" if path.suffix == ".txt" else path.stem + ".expected.json"
    return json.loads((CORPUS / name).read_text("utf-8"))


def read(path: Path) -> TodoDocument:
    return read_document(path.read_text("utf-8"), path.name)


def check_task(item: Item, want: dict, lines: list[str]) -> None:
    spec = item.spec
    assert spec is not None, item
    where = f"line {item.line}: {item.title!r}"
    for name, value in want.items():
        if name == "title":
            assert spec.title == value, where
        elif name == "title_startswith":
            assert spec.title.startswith(value), where
        elif name == "notes_contains":
            for text in value:
                assert text in spec.notes, (where, text, spec.notes)
        elif name == "steps_count":
            assert len(spec.steps) == value, where
        elif name == "warning_contains":
            assert any(value in w for w in item.warnings), (where, item.warnings)
        elif name == "status":
            assert (spec.status.value if spec.status else None) == value, where
        elif name == "status_date":
            assert spec.status_date == (date.fromisoformat(value) if value else None), where
        elif name == "lane":
            assert (spec.lane.value if spec.lane else None) == value, where
        else:
            assert getattr(spec, name) == value, (where, name)
    # the item's line is where the person wrote it
    assert spec.title[:40].rstrip(".") in lines[item.line - 1] or "title_startswith" in want, where


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_the_corpus_reads_as_a_person_means_it(path: Path) -> None:
    want = expected_for(path)
    doc = read(path)
    lines = path.read_text("utf-8").splitlines()
    tasks = doc.tasks
    if "task_count" in want:
        assert len(tasks) == want["task_count"]
        assert len(doc.skipped) == want["skipped_count"]
        by_title = {t.spec.title: t for t in tasks if t.spec}
        for task in want["tasks"]:
            check_task(by_title[task["title"]], task, lines)
    else:
        titles = [t.spec.title for t in tasks if t.spec]
        assert titles == [t.get("title", titles[i]) for i, t in enumerate(want["tasks"])]
        for item, task in zip(tasks, want["tasks"], strict=True):
            check_task(item, task, lines)
        assert len(doc.skipped) == len(want["skipped"]), [(i.title, i.skip) for i in doc.skipped]
    skipped = {i.title: i.skip or "" for i in doc.skipped}
    for s in want["skipped"]:
        assert s["why"].lower() in skipped[s["title"]].lower(), (s, skipped.get(s["title"]))
    unreadable = [(i.line, i.problem) for i in doc.unreadable]
    assert len(unreadable) == len(want["unreadable"]), unreadable
    for (line, problem), u in zip(unreadable, want["unreadable"], strict=True):
        assert line == u["line"] and u["reason_contains"] in (problem or ""), (line, problem)


PIECES = st.sampled_from(
    [
        "# T",
        "## A task",
        "### Steps",
        "- [ ] x",
        "- [x] y",
        "  - nested",
        "status: planned 2026-01-02",
        "**Priority:** P1",
        "---",
        "```",
        "# comment",
        "| a | b |",
        "<!-- c",
        "-->",
        "%%",
        "Label:",
        "prose: text",
        "1. one",
        "\t- tab",
        "",
        "key: OB-3",
        "TODO: z",
        "steps:",
        "notes:",
        "  indented",
        "~~struck~~",
        "* [-] c",
        "x\x00y",
        "\x0c",
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(PIECES | st.text(max_size=30), max_size=40).map("\n".join))
def test_any_text_reads_without_raising_and_a_rewrite_of_nothing_changes_nothing(
    text: str,
) -> None:
    doc = read_document(text)
    for item in doc.items:
        assert (item.spec is None) != (item.problem is None) or item.skip is not None
        if item.spec is not None:
            assert parse(render(item.spec)) == item.spec
    if text.strip():
        assert rewrite(doc, {}, [], title="x") == text.removeprefix("\ufeff")
