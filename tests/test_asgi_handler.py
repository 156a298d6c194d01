"""cloudseam_site.asgi_handler: the whole middleware chain and the view in one thread of a kept pool,
with the request's database connections closed (given back to the pool) when it is answered."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from asgiref.testing import ApplicationCommunicator
from django.db import connections
from django.http import JsonResponse
from django.test import override_settings
from django.urls import path

from cloudseam_site.asgi_handler import OneHopASGIHandler

pytestmark = pytest.mark.postgres

seen: list[dict] = []


def _where(request):
    from stacks.models import Stack

    Stack.objects.exists()  # opens this thread's connection
    seen.append({"thread": threading.current_thread().name, "middleware": hasattr(request, "user"),
                 "connection": connections["default"].connection is not None})
    return JsonResponse({"ok": True})


def _boom(request):
    connections["default"].ensure_connection()
    raise RuntimeError("a view that fails")


urlpatterns = [path("where/", _where), path("boom/", _boom)]


async def _get(app, url: str) -> tuple[int, bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": url, "raw_path": url.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(10)
    body = await communicator.receive_output(10)
    await communicator.wait(10)
    return start["status"], body.get("body", b"")


def _open_connections_in_pool_threads() -> list[str]:
    """Names of request threads whose Django connection is still open (checked in each thread)."""
    found = []

    def check() -> None:
        if connections["default"].connection is not None:
            found.append(threading.current_thread().name)

    futures = [OneHopASGIHandler.executor.submit(check) for _ in range(OneHopASGIHandler.executor._max_workers)]
    for future in futures:
        future.result(10)
    return found


@pytest.mark.django_db(transaction=True)
@override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"])
def test_the_chain_and_the_view_run_in_one_request_thread_and_give_the_connection_back():
    seen.clear()
    app = OneHopASGIHandler()
    for _ in range(3):
        status, body = asyncio.run(_get(app, "/where/"))
        assert (status, json.loads(body)) == (200, {"ok": True})
    assert len(seen) == 3
    assert all(s["thread"].startswith("cloudseam-request") for s in seen), seen
    assert all(s["middleware"] and s["connection"] for s in seen), seen  # middleware ran first, in that thread
    assert _open_connections_in_pool_threads() == []


@pytest.mark.django_db(transaction=True)
@override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"], DEBUG=False)
def test_a_failing_view_is_a_500_and_still_gives_its_connection_back():
    status, _ = asyncio.run(_get(OneHopASGIHandler(), "/boom/"))
    assert status == 500
    assert _open_connections_in_pool_threads() == []


def test_it_refuses_what_is_not_http():
    with pytest.raises(ValueError, match="websocket"):
        asyncio.run(OneHopASGIHandler()({"type": "websocket"}, None, None))
