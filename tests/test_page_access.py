"""The pages to each role: who is sent to log in, who is refused, who sees which buttons.

Through Django's test client, as a browser without JavaScript posts; the page scripts send the same
forms asking for JSON.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from stacks.models import Stack
from tests.support import (
    SHOP,
    page_client,
    page_urls,
    page_user,
)
from tests.support import launch_shop as launch
from tests.support import removed_shop_stack as removed_stack
from tests.support import waiting_shop_stack as waiting_stack

pytestmark = pytest.mark.django_db


# --- anonymous and permissions ------------------------------------------------------------------------


def test_it_sends_anonymous_visitors_to_the_login_page(client, shop):
    stack, gone = launch(), removed_stack()
    forms = [reverse("stacks-new"), reverse("machines-new"), reverse("machines-edit", args=["shop"])]
    urls = page_urls(stack, gone) + forms
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


def test_it_refuses_every_page_to_a_user_without_a_role(shop):
    stack, gone = launch(), removed_stack()
    nobody = page_client(page_user("nora", None))
    forms = [reverse("stacks-new"), reverse("machines-new"), reverse("machines-edit", args=["shop"]),
             reverse("machines-export", args=["shop", "svg"])]
    for url in page_urls(stack, gone) + forms:
        response = nobody.get(url)
        assert response.status_code == 403, url
        assert b"Not allowed" in response.content, url  # the 403 page, as for any missing role


def test_it_refuses_anonymous_posts_without_changing_anything(client, shop):
    stack = launch()
    response = client.post(reverse("stacks-event", args=[stack.key]), {"event": "PAUSE"})
    assert response.status_code == 302
    assert Stack.objects.get(pk=stack.pk).state == "RUN"


def test_it_shows_the_login_page(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="username"' in response.content and b'name="password"' in response.content


def test_it_logs_in_and_lands_on_the_dashboard(client):
    page_user("vera", "viewer")
    response = client.post(reverse("login"), {"username": "vera", "password": "a long test password"}, follow=True)
    assert response.status_code == 200
    assert response.resolver_match.url_name == "stacks-dashboard"
    assert b"vera" in response.content and b"viewer" in response.content


def test_it_lets_a_viewer_see_every_page(as_viewer, shop):
    stack, gone = launch(), removed_stack()
    for url in page_urls(stack, gone):
        assert as_viewer.get(url).status_code == 200, url


def test_it_shows_a_viewer_no_action_buttons(as_viewer, shop):
    stack = waiting_stack()
    html = as_viewer.get(reverse("stacks-detail", args=[stack.key])).content.decode()
    assert "/event/" not in html and "/retry/" not in html and "/metadata/" not in html and "/task/" not in html
    assert "Mark done" not in html and "Edit metadata" not in html
    dashboard = as_viewer.get(reverse("stacks-dashboard")).content.decode()
    assert reverse("stacks-new") not in dashboard
    machine = as_viewer.get(reverse("machines-detail", args=["shop"])).content.decode()
    assert reverse("machines-edit", args=["shop"]) not in machine


def test_it_refuses_every_viewer_post_with_403(as_viewer, shop):
    stack = waiting_stack()
    posts = {
        "stacks-event": {"event": "DESTROY", "confirm": stack.key},
        "stacks-retry": {"which": "pending"},
        "stacks-task": {"task": "approve", "outcome": "done"},
        "stacks-metadata": {"meta_original": [""], "meta_key": ["a"], "meta_value": ["1"]},
        "stacks-upgrade": {},
    }
    for name, data in posts.items():
        assert as_viewer.post(reverse(name, args=[stack.key]), data).status_code == 403, name
    assert as_viewer.get(reverse("stacks-new")).status_code == 403
    new_stack = {"stack_id": "x1", "machine": "shop", "event": "LAUNCH"}
    assert as_viewer.post(reverse("stacks-new"), new_stack).status_code == 403
    assert as_viewer.get(reverse("machines-new")).status_code == 403
    assert as_viewer.post(reverse("machines-preview"), SHOP, content_type="application/yaml").status_code == 403
    stack.refresh_from_db()
    assert (stack.state, stack.metadata, Stack.objects.count()) == ("WAIT", {}, 1)


def test_it_shows_the_403_page_with_the_role(as_viewer, shop):
    response = as_viewer.get(reverse("machines-new"))
    assert response.status_code == 403
    assert b"Not allowed" in response.content and b"viewer" in response.content


def test_it_keeps_the_machine_editor_for_admins(as_operator, as_admin, shop):
    assert as_operator.get(reverse("machines-new")).status_code == 403
    assert as_operator.get(reverse("machines-edit", args=["shop"])).status_code == 403
    assert as_admin.get(reverse("machines-new")).status_code == 200
    assert as_admin.get(reverse("machines-edit", args=["shop"])).status_code == 200


def test_it_links_to_the_admin_for_staff_users_whatever_their_role(shop):
    admin_link = f'href="{reverse("admin:index")}"'
    for name, group, staff in (("vera", "viewer", True), ("otto", "operator", True), ("ada", "admin", False)):
        user = page_user(name, group)
        user.is_staff = staff
        user.save()
        html = page_client(user).get(reverse("stacks-dashboard")).content.decode()
        assert (admin_link in html) == staff, name


def test_it_shows_who_is_logged_in_and_their_role(as_operator, shop):
    html = as_operator.get(reverse("stacks-dashboard")).content.decode()
    assert "otto" in html and "role-operator" in html
