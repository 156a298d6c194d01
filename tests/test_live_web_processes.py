"""`serve --web 2`: every watcher hears of every change, whichever web process holds its socket and
whichever took the POST (each process's consumers share one reader of their Redis key,
stacks/live/layer.py).

Not promised: the order across processes. Each process publishes after its own commit, from its
own publisher thread, so seq 9 committed by one process may overtake seq 8 committed a moment
earlier by the other; the page then sees a gap, asks for a snapshot and drops the late 8
(static/js/live.js). What is promised is that no frame is lost on the way.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from tests.live_server import Server

pytestmark = pytest.mark.e2e

MACHINE = """
version: 1
events: [LAUNCH, NOTE]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: RUN}]
  RUN:
    on:
      NOTE: [{action: no-op}]
  GONE:
    terminal: true
tasks: {}
"""
PER_PROCESS = 4
EVENTS = 10


async def _open_on(web, others, url: str, headers: dict) -> list:
    """PER_PROCESS sockets held by `web`: the others, stopped, accept nothing meanwhile."""
    for other in others:
        other.suspend()
    try:
        sockets = [await websockets.connect(url, additional_headers=headers) for _ in range(PER_PROCESS)]
        for socket in sockets:
            assert json.loads(await socket.recv())["type"] == "snapshot"
        return sockets
    finally:
        for other in others:
            other.resume()


def test_it_tells_every_watcher_of_every_change_whichever_process_holds_it():
    server = Server(workers=0, web=2, machines={"plain": MACHINE}, include_demo_machines=False).start()
    try:
        webs = [child for child in server.children() if "daphne" in " ".join(child.cmdline())]
        assert len(webs) == 2
        url = server.url.replace("http://", "ws://") + "/ws/stacks/"
        headers = {"Authorization": f"Bearer {server.token('viewer')}"}

        async def watch() -> list[list[int]]:
            sockets = []
            for web in webs:
                sockets += await _open_on(web, [other for other in webs if other is not web], url, headers)
            for n in range(EVENTS):  # each POST on a new connection: either process may take it
                status, body = await asyncio.to_thread(server.api, "POST", "/api/events", {
                    "stackId": "both", "event": "NOTE" if n else "LAUNCH", "machine": "plain"})
                assert status == 200, body

            async def seqs(socket) -> list[int]:
                return [json.loads(await asyncio.wait_for(socket.recv(), 10))["stack"]["seq"] for _ in range(EVENTS)]

            seen = await asyncio.gather(*(seqs(socket) for socket in sockets))
            await asyncio.gather(*(socket.close() for socket in sockets))
            return seen

        seen = asyncio.run(watch())
    finally:
        server.cleanup()

    first = min(seen[0])
    assert [sorted(seqs) for seqs in seen] == [list(range(first, first + EVENTS))] * (2 * PER_PROCESS)
