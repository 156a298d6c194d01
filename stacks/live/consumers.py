"""WebSocket consumers (DESIGN §6.4): a full snapshot on connect, then every change.

The group is joined before the snapshot is read, so a change committed in between is delivered
(possibly twice, which is harmless: updates carry whole snapshots).

Every stack snapshot carries the stack's `seq` (one more per applied change). A client that sees a
gap (a frame lost on the way) sends `{"type": "resync"}` and gets a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from cloudseam_site import strict_json
from cloudseam_site.accounts.roles import RANK, ROLE_VIEWER, user_role, weaker
from stacks.live import publish as live
from stacks.models import Stack, StackEvent
from stacks.snapshots import event_json, stack_json

log = logging.getLogger(__name__)

SNAPSHOT_LIMIT = 500
RESYNC_MAX = 200  # characters: a resync request is tiny; a longer message is not read at all
GROUP_REJOIN = 3600  # seconds; well under the layer's group_expiry
DISCARD_TRIES = 4
# What the channel layer brings (stacks/live/publish.py) and goes to the browser as it is.
LIVE_TYPES = frozenset({"stack.updated", "stack.removed", "history.added", "task.output"})


def _role(scope) -> str | None:
    role = user_role(scope.get("user"))
    token = scope.get("api_token")
    return weaker(role, token.role) if token is not None else role


class _BaseConsumer(AsyncJsonWebsocketConsumer):
    groups_to_join: list[str]

    async def connect(self) -> None:
        allowed = await database_sync_to_async(_role)(self.scope)
        if RANK[allowed] < RANK[ROLE_VIEWER]:
            await self.close(code=4401)
            return
        for group in self.groups_to_join:
            await self.channel_layer.group_add(group, self.channel_name)
        self.rejoin = asyncio.ensure_future(self._keep_membership())
        await self.accept()
        await self.send_json(await database_sync_to_async(self.snapshot)())

    async def _keep_membership(self) -> None:
        """Group members expire (so that those of a crashed process go); a live connection stays."""
        while True:
            await asyncio.sleep(GROUP_REJOIN)
            for group in self.groups_to_join:
                await self.channel_layer.group_add(group, self.channel_name)

    async def disconnect(self, code) -> None:
        rejoin = getattr(self, "rejoin", None)
        if rejoin is not None:
            rejoin.cancel()
        for group in getattr(self, "groups_to_join", []):
            await _discard(self.channel_layer, group, self.channel_name)

    def snapshot(self) -> dict:
        raise NotImplementedError

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        """Watchers only listen: events go through the API. The one thing a client may say is
        `{"type": "resync"}` (it saw a gap in `seq` and gets the whole picture again); anything
        else, hostile JSON included, is ignored without failing the consumer."""
        if not text_data or len(text_data) > RESYNC_MAX:
            return
        try:
            content = strict_json.loads(text_data)
        except (ValueError, RecursionError):
            return
        if isinstance(content, dict) and content.get("type") == "resync":
            await self.send_json(await database_sync_to_async(self.snapshot)())

    async def dispatch(self, message: dict) -> None:
        """Live updates go straight out as the frame the publisher encoded (stacks/live/publish.py).

        Channels' own dispatch first runs `close_old_connections` in the sync thread for every
        message: one thread hop per update per watcher, all queued on one thread, for handlers
        that touch no database. What does touch it (connect, resync) goes through
        `database_sync_to_async`, which closes stale connections itself.
        """
        if message.get("type") in LIVE_TYPES:
            frame = message.get("frame")
            await self.send(text_data=frame if frame is not None else await self.encode_json(message))
        else:
            await super().dispatch(message)


async def _discard(layer, group: str, channel: str) -> None:
    """Leave the group, retrying a Redis hiccup: a member left behind gets every frame until it expires."""
    for attempt in range(DISCARD_TRIES):
        try:
            await layer.group_discard(group, channel)
            return
        except Exception:  # noqa: BLE001 - retried, then logged; a disconnect must not raise
            if attempt == DISCARD_TRIES - 1:
                log.warning("could not leave group %s; the member expires with the group", group, exc_info=True)
                return
            await asyncio.sleep(0.2 * 2**attempt)


class StacksConsumer(_BaseConsumer):
    """/ws/stacks/: every active stack."""

    async def connect(self) -> None:
        self.groups_to_join = [live.ALL_STACKS_GROUP]
        await super().connect()

    def snapshot(self) -> dict:
        stacks = Stack.objects.active().select_related("machine", "machine_version").prefetch_related("tasks")
        total = stacks.count()
        recent = stacks.order_by("-updated_at")[:SNAPSHOT_LIMIT]
        items = [stack_json(s, [t for t in s.tasks.all() if t.current]) for s in recent]
        return {"type": "snapshot", "stacks": items, "total": total, "truncated": total > len(items)}


class StackConsumer(_BaseConsumer):
    """/ws/stacks/<id>/: one stack, its history, and its tasks' output lines."""

    async def connect(self) -> None:
        self.stack_key = self.scope["url_route"]["kwargs"]["stack_id"]
        self.groups_to_join = [live.stack_group(self.stack_key)]
        await super().connect()

    def snapshot(self) -> dict:
        stack = Stack.objects.latest_for(self.stack_key)
        if stack is None:
            return {"type": "snapshot", "stack": None}
        history = StackEvent.objects.filter(stack=stack)[:50]
        return {"type": "snapshot", "stack": stack_json(stack), "history": [event_json(e) for e in history]}

