"""What the tables' views share (signupflow/tables/partitioned.py): one worker's part, every
worker's merged, and no answer at all while a rebalance moves the partitions."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from signupflow.tables import partitioned
from signupflow.tables.partner_summary import PageQuery, listing, render_html


class View:
    """Stands in for a faust View: ``json`` returns what it was given."""

    def __init__(self, rebalancing: bool = False) -> None:
        self.app = SimpleNamespace(rebalancing=rebalancing)

    def json(self, value: Any, *, status: int = 200) -> Any:
        return status, value


def request(**query: str) -> Any:
    return SimpleNamespace(query=query, rel_url=SimpleNamespace(path="/things/"))


def merge(answers: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    return {"n": sum(a["n"] for a in answers), "workers": workers}


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []

    async def ask_others(app: Any, table: str, path: str, params: Any) -> Any:
        calls.append((table, path, dict(params)))
        return [{"n": 2}, {"n": 3}], 3

    monkeypatch.setattr(partitioned, "ask_others", ask_others)
    return calls


async def answer(view: View, **query: str) -> Any:
    return await partitioned.across_workers(cast(Any, view), request(**query), "things",
                                            {"limit": "5"}, {"n": 1}, merge)


async def test_the_whole_table_adds_every_workers_part(asked: list[tuple[Any, ...]]) -> None:
    assert await answer(View()) == (200, {"n": 6, "workers": 3})
    assert asked == [("things", "/things/", {"limit": "5"})]


async def test_a_worker_asked_for_its_part_answers_alone(asked: list[tuple[Any, ...]]) -> None:
    assert await answer(View(), scope="local") == (200, {"n": 1})
    assert asked == []


async def test_no_part_passes_for_the_whole_during_a_rebalance(
    asked: list[tuple[Any, ...]]
) -> None:
    for query in ({}, {"scope": "local"}):
        status, body = await answer(View(rebalancing=True), **query)
        assert status == 503 and body["error"].startswith("rebalancing:")
    assert asked == []


async def test_a_worker_that_does_not_answer_is_a_503(monkeypatch: pytest.MonkeyPatch) -> None:
    async def ask_others(*_: Any) -> Any:
        raise RuntimeError("worker http://127.0.0.1:1 answered 503")

    monkeypatch.setattr(partitioned, "ask_others", ask_others)
    assert await answer(View()) == (503, {
        "error": "a worker holding part of the table did not answer: worker "
                 "http://127.0.0.1:1 answered 503"})


def test_the_html_page_escapes_user_text_and_links_the_next_page_of_the_same_query() -> None:
    rows = [{"partner_id": f"p{i}", "nickname": "<b>x</b>&" if i == 0 else f"n{i}",
             "style_count": 1, "joined_at": "2026-12-06T10:00:00+00:00"} for i in range(2)]
    query = PageQuery(limit=2, q="<x&")
    page = render_html(listing(rows, query, 2), query)
    assert "<td>&lt;b&gt;x&lt;/b&gt;&amp;</td>" in page and "<b>x</b>" not in page
    assert "<q>&lt;x&amp;</q>" in page and "from 2 worker(s)" in page
    assert 'href="/partners.html?limit=2&amp;after=p1&amp;q=%3Cx%26"' in page
    assert 'id="next"' not in render_html(listing(rows[:1], query, 1), query)


def test_the_owner_of_a_partition_is_read_from_the_assignment() -> None:
    """/partners/{id}/ goes to this worker (not to Faust's producer, which knows no partition
    of a changelog it never wrote to)."""
    changelog = SimpleNamespace(get_topic_name=lambda: "b-partner-summary-changelog")
    app: Any = SimpleNamespace(
        tables={"partner-summary": SimpleNamespace(changelog_topic=changelog)},
        router=SimpleNamespace(table_metadata=lambda name: {
            "http://w1:6068/": {"b-partner-summary-changelog": [0, 2], "other": [1]},
            "http://w2:6068": {"b-partner-summary-changelog": [1, 3]}}))
    assert partitioned.owner(app, "partner-summary", 2) == "http://w1:6068"
    assert partitioned.owner(app, "partner-summary", 1) == "http://w2:6068"
    assert partitioned.owner(app, "partner-summary", 4) is None


def test_a_page_of_rows_in_order_reads_only_as_far_as_it_needs() -> None:
    read: list[str] = []

    def rows() -> Any:
        for n in range(100):
            read.append(f"p{n:02}")
            yield {"partner_id": f"p{n:02}", "nickname": "amber_owl" if n % 2 else "jade"}

    query = PageQuery(limit=3, after="p10", q="OWL")
    assert [r["partner_id"] for r in query.page_in_order(rows())] == ["p11", "p13", "p15"]
    assert read[-1] == "p15"
