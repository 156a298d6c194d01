"""P5: an event's way to the browsers, through the real server and through bare Channels, same run.

The real server is `serve --web 2` (two Daphne processes on one port, PostgreSQL, the given Redis),
started as bench_server starts it, without workers (the events start no tasks). Watchers
are WebSocket clients of the dashboard socket (/ws/stacks/, every stack: each event reaches each
watcher), in WATCH_PROCESSES processes of their own. Events are POSTed to /api/events on a fixed
schedule by keep-alive clients; each carries its send time (`time.monotonic()`, one clock for every
process of the machine) in its metadata, the snapshot in the frame carries it back, so a watcher
measures POST sent → frame received for every frame it gets.

The reference is bare channels_redis + Daphne: a Daphne serving only a consumer that joins one group
and sends what it is given (`bare_application` below), and `group_send` of the same snapshot from
this process at the same rate, to the same number of watchers, on the same Redis. Both run side by
side and take turns (laps of 2 s), so that the machine's other load falls on both alike.

Figures: frame latency p50/p99 with 50 watchers at 50 events/s (server and bare); the time from the
first POST of 1 000 events (as fast as 8 clients go) until 200 watchers have every frame, beside the
same 1 000 frames group_sent as fast as they go to 200 watchers of the bare Daphne; the POST
latency p50 with 0 and with 200 watchers at 10 events/s (the cost of an event in the request).
`benchmarks/run.py P5` runs it; `measure()` returns the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WATCHERS, RATE = 50, 50
LAPS, LAP_EVENTS, WARMUP_EVENTS = 3, 100, 25  # the latency figures: laps of events taken in turns with bare
MANY_WATCHERS, MANY_EVENTS = 200, 1000
# The POST latency with 0 and 200 watchers, at a rate that leaves the machine room: what an event
# costs in the request, not how a saturated machine queues (that shows in the frame latencies).
COST_EVENTS, COST_RATE = 30, 10
WEB = 2  # `serve --web`: web processes sharing the port
POSTERS = 8  # keep-alive HTTP clients
STACKS = 10  # events go round-robin to this many stacks (different rows, as for real users)
WATCH_PROCESSES = 2
GRACE = 30.0  # seconds the watchers may still wait for frames once everything is sent
BARE_GROUP = "bench"
SENT = re.compile(rb'"sent":\s*([0-9.]+)')


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# ---- watchers (run in their own processes: `python -m benchmarks.bench_live watch '<json>'`) ----

async def _open(url: str, headers: dict, limit: asyncio.Semaphore):
    from websockets.asyncio.client import connect

    async with limit:
        socket = await connect(url, additional_headers=headers, compression=None, max_size=None,
                               open_timeout=60, ping_interval=None, close_timeout=1)
        await socket.recv(decode=False)  # the snapshot
        return socket


async def _read(socket, expected: int, keep: bool, latencies: list, last: list, index: int) -> int:
    frames = 0
    while frames < expected:
        frame = await socket.recv(decode=False)
        now = time.monotonic()
        frames += 1
        last[index] = now
        if keep:
            found = SENT.search(frame)
            if found:
                sent = float(found.group(1))
                latencies.append((sent, now - sent))
    return frames


async def _told_to_stop() -> None:
    """The parent writes how many seconds more to wait once it has sent everything."""
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await asyncio.sleep(float(line or 0))


async def watch(url: str, count: int, expected: int, headers: dict, keep: bool) -> dict:
    """Connect `count` sockets, say "ready", read `expected` frames on each (or until told to stop)."""
    limit = asyncio.Semaphore(25)
    sockets = await asyncio.gather(*(_open(url, headers, limit) for _ in range(count)))
    print("ready", flush=True)
    latencies: list = []
    last = [0.0] * count
    readers = [asyncio.ensure_future(_read(s, expected, keep, latencies, last, i)) for i, s in enumerate(sockets)]
    await asyncio.wait([asyncio.ensure_future(asyncio.wait(readers)), asyncio.ensure_future(_told_to_stop())],
                       return_when=asyncio.FIRST_COMPLETED)
    frames = [r.result() if r.done() and not r.exception() else 0 for r in readers]
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    return {"latencies": latencies, "last": max(last), "complete": sum(f >= expected for f in frames)}


class Watchers:
    """WATCH_PROCESSES processes sharing `count` watchers of `url`; started and connected on creation."""

    def __init__(self, url: str, count: int, expected: int, headers: dict, keep: bool = True):
        self.count = count
        shares = [count // WATCH_PROCESSES + (i < count % WATCH_PROCESSES) for i in range(WATCH_PROCESSES)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.processes = [
            subprocess.Popen([sys.executable, "-m", "benchmarks.bench_live", "watch", json.dumps(
                {"url": url, "count": share, "expected": expected, "headers": headers, "keep": keep})],
                cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for share in shares if share
        ]
        for process in self.processes:
            line = process.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"watchers did not connect to {url}: {line!r}")

    def results(self, grace: float = GRACE) -> dict:
        """What they saw, once every watcher has every frame or `grace` seconds after this call."""
        for process in self.processes:
            process.stdin.write(f"{grace}\n")
            process.stdin.flush()
        parts = [json.loads(process.communicate(timeout=grace + 60)[0].strip().splitlines()[-1])
                 for process in self.processes]
        return {"latencies": [pair for part in parts for pair in part["latencies"]],
                "last": max(part["last"] for part in parts),
                "missing": self.count - sum(part["complete"] for part in parts)}


def latency_figures(results: dict, windows: list[tuple[float, float]]) -> dict:
    """p50/p99 (ms) of the frames of events sent within `windows` (the measured laps)."""
    ms = [latency * 1000 for sent, latency in results["latencies"] if any(a <= sent <= b for a, b in windows)]
    if not ms:
        return {"p50": None, "p99": None, "frames": 0, "missing": results["missing"]}
    return {"p50": statistics.median(ms), "p99": percentile(ms, 0.99), "frames": len(ms),
            "missing": results["missing"]}


# ---- the real server ----

def post_schedule(port: int, token: str, count: int, rate: float | None) -> list[float]:
    """POST `count` NOTE events (at `rate` per second, or as fast as POSTERS clients go); POST latencies (ms)."""
    from benchmarks.bench_server import Client

    latencies: list[float] = []
    errors: list = []
    started = time.monotonic()

    def run(first: int) -> None:
        client = Client(port, token)
        for number in range(first, count, POSTERS):
            if rate:
                delay = started + number / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            sent = time.monotonic()
            status, body = client.call("POST", "/api/events", {
                "stackId": f"p5-{number % STACKS}", "event": "NOTE", "metadata": {"sent": sent}})
            latencies.append((time.monotonic() - sent) * 1000)
            if status != 200:
                errors.append((status, body))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(POSTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} POSTs failed, e.g. {errors[0]}")
    return latencies


def latency_laps(server, token: str, viewer: str, bare_port: int, snapshot: dict) -> dict:
    """50 watchers on each, events at RATE in turns: a lap of bare group_send, a lap of POSTs, …"""
    headers = {"Authorization": f"Bearer {viewer}"}
    expected = WARMUP_EVENTS + LAPS * LAP_EVENTS
    ours = Watchers(f"ws://127.0.0.1:{server.port}/ws/stacks/", WATCHERS, expected, headers)
    bare = Watchers(f"ws://127.0.0.1:{bare_port}/", WATCHERS, expected, {})
    asyncio.run(_group_send_at_rate(snapshot, WARMUP_EVENTS))
    post_schedule(server.port, token, WARMUP_EVENTS, RATE)
    windows: dict[str, list] = {"bare": [], "ours": []}
    posts: list[float] = []
    for _ in range(LAPS):
        started = time.monotonic()
        asyncio.run(_group_send_at_rate(snapshot, LAP_EVENTS))
        windows["bare"].append((started, time.monotonic()))
        started = time.monotonic()
        posts += post_schedule(server.port, token, LAP_EVENTS, RATE)
        windows["ours"].append((started, time.monotonic()))
    return {"frames": latency_figures(ours.results(), windows["ours"]),
            "bare": latency_figures(bare.results(), windows["bare"]), "post_p50_at_rate": statistics.median(posts)}


def many_watchers(server, token: str, viewer: str) -> dict:
    """POST latency at COST_RATE with 200 watchers; then 1 000 events as fast as they go to them."""
    many = Watchers(f"ws://127.0.0.1:{server.port}/ws/stacks/", MANY_WATCHERS, COST_EVENTS + MANY_EVENTS,
                    {"Authorization": f"Bearer {viewer}"}, keep=False)
    with_200 = post_schedule(server.port, token, COST_EVENTS, COST_RATE)
    started = time.monotonic()
    post_schedule(server.port, token, MANY_EVENTS, None)
    posted = time.monotonic() - started
    done = many.results()
    return {"many_seconds": done["last"] - started, "many_missing": done["missing"], "many_posted_seconds": posted,
            "post_p50_200": statistics.median(with_200)}


def start_server(database_url: str, redis_url: str):
    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_server import MACHINE
    from tests.live_server import Server

    server = Server(workers=0, web=WEB, include_demo_machines=False, env={
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "CLOUDSEAM_LOG_LEVEL": "WARNING",
        "CLOUDSEAM_CHANNEL_PREFIX": f"bench-live-{os.getpid()}"})
    server.start()
    status, body = server.api("PUT", "/api/machines/bench", raw=MACHINE.encode(), content_type="application/yaml")
    assert status in (200, 201), body
    for i in range(STACKS):
        status, body = server.api("POST", "/api/events", {"stackId": f"p5-{i}", "event": "LAUNCH", "machine": "bench"})
        assert status == 200, body
    return server


# ---- the bare reference ----

_bare = None


async def bare_application(scope, receive, send):
    """Daphne's application for the reference: every socket joins BARE_GROUP and gets what is sent to it."""
    global _bare
    if _bare is None:
        _bare = _build_bare()
    await _bare(scope, receive, send)


def _build_bare():
    import django
    from django.conf import settings

    settings.configure(CHANNEL_LAYERS={"default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": bare_layer_config()}})
    django.setup()
    from channels.generic.websocket import AsyncJsonWebsocketConsumer

    class BareConsumer(AsyncJsonWebsocketConsumer):
        groups = [BARE_GROUP]

        async def connect(self) -> None:
            await self.accept()
            await self.send_json({"type": "snapshot"})

        async def stack_updated(self, message: dict) -> None:
            await self.send_json(message)

    return BareConsumer.as_asgi()


def bare_layer_config() -> dict:
    """channels_redis's defaults but for what CloudSeam's settings change for the same reasons: reads
    that may block 5 s (redis-py 8 gave up on them at 5 s) and room for a burst (capacity 100)."""
    return {"hosts": [{"address": os.environ["BENCH_LIVE_REDIS"], "socket_timeout": 30}],
            "prefix": os.environ["BENCH_LIVE_PREFIX"], "capacity": 2000}


async def _group_send_at_rate(snapshot: dict, count: int, rate: float | None = RATE) -> None:
    """`count` group messages at `rate` per second (None: as fast as they go)."""
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(**bare_layer_config())
    started = time.monotonic()
    for number in range(count):
        delay = started + number / rate - time.monotonic() if rate else 0
        if delay > 0:
            await asyncio.sleep(delay)
        stack = {**snapshot, "metadata": {**snapshot["metadata"], "sent": time.monotonic()}}
        await layer.group_send(BARE_GROUP, {"type": "stack.updated", "stack": stack})
    await layer.close_pools()


def bare_many_watchers(bare_port: int, snapshot: dict) -> dict:
    """P5b's reference: MANY_EVENTS bare group messages, as fast as they go, to MANY_WATCHERS sockets."""
    many = Watchers(f"ws://127.0.0.1:{bare_port}/", MANY_WATCHERS, MANY_EVENTS, {}, keep=False)
    started = time.monotonic()
    asyncio.run(_group_send_at_rate(snapshot, MANY_EVENTS, rate=None))
    sent = time.monotonic() - started
    done = many.results()
    return {"bare_many_seconds": done["last"] - started, "bare_many_sent_seconds": sent,
            "bare_many_missing": done["missing"]}


def start_bare(redis_url: str) -> tuple[subprocess.Popen, int]:
    """The reference's Daphne (`bare_application`), on a port of its own."""
    from tests.live_server import free_port

    port = free_port()
    os.environ.update({"BENCH_LIVE_REDIS": redis_url, "BENCH_LIVE_PREFIX": f"bench-bare-{os.getpid()}"})
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    daphne = subprocess.Popen([sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port),
                               "benchmarks.bench_live:bare_application"], cwd=ROOT, env=env)
    _wait_for_port(port)
    return daphne, port


def _wait_for_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")


def measure(database_url: str, redis_url: str) -> dict:
    """The figures of the module docstring; the bare reference uses the server's own snapshot as payload."""
    server, bare = start_server(database_url, redis_url), None
    try:
        token, viewer = server.token("admin"), server.token("viewer")
        post_schedule(server.port, token, 2 * STACKS, RATE)  # warm-up, no watchers
        alone = post_schedule(server.port, token, COST_EVENTS, COST_RATE)
        status, snapshot = server.api("GET", "/api/stacks/p5-0")
        bare, bare_port = start_bare(redis_url)
        figures = latency_laps(server, token, viewer, bare_port, snapshot)
        figures.update(bare_many_watchers(bare_port, snapshot))
        bare.terminate()
        bare.wait(10)
        figures.update(many_watchers(server, token, viewer))
        figures["post_p50"] = {0: statistics.median(alone), MANY_WATCHERS: figures.pop("post_p50_200")}
        return figures
    finally:
        if bare is not None and bare.poll() is None:
            bare.kill()
        server.cleanup()


if __name__ == "__main__":
    if sys.argv[1:2] == ["watch"]:
        options = json.loads(sys.argv[2])
        print(json.dumps(asyncio.run(watch(**options))), flush=True)
