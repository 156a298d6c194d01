"""Stacks, their task instances and their event history.

Only `stacks.services` writes a stack's state and tasks; these classes hold data and small
read-only helpers, never workflow (no signals, no save() overrides).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Count, Q
from django.utils import timezone

from machines_app.models import Machine, MachineVersion
from machines_app.spec.model import ERROR, EXECUTORS, PENDING, SATISFIED

TASK_STATUSES = [(PENDING, "Pending"), (SATISFIED, "Satisfied"), (ERROR, "Error")]
EXTERNAL = "external"  # the executor whose tasks wait for a person (or an outside system)

# The dashboard's quick filters (also `GET /api/stacks?status=`), by what a stack's current tasks say.
STATUS_FAILED, STATUS_WAITING, STATUS_RUNNING, STATUS_IDLE = "failed", "waiting", "running", "idle"
QUICK_FILTERS = {
    STATUS_FAILED: "Failed",
    STATUS_WAITING: "Waiting for a person",
    STATUS_RUNNING: "Running",
    STATUS_IDLE: "Idle",
}
DEFAULT_IDLE_HOURS = 24
MAX_IDLE_HOURS = 24 * 366


def new_task_id() -> str:
    return uuid.uuid4().hex


class StackQuerySet(models.QuerySet):
    def active(self) -> StackQuerySet:
        return self.filter(removed_at__isnull=True)

    def removed(self) -> StackQuerySet:
        return self.filter(removed_at__isnull=False)

    def search(self, *, q: str = "", machine: str = "", state: str = "", status: str = "",
               idle_hours: int = DEFAULT_IDLE_HOURS, now: datetime | None = None) -> StackQuerySet:
        """The one stack search, shared by the API, the dashboard and the removed list.

        `q` matches part of the stack id (case-insensitive); `machine` and `state` match exactly. An
        empty value does not filter, and an unknown one simply matches nothing. `status` is one of the
        QUICK_FILTERS (see `quick_filter`); `idle_hours` is the N of "idle longer than N hours".
        """
        stacks = self
        if q:
            stacks = stacks.filter(key__icontains=q[:100])
        if machine:
            stacks = stacks.filter(machine__name=machine[:63])
        if state:
            stacks = stacks.filter(state=state[:63])
        if status:
            stacks = stacks.filter(quick_filter(status, idle_hours, now))
        return stacks

    def quick_counts(self, idle_hours: int = DEFAULT_IDLE_HOURS, now: datetime | None = None) -> dict[str, int]:
        """How many of these stacks each quick filter matches: one aggregate query, whatever the number."""
        now = now or timezone.now()
        counts = self.aggregate(**{
            name: Count("pk", filter=quick_filter(name, idle_hours, now)) for name in QUICK_FILTERS
        })
        return {name: counts[name] or 0 for name in QUICK_FILTERS}

    def latest_for(self, key: str) -> Stack | None:
        """The active stack with this id, else the one removed last (its record stays readable)."""
        return (
            self.select_related("machine", "machine_version")
            .filter(key=key)
            .order_by(models.F("removed_at").desc(nulls_first=True))
            .first()
        )


def _current_tasks(**conditions) -> Q:
    """Stacks with a current task like this: `pk IN (…)` reads the matching tasks once (a hashed
    subplan on PostgreSQL), where a correlated EXISTS looked once per stack, three times per count."""
    return Q(pk__in=Task.objects.filter(current=True, **conditions).values("stack_id"))


def quick_filter(status: str, idle_hours: int = DEFAULT_IDLE_HOURS, now: datetime | None = None) -> Q:
    """The condition of one quick filter; an unknown name matches nothing.

    failed: a current task is in ERROR. waiting: a current external task is PENDING (a person or an
    outside system must answer). running: a current task of another executor is PENDING. idle: no
    change for longer than `idle_hours` hours.
    """
    if status == STATUS_FAILED:
        return _current_tasks(status=ERROR)
    if status == STATUS_WAITING:
        return _current_tasks(status=PENDING, executor=EXTERNAL)
    if status == STATUS_RUNNING:
        return _current_tasks(status=PENDING, executor__in=[e for e in EXECUTORS if e != EXTERNAL])
    if status == STATUS_IDLE:
        return Q(updated_at__lt=(now or timezone.now()) - timedelta(hours=idle_hours))
    return Q(pk__in=[])


class Stack(models.Model):
    """One environment. A removed stack keeps its row and history; its `key` may be reused."""

    key = models.CharField("stack id", max_length=63, db_index=True)
    machine = models.ForeignKey(Machine, on_delete=models.PROTECT, related_name="stacks")
    machine_version = models.ForeignKey(MachineVersion, on_delete=models.PROTECT, related_name="stacks")
    state = models.CharField(max_length=63)
    previous_state = models.CharField(max_length=63, blank=True, null=True)  # noqa: DJ001 - null: never had one
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    removed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    seq = models.PositiveBigIntegerField(default=0, help_text="changes so far; live frames carry it")
    # The expiry (see stacks.lifetimes) whose event this stack was sent: a conditional UPDATE of this
    # column is the claim that lets one worker, and only one, send it.
    expiry_fired = models.CharField(max_length=60, blank=True, editable=False)

    objects = StackQuerySet.as_manager()

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=Q(removed_at__isnull=True), name="stack_active_key_unique"
            )
        ]
        # The dashboard's default order and "newest changes first" among active stacks (removed_at IS
        # NULL): any page of ids is read from the index, without sorting every active stack.
        indexes = [
            models.Index(fields=["removed_at", "key"], name="stack_by_key_idx"),
            models.Index(fields=["removed_at", "-updated_at", "key"], name="stack_by_newest_idx"),
        ]

    def __str__(self) -> str:
        return self.key if self.removed_at is None else f"{self.key} (removed)"

    @property
    def removed(self) -> bool:
        return self.removed_at is not None

    def current_tasks(self) -> models.QuerySet[Task]:
        return self.tasks.filter(current=True).order_by("position")


class Task(models.Model):
    """One task instance: a new row per dispatch generation (entering a state, or a retry)."""

    id = models.CharField(primary_key=True, max_length=32, default=new_task_id, editable=False)
    stack = models.ForeignKey(Stack, on_delete=models.CASCADE, related_name="tasks")
    name = models.CharField(max_length=63)
    state = models.CharField(max_length=63)  # the state this instance belongs to
    executor = models.CharField(max_length=20)
    position = models.PositiveSmallIntegerField(default=0)
    current = models.BooleanField(default=True, db_index=True)
    status = models.CharField(max_length=10, choices=TASK_STATUSES, default=PENDING, db_index=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    output_tail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["stack_id", "position", "created_at"]
        indexes = [models.Index(fields=["current", "status", "heartbeat_at"], name="task_liveness_idx")]

    def __str__(self) -> str:
        return f"{self.stack.key}/{self.name}"

    @property
    def waiting(self) -> bool:
        """Nothing runs: an external approval, or an http callback, waits for its completion."""
        if self.status != PENDING or self.heartbeat_at is not None or self.finished_at is not None:
            return False
        return self.executor == "external" or self.started_at is not None

    @property
    def waiting_since(self):
        return self.started_at or self.created_at

    def overdue(self, now=None) -> bool:
        """Waiting longer than CLOUDSEAM_EXTERNAL_DEADLINE: somebody should look at it."""
        if not self.waiting or self.waiting_since is None:
            return False
        deadline = timedelta(seconds=settings.CLOUDSEAM_EXTERNAL_DEADLINE)
        return (now or timezone.now()) - self.waiting_since > deadline

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def phase(self) -> str:
        """A finer word than `status` for people: queued, running, waiting, retrying, done, failed.

        `status` stays the engine's PENDING/SATISFIED/ERROR; a PENDING task is waiting for a person
        (external), queued, running, or retrying (running, or queued, again after a failed attempt).
        """
        if self.status == SATISFIED:
            return PHASE_DONE
        if self.status == ERROR:
            return PHASE_FAILED
        if self.executor == "external" or (self.started_at and self.heartbeat_at is None and not self.finished_at):
            return PHASE_WAITING  # a person, or an outside system's callback (the job is over)
        if self.started_at is None:
            return PHASE_RETRYING if self.attempts else PHASE_QUEUED
        return PHASE_RETRYING if self.attempts > 1 else PHASE_RUNNING


PHASE_QUEUED, PHASE_RUNNING, PHASE_WAITING, PHASE_RETRYING, PHASE_DONE, PHASE_FAILED = (
    "queued", "running", "waiting", "retrying", "done", "failed")


def current_tasks_by_stack(stacks: list[Stack]) -> dict[int, list[Task]]:
    """One query for the current tasks of a page of stacks (never one query per row)."""
    grouped: dict[int, list[Task]] = {}
    for task in Task.objects.filter(stack__in=[s.pk for s in stacks], current=True).order_by("position"):
        grouped.setdefault(task.stack_id, []).append(task)
    return grouped


OUTCOME_APPLIED, OUTCOME_REJECTED, OUTCOME_IGNORED = "applied", "rejected", "ignored"
OUTCOMES = [(OUTCOME_APPLIED, "applied"), (OUTCOME_REJECTED, "rejected"), (OUTCOME_IGNORED, "ignored")]


class StackEvent(models.Model):
    """Every event message, accepted or not, with who sent it and what came of it."""

    stack = models.ForeignKey(Stack, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    stack_key = models.CharField(max_length=255, db_index=True)
    event = models.CharField(max_length=63)
    source = models.CharField(max_length=20)  # api, ui, cli, worker, admin, system
    actor = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=10, choices=OUTCOMES)
    from_state = models.CharField(max_length=63, blank=True, null=True)  # noqa: DJ001
    to_state = models.CharField(max_length=63, blank=True, null=True)  # noqa: DJ001
    error = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    task_ref = models.CharField(max_length=100, blank=True)
    message_id = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001 - null: no id (unique only when given)
    status_code = models.PositiveSmallIntegerField(default=200)
    response = models.JSONField(default=dict, blank=True)  # the first answer, for repeated message ids
    fingerprint = models.CharField(max_length=64, blank=True)  # of the message, to refuse a reused id
    # The machine version the stack was pinned to when this entry was written (replaying history
    # across an UPGRADE_MACHINE needs it); null on entries written before it was recorded.
    machine_version = models.ForeignKey(MachineVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = "history entry"
        verbose_name_plural = "history"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["stack_key", "message_id"],
                condition=Q(message_id__isnull=False),
                name="stack_event_message_id_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.stack_key} {self.event} ({self.outcome})"


ATTEMPT_RUNNING, ATTEMPT_SUCCEEDED, ATTEMPT_FAILED, ATTEMPT_LOST, ATTEMPT_CANCELLED = (
    "running", "succeeded", "failed", "lost", "cancelled")
ATTEMPT_OUTCOMES = [(o, o) for o in (ATTEMPT_RUNNING, ATTEMPT_SUCCEEDED, ATTEMPT_FAILED, ATTEMPT_LOST,
                                     ATTEMPT_CANCELLED)]


class TaskAttempt(models.Model):
    """One run of one task instance: a job's try (a job may try several times, `retries`), or a
    person completing an external task. Kept after the state is left, after a retry replaced the
    instance and after the stack is removed (until `prune_attempts`); written by `stacks.attempts`.
    """

    task = models.ForeignKey(Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    stack = models.ForeignKey(Stack, on_delete=models.CASCADE, related_name="attempts")
    state = models.CharField(max_length=63)
    task_name = models.CharField(max_length=63)
    executor = models.CharField(max_length=20)
    number = models.PositiveIntegerField(default=1)  # the task's attempt count when this one started
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=ATTEMPT_OUTCOMES, default=ATTEMPT_RUNNING, db_index=True)
    error = models.TextField(blank=True)
    output = models.TextField(blank=True)  # the kept (last) lines; see dropped_lines
    line_count = models.PositiveIntegerField(default=0)  # lines written in all, kept or not
    dropped_lines = models.PositiveIntegerField(default=0)  # earliest lines dropped to keep the bound
    actor = models.CharField(max_length=200, blank=True)  # who completed an external task

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["stack", "-started_at", "-id"], name="attempt_stack_idx"),
            models.Index(fields=["finished_at"], name="attempt_finished_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} #{self.number} ({self.outcome})"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return max(0.0, (self.finished_at - self.started_at).total_seconds())
        return None


# Models of the stacks app kept in their own packages (imported here so Django finds them).
from stacks.hooks.models import HookDelivery, InboundHook  # noqa: E402, F401
from stacks.notifications.models import NotificationDelivery, NotificationTarget  # noqa: E402, F401
