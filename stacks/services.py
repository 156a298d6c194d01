"""The one door through which stacks change: `handle_event` (DESIGN §3).

One transaction with the stack's row locked: create-or-load, merge metadata, apply the engine,
persist, record the event. Jobs are enqueued and watchers told only after commit. A rejected event
rolls everything back and is then recorded on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from cloudseam_site import prepared_sql
from cloudseam_site.accounts.roles import Actor
from machines_app.models import Machine
from machines_app.spec import SYSTEM_EVENTS
from stacks import attempts, effects, engine, prepared
from stacks.messages import BadMessage, EventMessage, parse_message
from stacks.models import (
    OUTCOME_APPLIED,
    OUTCOME_IGNORED,
    OUTCOME_REJECTED,
    Stack,
    StackEvent,
    Task,
    new_task_id,
)
from stacks.notifications import rules as notify_rules
from stacks.runtime.queueing import job_for
from stacks.snapshots import event_json, stack_json

log = logging.getLogger(__name__)

UPDATE_METADATA = "UPDATE_METADATA"  # merge metadata only, in any state (pages, admin, API)
UPGRADE_MACHINE = "UPGRADE_MACHINE"  # pin the stack to its machine's newest version
RETRY_TASK = "RETRY_TASK"  # run one failed task again (task: {name} or {id}); the others stay as they are
SERVICE_EVENTS = (UPDATE_METADATA, UPGRADE_MACHINE, RETRY_TASK)

STATUS_BY_CODE = {
    "nothing_to_upgrade": 409,
    "state_missing": 409,
    "tasks_differ": 409,
    "bad_event": 400,
    "system_event": 400,
    "not_accepted": 409,
    "unknown_task": 409,
    "nothing_to_retry": 409,
    "machine_mismatch": 409,
    "unknown_machine": 404,
    "forbidden_machine": 403,
    "unknown_stack": 404,
    "no_version": 409,
    "id_reused": 409,
}
CREATE_RETRIES = 3


class Rejected(Exception):
    """Raised inside the transaction to roll it back; turned into a recorded rejection."""

    def __init__(self, code: str, message: str, stack: Stack | None = None):
        self.code, self.message, self.stack = code, message, stack
        super().__init__(message)


@dataclass
class EventResult:
    """What the caller tells its user: a status code and a JSON body."""

    status: int
    body: dict
    outcome: str
    stack: Stack | None = None
    repeated: bool = False

    @property
    def ok(self) -> bool:
        return self.status == 200


def handle_event(message: Mapping | EventMessage, *, actor: str | Actor, source: str) -> EventResult:
    """Apply one event message; never raises for bad input, answers with a status and a body.

    `actor` is a name, or an Actor whose machine scope limits which stacks it may change.
    """
    try:
        msg = message if isinstance(message, EventMessage) else parse_message(message)
    except BadMessage as exc:
        return EventResult(400, {"error": exc.message}, OUTCOME_REJECTED)
    if msg.message_id:
        earlier = _earlier_answer(msg, actor=str(actor), source=source)
        if earlier is not None:
            return earlier
    for attempt in range(CREATE_RETRIES):
        try:
            return _apply(msg, actor=actor, source=source)
        except Rejected as exc:
            return _record_rejection(msg, exc, actor=str(actor), source=source)
        except IntegrityError:
            # Another process created the same stack (or used the same message id) first;
            # the next attempt finds its row and locks it.
            if attempt == CREATE_RETRIES - 1:
                raise
            earlier = _earlier_answer(msg, actor=str(actor), source=source) if msg.message_id else None
            if earlier is not None:
                return earlier
    raise AssertionError("unreachable")


def _earlier_answer(msg: EventMessage, *, actor: str, source: str) -> EventResult | None:
    """The first answer to this message id; a 409 (recorded) when the id came with another message."""
    first = StackEvent.objects.filter(stack_key=msg.stack_id, message_id=msg.message_id).first()
    if first is None:
        return None
    same = first.fingerprint == msg.fingerprint if first.fingerprint else (
        first.event == msg.event and first.metadata == dict(msg.metadata))  # recorded before fingerprints
    if not same:
        exc = Rejected("id_reused", f"id {msg.message_id} was already used for a different message "
                       f"({first.event} to stack {msg.stack_id}); give each new message a new id", first.stack)
        return _record_rejection(msg, exc, actor=actor, source=source)
    return EventResult(first.status_code, first.response, first.outcome, repeated=True)


def _check_scope(actor: str | Actor, machine_name: str, stack: Stack | None) -> None:
    scope = getattr(actor, "machines", None)
    if scope is not None and machine_name not in scope:
        allowed = ", ".join(sorted(scope)) or "none"
        raise Rejected(
            "forbidden_machine",
            f"{actor} may not change stacks of machine {machine_name}; machines allowed: {allowed}",
            stack,
        )


def _load_or_create(msg: EventMessage, actor: str | Actor) -> tuple[Stack, bool]:
    # Only the stack's own row is locked (of=self): locking the joined machine rows too made every
    # event of a machine wait for the one before. The YAML text stays behind: the spec is cached by
    # content hash (MachineVersion.spec), so the locked select does not carry the whole document.
    # The statement is built once per connection (stacks.prepared): building it cost more CPU than
    # running it did.
    stack = prepared.lock_active_stack(msg.stack_id)
    if stack is not None:
        _check_scope(actor, stack.machine.name, stack)  # first: say nothing more to whom may not act here
        if msg.machine and msg.machine != stack.machine.name:
            raise Rejected(
                "machine_mismatch",
                f"stack {stack.key} runs machine {stack.machine.name}, not {msg.machine}; "
                "leave machine out or use the stack's own machine",
                stack,
            )
        return stack, False
    if msg.event in SYSTEM_EVENTS:
        _refuse_system_event_without_stack(msg)
    if not msg.machine:
        raise Rejected(
            "unknown_stack",
            f"stack {msg.stack_id} does not exist; to create it, name its machine with this first event "
            "(machine in the API, --machine on the command line)",
        )
    machine = Machine.objects.select_related("current_version").filter(name=msg.machine).first()
    if machine is None:
        known = ", ".join(Machine.objects.values_list("name", flat=True)[:20]) or "none"
        raise Rejected("unknown_machine", f"machine {msg.machine} does not exist; known machines: {known}")
    _check_scope(actor, machine.name, None)
    if machine.current_version is None:
        raise Rejected("no_version", f"machine {machine.name} has no valid version yet")
    stack = Stack.objects.create(
        key=msg.stack_id, machine=machine, machine_version=machine.current_version, state=engine.INIT
    )
    return stack, True


def _refuse_system_event_without_stack(msg: EventMessage) -> None:
    """A late task report (or a retry) for a stack that is gone must not create an empty new one."""
    removed = Stack.objects.removed().filter(key=msg.stack_id).order_by("-removed_at").first()
    why = f" (it was removed at {removed.removed_at:%Y-%m-%d %H:%M:%S} UTC)" if removed else ""
    what = "task completions and errors" if msg.event in ("TASK_COMPLETED", "TASK_ERROR") else "system events"
    raise Rejected("unknown_stack", f"stack {msg.stack_id} does not exist{why}; {what} never create a stack "
                   f"({msg.event} was not applied)", removed)


def _snapshot(stack: Stack, tasks: list[Task], metadata: Mapping) -> engine.StackSnapshot:
    alive_since = timezone.now() - timedelta(seconds=settings.CLOUDSEAM_TASK_LOST_AFTER)
    return engine.StackSnapshot(
        id=stack.key,
        state=stack.state,
        previous_state=stack.previous_state,
        tasks=tuple(
            engine.TaskInstance(
                id=t.id, name=t.name, status=t.status, error=t.error_message or None, attempts=t.attempts,
                running=t.heartbeat_at is not None and t.heartbeat_at > alive_since,
            )
            for t in tasks
        ),
        metadata=metadata,
    )


def _run_engine(stack: Stack, machine, before: engine.StackSnapshot, msg: EventMessage) -> engine.Outcome:
    """The engine, plus the two operations that only the service can do (they touch the row)."""
    if msg.event == UPDATE_METADATA:
        return engine.Outcome(stack=before)  # the merge already happened in `before`
    if msg.event == UPGRADE_MACHINE:
        return _upgrade_machine(stack, before)
    if msg.event == RETRY_TASK:
        return engine.retry_task(machine, before, msg.task, new_id=new_task_id)
    return engine.apply_event(
        machine, before, msg.event, task_ref=msg.task, description=msg.description, new_id=new_task_id
    )


def _upgrade_machine(stack: Stack, before: engine.StackSnapshot) -> engine.Outcome:
    """Pin the stack to its machine's newest version, if its state and tasks still fit there."""
    newest = stack.machine.current_version
    if newest is None or newest.pk == stack.machine_version_id:
        raise engine.EventRejected(
            "nothing_to_upgrade", f"stack {stack.key} already uses the newest version of {stack.machine.name}"
        )
    target = newest.spec
    state = target.states.get(stack.state)
    if state is None:
        raise engine.EventRejected(
            "state_missing",
            f"state {stack.state} does not exist in version {newest.number} of {stack.machine.name}; "
            f"move the stack to a state that exists there first",
        )
    if tuple(t.name for t in before.tasks) != tuple(state.tasks):
        raise engine.EventRejected(
            "tasks_differ",
            f"state {stack.state} has different tasks in version {newest.number}; "
            "move the stack once it has left this state",
        )
    stack.machine_version = newest
    stack.save(update_fields=["machine_version"])
    return engine.Outcome(stack=before)


@transaction.atomic
def _apply(msg: EventMessage, *, actor: str | Actor, source: str) -> EventResult:
    stack, _created = _load_or_create(msg, actor)
    # Locked too: a worker claiming one of them waits, then sees whether a retry replaced it.
    tasks = prepared.lock_current_tasks(stack.pk)
    before = _snapshot(stack, tasks, engine.merge_metadata(stack.metadata, msg.metadata))
    machine = stack.machine_version.spec
    if _created and msg.event in SERVICE_EVENTS:
        raise Rejected("not_accepted", f"{msg.event} needs an existing stack; stack {stack.key} is new")
    try:
        outcome = _run_engine(stack, machine, before, msg)
    except engine.EventRejected as exc:
        raise Rejected(exc.code, exc.message, None if _created else stack) from None
    if outcome.ignored:  # a stale report: recorded, but the stack (metadata included) stays as it was
        snapshot = stack_json(stack, tasks)
        warning = _metadata_warning(msg, "ignored")
        if warning:
            snapshot["warning"] = warning
        error = ". ".join(filter(None, (outcome.ignored_reason, warning)))
        record = _record(msg, stack, actor, source, OUTCOME_IGNORED, stack.state, stack.state,
                         error, 200, snapshot, tasks=tasks)
        effects.after_commit(stack.key, event=event_json(record))
        return EventResult(200, snapshot, OUTCOME_IGNORED, stack=stack)
    current = _persist(stack, tasks, before, outcome, machine)
    attempts.note_reports(msg.event, source, str(actor), before, outcome.stack, outcome.retired,
                          (*tasks, *current), msg.description)
    snapshot = stack_json(stack, current)
    record = _record(msg, stack, actor, source, OUTCOME_APPLIED, None if _created else before.state, stack.state,
                     "", 200, snapshot, tasks=tasks)
    by_id = {t.id: t for t in current}
    jobs = [job_for(by_id[t_id], machine.tasks[by_id[t_id].name]) for t_id in outcome.dispatch]
    effects.after_commit(stack.key, event=event_json(record), snapshot=snapshot, jobs=jobs, cancelled=outcome.cancelled)
    notify_rules.schedule(machine, stack, snapshot, record, outcome)
    return EventResult(200, snapshot, OUTCOME_APPLIED, stack=stack)


def _record(msg: EventMessage, stack: Stack | None, actor, source: str, outcome: str, from_state: str | None,
            to_state: str | None, error: str, status: int, response: dict, *, keep_id: bool = True,
            tasks: list[Task] = ()) -> StackEvent:
    """One history entry; with its message id (unless told not to), so a repeat gets this answer."""
    return prepared_sql.insert(StackEvent(
        stack=stack,
        stack_key=msg.stack_id,
        event=msg.event,
        source=source,
        actor=str(actor),
        outcome=outcome,
        from_state=from_state,
        to_state=to_state,
        error=error,
        metadata=dict(msg.metadata),
        task_ref=_task_label(msg.task, tasks),
        message_id=msg.message_id if keep_id else None,
        status_code=status,
        response=response,
        fingerprint=msg.fingerprint if keep_id and msg.message_id else "",
        machine_version_id=stack.machine_version_id if stack is not None else None,
    ))


def _metadata_warning(msg: EventMessage, what: str) -> str:
    """A sentence for the sender (and the history) when the metadata it sent was not kept; "" if none."""
    if not msg.metadata:
        return ""
    keys = sorted(msg.metadata)
    shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
    hint = f"; send it again with an event that is applied, e.g. {UPDATE_METADATA}"
    hint = "" if msg.event == UPDATE_METADATA else hint
    return f"The metadata sent with this {msg.event} ({shown}) was not applied because the event was {what}{hint}."


def _task_label(ref: Mapping | None, tasks: list[Task] = ()) -> str:
    """How history names the task a report is about: its name, and the instance when sent by id."""
    if not ref:
        return ""
    if "name" in ref:
        return ref["name"]
    task_id = ref["id"]
    name = next((t.name for t in tasks if t.id == task_id), None)
    if name is None:
        name = Task.objects.filter(pk=task_id).values_list("name", flat=True).first()
    return f"{name} (instance {task_id[:8]})" if name else f"instance {task_id[:8]}"


def _persist(stack: Stack, old_tasks: list[Task], before: engine.StackSnapshot, outcome: engine.Outcome,
             machine) -> list[Task]:
    """Write the engine's new snapshot: stack row, retired task rows, new and changed task rows."""
    new = outcome.stack
    now = timezone.now()
    stack.state, stack.previous_state, stack.metadata = new.state, new.previous_state, dict(new.metadata)
    if outcome.removed:
        stack.removed_at = now
    stack.seq += 1  # the row is locked: live frames carry it, so a watcher can tell it missed one
    prepared_sql.update(stack, ["state", "previous_state", "metadata", "removed_at", "updated_at", "seq"])
    old_by_id = {t.id: t for t in old_tasks}
    changed = [row for inst in outcome.retired if _set_status(row := old_by_id[inst.id], inst, now, current=False)]
    result, created = [], []
    for position, inst in enumerate(new.tasks):
        row = old_by_id.get(inst.id)
        if row is None:
            executor = machine.tasks[inst.name].executor
            row = Task(
                id=inst.id, stack=stack, name=inst.name, state=new.state, position=position,
                executor=executor, status=inst.status, attempts=inst.attempts, error_message=inst.error or "",
            )
            created.append(row)
        elif _set_status(row, inst, now):
            changed.append(row)
        result.append(row)
    _save_statuses(changed)
    if created:
        Task.objects.bulk_create(created)  # one INSERT however many tasks the state has
    return result


TASK_STATUS_FIELDS = ("status", "error_message", "current", "finished_at", "heartbeat_at")


def _save_statuses(rows: list[Task]) -> None:
    """One UPDATE per distinct new status: the tasks a state leaves all become the same (one query)."""
    groups: dict[tuple, list[str]] = {}
    for row in rows:
        groups.setdefault(tuple(getattr(row, f) for f in TASK_STATUS_FIELDS), []).append(row.pk)
    for values, pks in groups.items():
        Task.objects.filter(pk__in=pks).update(**dict(zip(TASK_STATUS_FIELDS, values, strict=True)))


def _set_status(row: Task, inst: engine.TaskInstance, now, current: bool = True) -> bool:
    """Give a task row its new status (and retire it); False when nothing changed (nothing to write)."""
    if row.status == inst.status and (row.error_message or None) == inst.error and row.current == current:
        return False
    row.status, row.error_message, row.current = inst.status, inst.error or "", current
    if inst.status != engine.PENDING:
        row.finished_at = row.finished_at or now
        row.heartbeat_at = None
    return True


def _record_rejection(msg: EventMessage, exc: Rejected, *, actor: str, source: str) -> EventResult:
    status = STATUS_BY_CODE.get(exc.code, 409)
    body = {"error": exc.message, "code": exc.code}
    warning = _metadata_warning(msg, "refused")
    if warning:
        body["warning"] = warning
    stack = exc.stack
    if stack is not None:
        stack = Stack.objects.filter(pk=stack.pk).first()
    # A refusal for who is asking (403), or for a stack that does not exist yet (404), says nothing
    # about the message itself: the rightful sender of the same id must get its own answer later.
    keep_id = status not in (403, 404) and exc.code != "id_reused"  # the id stays with its first message
    state = stack.state if stack else None
    try:
        with transaction.atomic():
            record = _record(msg, stack, actor, source, OUTCOME_REJECTED, state, state,
                             ". ".join(filter(None, (exc.message, warning))), status, body, keep_id=keep_id)
    except IntegrityError:
        earlier = _earlier_answer(msg, actor=actor, source=source)
        if earlier is not None:
            return earlier
        raise
    if stack is not None:
        effects.after_commit(stack.key, event=event_json(record))
    return EventResult(status, body, OUTCOME_REJECTED, stack=stack)


def update_metadata(stack_id: str, changes: Mapping, *, actor: str | Actor, source: str) -> EventResult:
    """Merge `changes` into a stack's metadata (a None value removes the key); recorded in history."""
    return handle_event({"stackId": stack_id, "event": UPDATE_METADATA, "metadata": dict(changes)},
                        actor=actor, source=source)


def upgrade_machine(stack_id: str, *, actor: str | Actor, source: str) -> EventResult:
    """Move a stack to its machine's newest version; refused when its state or tasks do not fit."""
    return handle_event({"stackId": stack_id, "event": UPGRADE_MACHINE}, actor=actor, source=source)


def send(stack_id: str, event: str, *, actor: str | Actor, source: str, **fields) -> EventResult:
    """Convenience for pages, admin actions and jobs: build the message from keyword fields."""
    message = {"stackId": stack_id, "event": event}
    message.update({k: v for k, v in fields.items() if v is not None})
    return handle_event(message, actor=actor, source=source)

