"""The channel layer's one reader per process (stacks/live/layer.py), on the test run's real Redis:
every local member of a group gets every message, once and in order; a consumer that went gets
nothing more; a Redis failure reaches each listener as channels_redis would raise it.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer

from stacks.live import publish

MESSAGES = 30


def run(scenario):
    return asyncio.run(asyncio.wait_for(scenario(), 20))


def test_it_gives_every_local_member_every_group_message_once_in_order():
    layer = get_channel_layer()

    async def scenario():
        channels = [await layer.new_channel() for _ in range(20)]
        for channel in channels:
            await layer.group_add("layer-test-order", channel)
        for n in range(MESSAGES):
            await layer.group_send("layer-test-order", {"type": "stack.updated", "n": n})

        async def take(channel):
            return [(await layer.receive(channel))["n"] for _ in range(MESSAGES)]

        received = await asyncio.gather(*(take(channel) for channel in channels))
        for channel in channels:
            await layer.group_discard("layer-test-order", channel)
        return received

    received = run(scenario)
    assert received == [list(range(MESSAGES))] * 20


def test_it_delivers_nothing_more_to_a_channel_whose_consumer_went():
    layer = get_channel_layer()

    async def scenario():
        staying, going = await layer.new_channel(), await layer.new_channel()
        for channel in (staying, going):
            await layer.group_add("layer-test-gone", channel)
        waiting = asyncio.ensure_future(layer.receive(going))
        await asyncio.sleep(0.05)
        waiting.cancel()  # what channels does to a consumer's receive when the socket closes
        await layer.group_send("layer-test-gone", {"type": "stack.updated", "n": 1})
        got = await layer.receive(staying)
        for channel in (staying, going):
            await layer.group_discard("layer-test-gone", channel)
        return got, going in layer._local(layer.non_local_name(going)).queues

    got, still_queued = run(scenario)
    assert got == {"type": "stack.updated", "n": 1}
    assert not still_queued


def test_it_hands_reading_over_when_the_reading_consumer_goes():
    layer = get_channel_layer()

    async def scenario():
        reader, other = await layer.new_channel(), await layer.new_channel()
        reading = asyncio.ensure_future(layer.receive(reader))  # the first one in reads Redis for both
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(layer.receive(other))
        await asyncio.sleep(0.05)
        reading.cancel()
        await layer.send(other, {"type": "stack.updated", "n": 2})
        return await waiting

    assert run(scenario) == {"type": "stack.updated", "n": 2}


def test_it_passes_a_redis_failure_to_every_listener(monkeypatch):
    layer = get_channel_layer()

    async def broken(channel):
        raise ConnectionError("Redis went away")

    async def scenario():
        channels = [await layer.new_channel() for _ in range(3)]
        monkeypatch.setattr(layer, "receive_single", broken)
        return await asyncio.gather(*(layer.receive(c) for c in channels), return_exceptions=True)

    outcomes = run(scenario)
    assert [type(o) for o in outcomes] == [ConnectionError] * 3


def test_it_encodes_a_live_update_once_as_the_frame_watchers_get():
    message = {"type": "stack.updated", "stack": {"id": "alpha", "metadata": {"é": 1}}}

    layer_message = publish.framed(message)

    assert layer_message["type"] == "stack.updated"
    assert publish.json.loads(layer_message["frame"]) == message


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_sends_the_published_frame_as_it_is_and_encodes_a_plain_message():
    from channels.testing import WebsocketCommunicator

    from cloudseam_site.accounts.tokens import issue_token
    from cloudseam_site.asgi import application
    from tests.support import make_user

    raw = issue_token(None, make_user("watcher", "viewer"), "live", "viewer")[1]
    framed = publish.framed({"type": "stack.updated", "stack": {"id": "alpha", "seq": 2}})

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/stacks/", headers=[
            (b"authorization", f"Bearer {raw}".encode())])
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        await communicator.receive_json_from(timeout=5)  # the snapshot
        layer = get_channel_layer()
        await layer.group_send(publish.ALL_STACKS_GROUP, framed)
        await layer.group_send(publish.ALL_STACKS_GROUP, {"type": "stack.removed", "stack": {"id": "alpha"}})
        frames = [await communicator.receive_from(timeout=5) for _ in range(2)]
        await communicator.disconnect()
        return frames

    frames = asyncio.run(scenario())
    assert frames[0] == framed["frame"]
    assert publish.json.loads(frames[1]) == {"type": "stack.removed", "stack": {"id": "alpha"}}
