"""The live layer's promise, in process: a watcher's first snapshot plus every message after it equals
a fresh snapshot taken at the end — for the dashboard (/ws/stacks/) and a stack's page (/ws/stacks/<id>/).

Real consumers, the real channel layer (the test run's private Redis) and `handle_event` for every
change; nothing is mocked. The reducers below do what static/js/live.js does with each message type.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from cloudseam_site.accounts.tokens import issue_token
from cloudseam_site.asgi import application
from stacks import services
from tests.support import MACHINE, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

QUIET = 1.0  # seconds without a message that mean "everything published has arrived"


def dashboard_reducer(state: dict, message: dict) -> dict:
    if message["type"] == "snapshot":
        return {s["id"]: s for s in message["stacks"]}
    stack = message["stack"]
    if message["type"] == "stack.removed":
        return {key: value for key, value in state.items() if key != stack["id"]}
    return {**state, stack["id"]: stack}


def page_reducer(state: dict, message: dict) -> dict:
    if message["type"] == "snapshot":
        return {"stack": message["stack"], "history": {e["id"]: e for e in message.get("history", [])}}
    if message["type"] in ("stack.updated", "stack.removed"):
        state = {**state, "stack": message["stack"]}
    if "event" in message and message["event"]:
        state = {**state, "history": {**state["history"], message["event"]["id"]: message["event"]}}
    return state


async def connect(path: str, raw_token: str) -> WebsocketCommunicator:
    headers = [(b"authorization", f"Bearer {raw_token}".encode())]
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, detail = await communicator.connect(timeout=5)
    assert connected, detail
    return communicator


async def drain(communicator: WebsocketCommunicator) -> list[dict]:
    """Every message until none arrives for QUIET seconds (receive_nothing does not cancel the consumer)."""
    messages = []
    while not await communicator.receive_nothing(timeout=QUIET):
        messages.append(await communicator.receive_json_from(timeout=5))
    return messages


def changes() -> None:
    """A bit of everything: creation, a no-op with metadata, a rejection, completions, removal."""
    send = services.send
    assert send("alpha", "LAUNCH", machine=MACHINE, metadata={"branch": "main"}, actor="t", source="tests").ok
    assert send("beta", "LAUNCH", machine=MACHINE, actor="t", source="tests").ok
    assert services.update_metadata("alpha", {"owner": "team-a"}, actor="t", source="tests").ok
    assert not send("alpha", "LAUNCH", actor="t", source="tests").ok  # refused: recorded, nothing changes
    assert send("alpha", "TASK_COMPLETED", task={"name": "build"}, actor="t", source="tests").ok
    assert send("alpha", "TASK_ERROR", task={"name": "approve"}, description="no", actor="t", source="tests").ok
    assert send("alpha", "RETRY_FAILED_TASKS", actor="t", source="tests").ok
    assert send("beta", "DESTROY", actor="t", source="tests").ok


def test_it_makes_snapshot_plus_live_messages_equal_a_fresh_snapshot(machine):
    raw = issue_token(None, make_user("watcher", "viewer"), "live", "viewer")[1]

    async def scenario():
        dashboard = await connect("/ws/stacks/", raw)
        page = await connect("/ws/stacks/alpha/", raw)
        board_state = dashboard_reducer({}, await dashboard.receive_json_from(timeout=5))
        page_state = page_reducer({}, await page.receive_json_from(timeout=5))
        await sync_to_async(changes, thread_sensitive=True)()
        board_messages, page_messages = await asyncio.gather(drain(dashboard), drain(page))
        for message in board_messages:
            board_state = dashboard_reducer(board_state, message)
        for message in page_messages:
            page_state = page_reducer(page_state, message)
        fresh_board, fresh_page = await connect("/ws/stacks/", raw), await connect("/ws/stacks/alpha/", raw)
        expected_board = dashboard_reducer({}, await fresh_board.receive_json_from(timeout=5))
        expected_page = page_reducer({}, await fresh_page.receive_json_from(timeout=5))
        await asyncio.gather(*(c.disconnect(timeout=5) for c in (dashboard, page, fresh_board, fresh_page)))
        return board_state, board_messages, page_state, page_messages, expected_board, expected_page

    board, board_messages, page, page_messages, fresh_board, fresh_page = asyncio.run(scenario())
    assert board_messages and page_messages  # something was published, or the test proves nothing
    assert board == fresh_board and set(board) == {"alpha"}
    assert page["stack"] == fresh_page["stack"]
    assert page["history"] == fresh_page["history"]
    assert {e["outcome"] for e in page["history"].values()} == {"applied", "rejected"}
