"""Machines and their immutable, content-hashed versions."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from django.db import models

from machines_app import spec


def content_hash(yaml_text: str) -> str:
    return hashlib.sha256(yaml_text.encode("utf-8")).hexdigest()


_VALIDATED: OrderedDict[str, spec.Validation] = OrderedDict()
_VALIDATED_LIMIT = 256
_validated_lock = threading.Lock()


def _validated(version: MachineVersion) -> spec.Validation:
    """The validator's result for a version, cached by content hash (versions never change).

    Keyed by the hash alone, so a caller may load a version without its YAML text (`defer`): the
    text is read from the database only the first time this process meets that version.
    """
    with _validated_lock:
        found = _VALIDATED.get(version.content_hash)
        if found is not None:
            _VALIDATED.move_to_end(version.content_hash)
            return found
    found = spec.validate(version.yaml_text)
    with _validated_lock:
        _VALIDATED[version.content_hash] = found
        while len(_VALIDATED) > _VALIDATED_LIMIT:
            _VALIDATED.popitem(last=False)
    return found


class Machine(models.Model):
    name = models.CharField(max_length=63, unique=True)
    current_version = models.ForeignKey(
        "MachineVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class MachineVersion(models.Model):
    """One immutable content of a machine; stacks are pinned to one of these."""

    machine = models.ForeignKey(Machine, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    yaml_text = models.TextField()
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True)
    source = models.CharField(max_length=40, blank=True)  # "folder", "api", "admin", "editor"

    class Meta:
        ordering = ["machine__name", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["machine", "number"], name="machine_version_number_unique"),
            models.UniqueConstraint(fields=["machine", "content_hash"], name="machine_version_hash_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.machine.name} v{self.number}"

    @property
    def spec(self) -> spec.Machine:
        """The parsed machine; parsing is cached by content hash because versions never change."""
        machine = _validated(self).machine
        if machine is None:  # only valid documents are ever saved; a hand-edited row would land here
            raise spec.SpecError(list(_validated(self).errors))
        return machine

    @property
    def warnings(self) -> tuple[spec.Problem, ...]:
        """The validator's warnings for this version, from the same cache as `spec`."""
        return _validated(self).warnings
