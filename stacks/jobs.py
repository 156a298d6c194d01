"""Old RQ job path, kept so jobs queued before an upgrade (as `stacks.jobs.run_task`) still run."""

from stacks.runtime.jobs import run_task

__all__ = ["run_task"]
