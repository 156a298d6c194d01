"""Which modules the `python` executor may call: one rule for the validator and the worker.

Pure Python. The operator lists allowed module prefixes in CLOUDSEAM_PYTHON_PREFIXES; a machine
naming anything else (`os:system`) is refused when it is validated and, should one have been saved
before the rule existed, again when its task runs.
"""

from __future__ import annotations

from collections.abc import Iterable

PREFIX_SETTING = "CLOUDSEAM_PYTHON_PREFIXES"


def is_allowed(module: str, prefixes: Iterable[str]) -> bool:
    """`app.tasks` allows `app.tasks` and `app.tasks.db`, not `app.tasks_evil`."""
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes if prefix)


def refusal(spec: str, prefixes: Iterable[str]) -> str:
    """The sentence for a callable outside the allowed prefixes."""
    allowed = ", ".join(p for p in prefixes if p) or "none"
    return (
        f"python callable '{spec}' is not allowed; "
        f"allowed module prefixes: {allowed} (set {PREFIX_SETTING})"
    )
