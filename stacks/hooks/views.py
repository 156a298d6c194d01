"""`POST /hooks/<name>`: check the sender, refuse replays, map the delivery, apply it through the one door.

Answers are JSON: 401 for a bad signature and 404 for an unknown hook (nothing changed), 409 for a
delivery id already received (nothing applied twice), 202 for a delivery this hook does not map, and
otherwise the answer of `stacks.services.handle_event` (200, or its refusal with its status).
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from cloudseam_site import strict_json
from cloudseam_site.api import error, iso
from stacks import services
from stacks.hooks import mapping, verify
from stacks.hooks.models import HookDelivery, InboundHook

log = logging.getLogger(__name__)

SOURCE = "webhook"
EVENT_HEADERS = {"github": "X-GitHub-Event", "gitlab": "X-Gitlab-Event", "generic": ""}


def config_of(hook: InboundHook) -> mapping.HookConfig:
    events = {mapping.OPEN: hook.on_open, mapping.UPDATE: hook.on_update, mapping.CLOSE: hook.on_close}
    return mapping.HookConfig(hook.name, hook.source, hook.machine.name if hook.machine else None,
                              hook.stack_id_template, events)


@csrf_exempt
def receive(request: HttpRequest, name: str) -> JsonResponse:
    if request.method != "POST":
        response = error(405, "send webhook deliveries with POST")
        response["Allow"] = "POST"
        return response
    hook = InboundHook.objects.select_related("machine").filter(name=name, enabled=True).first()
    if hook is None:
        return error(404, f"there is no enabled hook named {name[:63]}; hooks are configured in the admin")
    body = request.read(settings.API_MAX_BODY * 4 + 1)
    if len(body) > settings.API_MAX_BODY * 4:
        return error(413, f"the delivery is larger than {settings.API_MAX_BODY * 4 // 1024} KiB")
    problem = verify.signature_problem(hook.source, hook.secret, request.headers, body)
    if problem:
        return error(401, f"The delivery was refused and nothing was changed: {problem}.")
    try:
        payload = strict_json.loads(body.decode("utf-8"), "the delivery")
    except (ValueError, RecursionError) as exc:
        return error(400, f"the delivery is not JSON CloudSeam can read: {getattr(exc, 'message', exc)}")
    delivery_id = verify.delivery_id(hook.source, request.headers, payload if isinstance(payload, dict) else {})
    if not delivery_id or len(delivery_id) > 200:
        return error(400, "the delivery has no usable id (X-GitHub-Delivery, Idempotency-Key or X-Gitlab-Event-UUID, "
                          "at most 200 characters); without one a replay could not be refused")
    try:
        mapped = mapping.map_delivery(config_of(hook), request.headers.get(EVENT_HEADERS[hook.source], ""), payload)
    except mapping.BadPayload as exc:
        return error(400, f"the delivery was not understood: {exc.message}")
    return _apply_once(hook, delivery_id, mapped)


def _apply_once(hook: InboundHook, delivery_id: str, mapped: mapping.Mapped) -> JsonResponse:
    """Record the delivery id and apply its event in one transaction: a replay finds the id and stops."""
    try:
        with transaction.atomic():
            delivery = HookDelivery.objects.create(hook=hook, delivery_id=delivery_id, kind=mapped.kind[:100],
                                                   stack_key=str((mapped.message or {}).get("stackId", ""))[:63])
            status, answer = _answer(hook, delivery_id, mapped)
            delivery.status_code, delivery.response = status, answer
            delivery.save(update_fields=["status_code", "response"])
    except IntegrityError:
        first = HookDelivery.objects.filter(hook=hook, delivery_id=delivery_id).first()
        if first is None:
            raise
        return error(409, f"delivery {delivery_id} was already received at {iso(first.received_at)}; "
                          "it is not applied again", firstStatus=first.status_code, firstAnswer=first.response)
    return JsonResponse(answer, status=status)


def _answer(hook: InboundHook, delivery_id: str, mapped: mapping.Mapped) -> tuple[int, dict]:
    if mapped.message is None:
        return 202, {"status": "ignored", "kind": mapped.kind, "reason": mapped.reason}
    message = {**mapped.message, "id": f"hook:{hook.name}:{delivery_id}"[:200]}
    result = services.handle_event(message, actor=f"{hook.source}:{hook.name}", source=SOURCE)
    answer = {"status": result.outcome, "kind": mapped.kind, "stackId": message.get("stackId"),
              "event": message.get("event")}
    answer.update({"stack": result.body} if result.ok else result.body)
    return result.status, json.loads(json.dumps(answer, default=str))
