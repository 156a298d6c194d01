"""The dashboard: active stacks with progress, server-side search, filters, sort and pages.

Through Django's test client, as a browser without JavaScript posts; the page scripts send the same
forms asking for JSON.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

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


def test_it_ignores_a_bad_sort_or_page_value(as_viewer, shop):
    launch()
    response = as_viewer.get(reverse("stacks-dashboard"), {"sort": "password", "page": "x"})
    assert response.status_code == 200 and b"feature-1" in response.content
