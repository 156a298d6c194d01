"""Moving every compatible stack of a machine to its current version in one go.

After a machine is saved its running stacks stay on the version they started with. This moves the
ones the new version cannot strand (`machines_app.impact`), each through the one door that changes
stacks (`services.handle_event` with `UPGRADE_MACHINE`), so every move is locked, checked again
and recorded in the stack's history like a move from its own page. The person must confirm the
number of stacks they saw: if it changed since (a stack moved, finished or was created), nothing
moves and they look again. Stranded stacks are never moved; the report says what to do with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cloudseam_site.accounts.roles import Actor
from machines_app import impact, in_flight
from machines_app.models import Machine
from stacks import services


class NotMoved(Exception):
    """The request as a whole was refused; nothing was moved. `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        self.status, self.message = status, message
        super().__init__(message)


@dataclass(frozen=True)
class Refusal:
    key: str
    reason: str  # the service's own sentence


@dataclass
class MoveReport:
    machine: str
    version: int  # the version the stacks were moved to
    moved: list[str] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    stranded: tuple[impact.StackImpact, ...] = ()  # not tried: the new version would strand them

    def as_dict(self) -> dict:
        return {
            "machine": self.machine,
            "version": self.version,
            "moved": self.moved,
            "refused": [{"id": r.key, "error": r.reason} for r in self.refused],
            "stranded": [s.as_dict() for s in self.stranded],
        }


def _number(text: str | int | None) -> int | None:
    text = str(text if text is not None else "").strip()
    return int(text) if text.isdigit() and len(text) < 10 else None


def _check_request(machine: Machine, found: int, confirm: str | int | None, version: str | int | None,
                   actor: Actor | str) -> None:
    current = machine.current_version
    if _number(version) is not None and _number(version) != current.number:
        raise NotMoved(409, f"{machine.name} is now at version {current.number}, not {version}; nothing was "
                            "moved: look at its stacks again")
    scope = getattr(actor, "machines", None)
    if scope is not None and machine.name not in scope:
        raise NotMoved(403, f"{actor} may not change stacks of machine {machine.name}; nothing was moved")
    if found == 0:
        raise NotMoved(409, f"no stack can be moved to version {current.number} of {machine.name}; nothing was moved")
    if _number(confirm) != found:
        typed = str(confirm or "")[:20] or "nothing"
        raise NotMoved(400, f"type the number of stacks to move ({found}) to confirm; you typed {typed}, so "
                            "nothing was moved")


def move_compatible(machine: Machine, *, confirm: str | int | None, version: str | int | None = None,
                    actor: Actor | str, source: str) -> MoveReport:
    """Move every stack the current version would not strand; raise NotMoved when unconfirmed."""
    if machine.current_version is None:
        raise NotMoved(404, f"machine {machine.name} has no valid version yet")
    pending = in_flight.pending_impact(machine)
    compatible = pending.upgradable
    _check_request(machine, len(compatible), confirm, version, actor)
    report = MoveReport(machine.name, machine.current_version.number, stranded=pending.stranded)
    for verdict in compatible:
        result = services.upgrade_machine(verdict.stack.key, actor=actor, source=source)
        if result.ok:
            report.moved.append(verdict.stack.key)
        else:
            report.refused.append(Refusal(verdict.stack.key, result.body.get("error", "refused")))
    return report
