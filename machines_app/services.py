"""Saving machine versions and loading a folder of machines.

A version is created only when the content changed (same hash = same version), and an invalid
document is reported and never saved, so a stack can only ever be pinned to a valid machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max

from machines_app import spec
from machines_app.models import Machine, MachineVersion, content_hash

MACHINE_SUFFIXES = (".yml", ".yaml")


class InvalidMachine(Exception):
    """The name or the document is not acceptable; `problems` says why, nothing was saved."""

    def __init__(self, problems: list[spec.Problem]):
        self.problems = problems
        super().__init__("; ".join(p.format() for p in problems))


@dataclass
class SaveResult:
    version: MachineVersion  # the machine's current version after the save
    created: bool
    warnings: tuple[spec.Problem, ...] = ()
    superseded: MachineVersion | None = None  # the older version the text matched, kept out of use


def validate_text(yaml_text: str | bytes) -> spec.Validation:
    """The validator with this installation's rules: `python` tasks only under CLOUDSEAM_PYTHON_PREFIXES.

    Every place that checks a machine before saving it, or for a person, uses this; stored versions
    are read with plain `spec.validate` so they keep loading when the setting changes.
    """
    return spec.validate(yaml_text, python_prefixes=settings.CLOUDSEAM_PYTHON_PREFIXES)


def save_machine(name: str, yaml_text: str, *, actor: str = "", source: str = "", revert: bool = True) -> SaveResult:
    """Validate and store `yaml_text` as the newest version of machine `name`.

    Content equal to an older version makes that version current again (an explicit revert) —
    unless `revert` is False, as for folder syncs, and the current version was saved elsewhere (the
    editor, the API): a restart must not undo such an edit, but a file rolled back in git is a revert.
    """
    yaml_text = yaml_text.replace("\r\n", "\n")  # a browser's line endings must not make a new version
    name_error = spec.check_machine_name(name)
    if name_error:
        raise InvalidMachine([spec.Problem("name", None, name_error)])
    result = validate_text(yaml_text)
    if not result.valid:
        raise InvalidMachine(list(result.errors))
    digest = content_hash(yaml_text)
    for _attempt in range(3):
        try:
            return _store(name, yaml_text, digest, actor, source, result.warnings, revert)
        except IntegrityError:
            continue  # a concurrent save took the number; read again
    raise InvalidMachine([spec.Problem("", None, "the machine was being saved by someone else; try again")])


@transaction.atomic
def _store(name, yaml_text, digest, actor, source, warnings, revert) -> SaveResult:
    machine, _ = Machine.objects.select_for_update().get_or_create(name=name)
    existing = machine.versions.filter(content_hash=digest).first()
    if existing is not None:
        if machine.current_version_id != existing.pk:
            if not revert and machine.current_version.source != "folder":
                # Edited in the browser or the API since: a folder sync must not undo that.
                return SaveResult(machine.current_version, False, warnings, superseded=existing)
            machine.current_version = existing
            machine.save(update_fields=["current_version", "updated_at"])
        return SaveResult(existing, False, warnings)
    number = (machine.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = MachineVersion.objects.create(
        machine=machine, number=number, yaml_text=yaml_text, content_hash=digest, created_by=actor, source=source
    )
    machine.current_version = version
    machine.save(update_fields=["current_version", "updated_at"])
    return SaveResult(version, True, warnings)


@dataclass
class FolderReport:
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    invalid: dict[str, list[spec.Problem]] = field(default_factory=dict)
    outdated: dict[str, str] = field(default_factory=dict)  # file matches an older version: why it was kept


def machine_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in MACHINE_SUFFIXES)


def load_folder(folder: Path, *, actor: str = "folder") -> FolderReport:
    """Sync every machine file of a folder; invalid files are reported and skipped."""
    report = FolderReport()
    for path in machine_files(folder):
        name = path.stem
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            report.invalid[path.name] = [spec.Problem("", None, f"cannot read the file: {exc}")]
            continue
        try:
            saved = save_machine(name, text, actor=actor, source="folder", revert=False)
        except InvalidMachine as exc:
            report.invalid[path.name] = exc.problems
            continue
        if saved.superseded is not None:
            report.outdated[name] = (
                f"{path.name} matches version {saved.superseded.number}, but version {saved.version.number} "
                f"(saved by {saved.version.created_by or 'someone'} via {saved.version.source or 'unknown'}) is "
                "newer; kept it. Update the file to make the folder the source again."
            )
        (report.created if saved.created else report.unchanged).append(name)
    return report
