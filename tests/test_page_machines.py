"""Machine pages and the editor: diagrams, YAML, versions, diffs, exports, saving new versions.

Through Django's test client, as a browser without JavaScript posts; the page scripts send the same
forms asking for JSON.
"""

from __future__ import annotations

import html as html_text
import json
import re

import pytest
from django.urls import reverse

from machines_app import diagrams
from machines_app.models import Machine
from machines_app.services import save_machine
from tests.support import (
    SHOP,
    SHOP_V2,
)
from tests.support import launch_shop as launch

pytestmark = pytest.mark.django_db


# --- machines --------------------------------------------------------------------------------------------


def test_it_lists_machines_with_their_stacks(as_viewer, shop):
    launch()
    html = as_viewer.get(reverse("machines-list")).content.decode()
    assert reverse("machines-detail", args=["shop"]) in html and "v1" in html


def test_it_shows_a_machine_with_diagrams_yaml_versions_and_warnings(as_viewer, shop):
    launch("on-v1")
    save_machine("shop", SHOP_V2, actor="ada", source="editor")
    html = as_viewer.get(reverse("machines-detail", args=["shop"])).content.decode()
    assert 'id="mermaid-source"' in html and "flowchart LR" in html
    assert 'id="L1"' in html and "version: 1" in html
    assert "v2" in html and "v1" in html and "on-v1" in html
    assert "EXTRA" in html and "Warnings" in html  # declared but never handled
    assert "terminal state" in html  # the legend, with only what a machine page can show (issue #8)
    assert "current state" not in html and "task PENDING" not in html and "visited state" not in html
    if diagrams.dot_available():
        assert "<svg" in html


def test_it_shows_an_older_version_and_a_diff(as_viewer, shop):
    save_machine("shop", SHOP_V2, actor="ada", source="editor")
    old = as_viewer.get(reverse("machines-detail", args=["shop"]), {"version": 1}).content.decode()
    assert "older version" in old
    diff = as_viewer.get(reverse("machines-detail", args=["shop"]), {"a": 2, "b": 1}).content.decode()
    assert "Changes from v1 to v2" in diff
    assert 'class="diff-add">+events: [LAUNCH, PING, PAUSE, DESTROY, EXTRA]' in diff
    lines = _diff_lines(diff)
    removed, added = "-events: [LAUNCH, PING, PAUSE, DESTROY]", "+events: [LAUNCH, PING, PAUSE, DESTROY, EXTRA]"
    assert lines.index(added) == lines.index(removed) + 1  # single-spaced: no blank line between them
    assert "" not in lines and lines[:2] == ["--- version 1", "+++ version 2"]
    assert as_viewer.get(reverse("machines-detail", args=["shop"]), {"version": 9}).status_code == 404


def _diff_lines(page: str) -> list[str]:
    """The lines of the diff's <pre> as text: one span per line, each followed by its newline."""
    start = page.index('<pre class="diff">') + len('<pre class="diff">')
    pre = page[start:page.index("</pre>", start)]
    assert re.fullmatch(r'(<span class="diff-\w+">[^<\n]*</span>\n)+', pre)  # no other text, no newline inside
    text = html_text.unescape(re.sub(r"<[^>]+>", "", pre))
    return text[:-1].split("\n")


def test_it_exports_the_diagram(as_viewer, shop):
    dot = as_viewer.get(reverse("machines-export", args=["shop", "dot"]))
    assert dot.status_code == 200 and b"digraph" in dot.content
    assert 'filename="shop-v1.dot"' in dot["Content-Disposition"]
    mermaid = as_viewer.get(reverse("machines-export", args=["shop", "mermaid"]))
    assert mermaid.content.startswith(b"flowchart LR")
    svg = as_viewer.get(reverse("machines-export", args=["shop", "svg"]))
    if diagrams.dot_available():
        assert svg.status_code == 200 and b"<svg" in svg.content and svg["Content-Type"] == "image/svg+xml"
    else:
        assert svg.status_code == 503
    assert as_viewer.get("/machines/shop/export.exe").status_code == 404


def test_it_sends_dot_to_the_browser_when_graphviz_is_missing(as_viewer, as_admin, shop, monkeypatch):
    monkeypatch.setattr(diagrams, "dot_available", lambda: False)
    stack = launch()
    html = as_viewer.get(reverse("stacks-detail", args=[stack.key])).content.decode()
    assert 'id="diagram-dot"' in html and "<svg" not in html and "vendor/viz/viz.js" in html
    machine = as_viewer.get(reverse("machines-detail", args=["shop"])).content.decode()
    assert 'id="diagram-dot"' in machine and "digraph" in machine
    assert as_viewer.get(reverse("machines-export", args=["shop", "svg"])).status_code == 503
    preview = as_admin.post(reverse("machines-preview"), SHOP, content_type="application/yaml").json()
    assert preview["svg"] is None and preview["dot"].startswith("digraph")


# --- machine editor --------------------------------------------------------------------------------------


def test_it_saves_a_new_machine_from_the_editor(as_admin):
    page = as_admin.get(reverse("machines-new")).content.decode()
    assert 'name="yaml_text"' in page and "data-validate-url" in page
    response = as_admin.post(reverse("machines-new"), {"name": "shop", "yaml_text": SHOP})
    assert response.status_code == 302 and response["Location"] == reverse("machines-detail", args=["shop"])
    version = Machine.objects.get(name="shop").current_version
    assert (version.number, version.created_by, version.source) == (1, "ada", "editor")


def test_it_refuses_an_invalid_machine_and_lists_errors_with_lines(as_admin):
    bad = SHOP.replace("state: WAIT", "state: WAYT")
    response = as_admin.post(reverse("machines-new"), {"name": "shop", "yaml_text": bad})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Nothing was saved" in html and "WAYT" in html and 'data-line="11"' in html
    assert not Machine.objects.filter(name="shop").exists()
    assert "state: WAYT" in html  # what was typed stays in the editor


def test_it_refuses_bad_and_taken_machine_names(as_admin, shop):
    assert b"must be lower case" in as_admin.post(reverse("machines-new"), {"name": "Shop", "yaml_text": SHOP}).content
    assert b"already exists" in as_admin.post(reverse("machines-new"), {"name": "shop", "yaml_text": SHOP}).content


def test_it_saves_an_edit_as_a_new_version(as_admin, shop):
    page = as_admin.get(reverse("machines-edit", args=["shop"])).content.decode()
    assert "Saving creates version 2" in page and 'name="base_version" value="1"' in page
    response = as_admin.post(reverse("machines-edit", args=["shop"]), {"yaml_text": SHOP_V2, "base_version": 1})
    assert response.status_code == 302
    assert Machine.objects.get(name="shop").current_version.number == 2


def test_it_warns_before_saving_over_a_newer_version(as_admin, shop):
    save_machine("shop", SHOP_V2, actor="bob", source="api")
    third = SHOP_V2.replace("EXTRA", "MORE")
    stale = as_admin.post(reverse("machines-edit", args=["shop"]), {"yaml_text": third, "base_version": 1})
    assert stale.status_code == 400 and b"was saved as version 2 by bob" in stale.content
    assert Machine.objects.get(name="shop").current_version.number == 2
    forced = as_admin.post(reverse("machines-edit", args=["shop"]),
                        {"yaml_text": third, "base_version": 1, "overwrite": "on"})
    assert forced.status_code == 302
    assert Machine.objects.get(name="shop").current_version.number == 3


def test_it_draws_the_editor_preview(as_admin):
    response = as_admin.post(reverse("machines-preview"), SHOP, content_type="application/yaml")
    body = response.json()
    assert response.status_code == 200 and body["dot"].startswith("digraph") and "flowchart" in body["mermaid"]
    assert (body["svg"] is not None) == diagrams.dot_available()
    invalid = as_admin.post(reverse("machines-preview"), "version: 1\nstates: {}", content_type="application/yaml")
    assert invalid.status_code == 400


def test_it_validates_through_the_api_with_the_session(as_admin):
    response = as_admin.post("/api/machines/validate", "version: 1\nstates: {}\n", content_type="application/yaml")
    assert response.status_code == 200
    assert json.loads(response.content)["valid"] is False
