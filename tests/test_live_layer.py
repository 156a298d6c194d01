"""The channel layer's one reader per process (stacks/live/layer.py), on the test run's real Redis:
every local member of a group gets every message, once and in order; a consumer that went gets
nothing more and leaves at once, however the read in progress behaves; the reader stops with the
last consumer; a Redis blip reaches no listener, a lasting failure reaches each one; a cancelled
command never goes on as if nothing happened (Python 3.11's `wait_for` drops such cancellations).
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


def test_it_keeps_reading_for_the_others_when_the_first_consumer_goes():
    layer = get_channel_layer()

    async def scenario():
        first, other = await layer.new_channel(), await layer.new_channel()
        leaving = asyncio.ensure_future(layer.receive(first))  # the first one in starts the reader
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(layer.receive(other))
        await asyncio.sleep(0.05)
        leaving.cancel()
        await layer.send(other, {"type": "stack.updated", "n": 2})
        return await waiting

    assert run(scenario) == {"type": "stack.updated", "n": 2}


def test_a_consumer_leaves_at_once_even_when_the_read_in_progress_ignores_cancellation(monkeypatch):
    """What Python 3.11's `wait_for` did to a consumer that was reading Redis when its socket closed
    (its disconnect hung the CI run): here the read swallows the first cancellation outright."""
    layer = get_channel_layer()
    release = asyncio.Event()

    async def stubborn(channel):
        try:
            await release.wait()
        except asyncio.CancelledError:
            pass  # dropped, as wait_for dropped it
        await release.wait()
        raise asyncio.CancelledError

    async def scenario():
        staying, going = await layer.new_channel(), await layer.new_channel()
        monkeypatch.setattr(layer, "receive_single", stubborn)
        receives = [asyncio.ensure_future(layer.receive(c)) for c in (going, staying)]
        try:
            await asyncio.sleep(0.05)
            receives[0].cancel()
            left = await asyncio.wait_for(asyncio.gather(receives[0], return_exceptions=True), 2)
            return left, not receives[1].done()
        finally:
            receives[1].cancel()
            release.set()
            await asyncio.gather(*receives, return_exceptions=True)

    left, still_waiting = run(scenario)
    assert [type(outcome) for outcome in left] == [asyncio.CancelledError]
    assert still_waiting


def test_the_reader_stops_with_the_last_consumer_and_a_new_one_starts_it_again():
    layer = get_channel_layer()

    async def scenario():
        channel = await layer.new_channel()
        key = layer.non_local_name(channel)
        receiving = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0.05)
        reader = layer._local(key).reader
        receiving.cancel()
        await asyncio.wait_for(asyncio.gather(reader, return_exceptions=True), 2)
        newcomer = await layer.new_channel()
        waiting = asyncio.ensure_future(layer.receive(newcomer))
        await asyncio.sleep(0.05)
        await layer.send(newcomer, {"type": "stack.updated", "n": 3})
        return reader.done(), await waiting

    stopped, got = run(scenario)
    assert stopped
    assert got == {"type": "stack.updated", "n": 3}


@pytest.mark.parametrize("turns", range(12))
def test_a_cancelled_command_raises_whenever_the_cancellation_lands(turns):
    """A PING cancelled after 0, 1, 2 … loop turns: whichever moment it lands (on 3.11, one of these
    is just as the send completes, which `wait_for` swallowed), a cancel that was accepted ends the
    command with CancelledError; it never returns a reply as if nothing happened."""
    layer = get_channel_layer()

    async def scenario():
        connection = layer.connection(0)
        await connection.ping()  # connected: the turns below are spent on the command alone
        command = asyncio.ensure_future(connection.ping())
        for _ in range(turns):
            await asyncio.sleep(0)
        accepted = command.cancel()
        outcome = (await asyncio.gather(command, return_exceptions=True))[0]
        return accepted, outcome, await connection.ping()

    accepted, outcome, afterwards = run(scenario)
    if accepted:
        assert isinstance(outcome, asyncio.CancelledError), f"cancel accepted, yet the command returned {outcome!r}"
    assert afterwards is True  # and the layer's connections still work


def test_it_passes_a_redis_failure_that_lasts_to_every_listener(monkeypatch):
    from stacks.live import layer as layer_module

    layer = get_channel_layer()
    tries = []

    async def broken(channel):
        tries.append(channel)
        raise ConnectionError("Redis went away")

    async def scenario():
        channels = [await layer.new_channel() for _ in range(3)]
        monkeypatch.setattr(layer, "receive_single", broken)
        monkeypatch.setattr(layer_module, "READ_RETRY_DELAYS", (0.01, 0.01))
        return await asyncio.gather(*(layer.receive(c) for c in channels), return_exceptions=True)

    outcomes = run(scenario)
    assert [type(o) for o in outcomes] == [ConnectionError] * 3
    assert len(tries) == 3  # the first read and its two retries, for all three listeners at once


def test_a_redis_blip_reaches_no_listener(monkeypatch, caplog):
    layer = get_channel_layer()
    real = layer.receive_single
    failures = [ConnectionError("Redis went away"), ConnectionError("still away")]

    async def blip(channel):
        if failures:
            raise failures.pop(0)
        return await real(channel)

    async def scenario():
        channels = [await layer.new_channel() for _ in range(3)]
        monkeypatch.setattr(layer, "receive_single", blip)
        waiting = [asyncio.ensure_future(layer.receive(c)) for c in channels]
        for channel in channels:
            await layer.send(channel, {"type": "stack.updated", "n": 4})
        return await asyncio.gather(*waiting, return_exceptions=True)

    outcomes = run(scenario)
    assert outcomes == [{"type": "stack.updated", "n": 4}] * 3
    assert "works again after 2 failures" in caplog.text


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


@pytest.mark.parametrize(("address", "kind"), [
    ("redis://127.0.0.1:6379/0", "Connection"),
    ("rediss://:secret@redis.internal:6380/0", "SSLConnection"),
    ("unix:///run/redis.sock", "UnixDomainSocketConnection"),
])
def test_every_kind_of_redis_address_gets_connections_that_keep_a_cancellation(address, kind):
    from redis.asyncio import connection as redis_connection

    from stacks.live.layer import BoundedRedisChannelLayer, _CancellationKeepingSend

    pool = BoundedRedisChannelLayer(hosts=[{"address": address}]).create_pool(0)

    assert issubclass(pool.connection_class, getattr(redis_connection, kind))
    assert issubclass(pool.connection_class, _CancellationKeepingSend)
