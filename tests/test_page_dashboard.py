"""The dashboard: active stacks with progress, server-side search, filters, sort and pages.

Through Django's test client, as a browser without JavaScript posts; the page scripts send the same
forms asking for JSON.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from stacks.models import Stack
from tests.support import launch_shop as launch
from tests.support import removed_shop_stack as removed_stack
from tests.support import waiting_shop_stack as waiting_stack

pytestmark = pytest.mark.django_db


# --- dashboard ---------------------------------------------------------------------------------------------


def test_it_lists_active_stacks_with_progress_and_not_removed_ones(as_viewer, shop):
    waiting_stack("feature-1")
    launch("feature-2")
    removed_stack("old-1")
    html = as_viewer.get(reverse("stacks-dashboard")).content.decode()
    assert 'data-stack-id="feature-1"' in html and 'data-stack-id="feature-2"' in html
    assert 'data-stack-id="old-1"' not in html
    assert "0/2" in html  # WAIT's two tasks, none done
    assert "Showing 1–2 of 2 active stacks" in html


def test_it_searches_filters_and_sorts_on_the_server(as_viewer, shop):
    for key in ("alpha", "beta", "feature-9", "feature-10"):
        launch(key)
    waiting_stack("feature-w")
    ids = lambda response: [s["id"] for s in response.json()["stacks"]]  # noqa: E731
    url = reverse("stacks-dashboard")
    assert ids(as_viewer.get(url, {"q": "FEATURE", "format": "json"})) == ["feature-10", "feature-9", "feature-w"]
    assert ids(as_viewer.get(url, {"state": "WAIT", "format": "json"})) == ["feature-w"]
    assert ids(as_viewer.get(url, {"machine": "nope", "format": "json"})) == []
    assert ids(as_viewer.get(url, {"sort": "-id", "format": "json"}))[0] == "feature-w"
    html = as_viewer.get(url, {"state": "WAIT"}).content.decode()
    assert 'data-stack-id="feature-w"' in html and 'data-stack-id="alpha"' not in html


def test_it_paginates_the_dashboard(as_viewer, shop):
    for i in range(55):
        launch(f"s{i:03d}")
    first = as_viewer.get(reverse("stacks-dashboard")).content.decode()
    assert first.count("data-stack-id=") == 50 + 1  # 50 rows, plus the row template for live updates
    assert "Page 1 of 2" in first
    second = as_viewer.get(reverse("stacks-dashboard"), {"page": 2, "format": "json"}).json()
    assert (second["count"], second["page"], second["pages"], len(second["stacks"])) == (55, 2, 2, 5)


@pytest.mark.postgres
@pytest.mark.parametrize("sort", ["id", "-id", "machine", "state", "updated", "-updated"])
def test_it_pages_through_every_order_showing_each_stack_once(as_viewer, shop, monkeypatch, sort):
    monkeypatch.setattr("stacks.pages.views.PAGE_SIZE", 3)
    for key in ("c", "a", "e", "b", "d"):
        launch(key)
    waiting_stack("f")
    waiting_stack("g")
    Stack.objects.filter(key__in=["a", "b"]).update(updated_at=Stack.objects.get(key="c").updated_at)  # a tie
    by_key = sorted(Stack.objects.active(), key=lambda s: s.key)
    expected = {
        "id": by_key, "-id": by_key[::-1], "machine": by_key,
        "state": sorted(by_key, key=lambda s: s.state),
        "updated": sorted(by_key, key=lambda s: s.updated_at),
        "-updated": sorted(by_key, key=lambda s: s.updated_at, reverse=True),
    }[sort]
    pages = [as_viewer.get(reverse("stacks-dashboard"), {"sort": sort, "page": n, "format": "json"}).json()
             for n in (1, 2, 3)]
    assert [s["id"] for p in pages for s in p["stacks"]] == [s.key for s in expected]
    assert [(p["start"], p["end"], p["pages"]) for p in pages] == [(1, 3, 3), (4, 6, 3), (7, 7, 3)]


@pytest.mark.postgres
def test_it_reads_any_page_in_the_same_number_of_queries(as_viewer, shop, monkeypatch):
    monkeypatch.setattr("stacks.pages.views.PAGE_SIZE", 2)
    for i in range(7):
        waiting_stack(f"s{i}")
    url = reverse("stacks-dashboard")
    as_viewer.get(url)  # the first request of a session may read more (the session itself)

    def queries(**params) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert as_viewer.get(url, params).status_code == 200
        return len(captured)

    first = queries()
    assert queries(page=4) == queries(sort="-updated", page=3) == queries(state="WAIT", q="s", page=2) == first
    for i in range(7, 20):
        launch(f"s{i}")
    assert queries(page=10) == first


def test_it_ignores_a_bad_sort_or_page_value(as_viewer, shop):
    launch()
    response = as_viewer.get(reverse("stacks-dashboard"), {"sort": "password", "page": "x"})
    assert response.status_code == 200 and b"feature-1" in response.content
