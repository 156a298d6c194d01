"""`terraform`: copies a configuration into a scratch folder and runs init, workspace, apply/destroy.

- Source `local` (a folder, or a file whose folder is used) is copied, `s3` (a key prefix) is
  downloaded with boto3. Running in a copy keeps parallel tasks from sharing `.terraform/` and keeps
  the worker from writing into the source.
- State is kept apart per stack and configuration, so that `feature-123` and `master` applying the
  same configuration, or one stack applying two configurations, never share a state:
  - a configuration that declares an `s3` backend gets the original CloudSeam's state key at
    `terraform init`: `-backend-config=key=<machine>/<stack id>/<source key>` (for a local source,
    its folder stands in for the key), in the default workspace, so state the original wrote is found;
  - any other configuration runs in its own workspace, `<stack id>-<10 hex digits>` naming the
    stack and the configuration (s3 key or local folder).
  The configuration, not the task, is what counts: an `apply` task and the `destroy` task of the same
  source, or two tasks applying it with different variables, share their state, as they must.
- Config `variables` become `-var name=value` arguments. The stack id and metadata are offered as
  TF_VAR_* environment variables (`stack_id`, and each metadata key), which Terraform silently
  ignores when a configuration does not declare them, and which never reach a command line.
- State kept in local files dies with the scratch copy; the task says so in its output. Real
  environments need a remote backend (s3, gcs, …) for destroy to find what apply created.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from stacks.runtime.executors import lambda_invoke
from stacks.runtime.executors.base import (
    TAIL_LINES,
    TaskContext,
    TaskResult,
    emit,
    env_value,
    failure,
    task_environment,
    timeout_error,
)
from stacks.runtime.executors.process import ProcessStartError, run_process

ACTIONS = ("apply", "destroy")
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
S3_READ_TIMEOUT = 60
S3_BACKEND = re.compile(r'^\s*backend\s+"s3"', re.MULTILINE)  # in *.tf
S3_BACKEND_JSON = re.compile(r'"backend"\s*:\s*\{\s*"s3"')  # in *.tf.json


class SourceError(Exception):
    """The configuration could not be fetched; str(exc) is the task error."""


def _environment(ctx: TaskContext) -> dict[str, str]:
    env = task_environment(ctx)
    metadata = ctx.stack.get("metadata") or {}
    env.update({f"TF_VAR_{k}": env_value(v) for k, v in metadata.items() if VARIABLE_NAME.match(str(k))})
    env["TF_VAR_stack_id"] = env_value(ctx.stack.get("id"))
    env["TF_IN_AUTOMATION"] = "1"
    env["TF_INPUT"] = "0"
    return env


def _local_folder(source: Mapping) -> Path:
    """The folder a local source names: the location itself, or the folder of a file."""
    location = Path(str(source.get("location", "")))
    return location if location.is_dir() else location.parent


def _fetch_local(source: Mapping, target: Path) -> None:
    location = Path(str(source.get("location", "")))
    folder = _local_folder(source)
    if not location.exists() or not folder.is_dir():
        raise SourceError(f"terraform source does not exist on this worker: {location}")
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns(".terraform", ".git"))


def _s3_relative(key: str, prefix: str) -> PurePosixPath | None:
    """The object's path below the prefix, or None for folder markers and unsafe names."""
    relative = PurePosixPath(key[len(prefix) :].lstrip("/"))
    if not relative.parts or key.endswith("/") or ".." in relative.parts:
        return None
    return relative


def _s3_keys(client, bucket: str, key: str) -> tuple[list[str], str]:
    """The keys to fetch and the prefix they are relative to: everything under `key/`, or else
    the single object `key` (a source may name one file rather than a folder)."""
    prefix = key + "/"
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    if keys:
        return keys, prefix
    parent = key.rpartition("/")[0]
    return [key], (parent + "/" if parent else "")


def _fetch_s3(source: Mapping, target: Path) -> list[str]:
    """Download the configuration under s3://bucket/key into target; returns the keys fetched."""
    bucket, key = str(source.get("bucket", "")), str(source.get("key", "")).strip("/")
    fetched = []
    try:
        client = lambda_invoke.make_client("s3", S3_READ_TIMEOUT)
        keys, prefix = _s3_keys(client, bucket, key)
        target.mkdir(parents=True)
        for name in keys:
            relative = _s3_relative(name, prefix)
            if relative is None:
                continue
            destination = target.joinpath(*relative.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(client.get_object(Bucket=bucket, Key=name)["Body"].read())
            fetched.append(name)
    except lambda_invoke.MissingBoto3 as exc:
        raise SourceError(f"{exc} (needed for s3 sources)") from None
    except Exception as exc:  # botocore: NoSuchKey, AccessDenied, no credentials …
        raise SourceError(f"could not download s3://{bucket}/{key}: {type(exc).__name__}: {exc}") from None
    return fetched


def _fetch(ctx: TaskContext, target: Path, tail: list[str]) -> None:
    source = ctx.config.get("source") or {}
    kind = source.get("type")
    if kind == "local":
        emit(ctx, tail, f"copying {source.get('location')}")
        _fetch_local(source, target)
    elif kind == "s3":
        emit(ctx, tail, f"downloading s3://{source.get('bucket')}/{source.get('key')}")
        fetched = _fetch_s3(source, target)
        emit(ctx, tail, f"downloaded {len(fetched)} files")
    else:
        raise SourceError(f"unknown terraform source type '{kind}'; known types: local, s3")


def _source_key(ctx: TaskContext) -> str:
    """What names the configuration: the s3 key as written (as the original used it), or the folder."""
    source = ctx.config.get("source") or {}
    if source.get("type") == "s3":
        return str(source.get("key", ""))
    return Path(os.path.normpath(_local_folder(source))).as_posix().strip("/")


def _declares_s3_backend(folder: Path) -> bool:
    files = [*sorted(folder.glob("*.tf")), *sorted(folder.glob("*.tf.json"))]
    return any(
        (S3_BACKEND if path.suffix == ".tf" else S3_BACKEND_JSON).search(path.read_text(errors="replace"))
        for path in files
    )


def _state(ctx: TaskContext, folder: Path) -> tuple[list[str], str | None, str]:
    """Where this task's state lives: extra `init` arguments, the workspace (None: the default one),
    and a line saying so in the task's output. See the module docstring."""
    stack_id, source_key = str(ctx.stack.get("id") or ""), _source_key(ctx)
    if _declares_s3_backend(folder):
        key = f"{ctx.stack.get('machine')}/{stack_id}/{source_key}"
        return [f"-backend-config=key={key}"], None, f"state: s3 backend key {key}"
    if not stack_id:
        return [], None, "state: default workspace"
    workspace = f"{stack_id}-{hashlib.sha256(source_key.encode()).hexdigest()[:10]}"
    return [], workspace, f"state: workspace {workspace} (stack {stack_id}, configuration {source_key})"


def _steps(program: str, ctx: TaskContext, init_args: list[str], workspace: str | None) -> list[tuple[str, list[str]]]:
    action = str(ctx.config.get("action"))
    variables = ctx.config.get("variables") or {}
    var_args = [arg for k, v in variables.items() for arg in ("-var", f"{k}={env_value(v)}")]
    steps = [("terraform init", [program, "init", "-input=false", "-no-color", *init_args])]
    if workspace:
        select = [program, "workspace", "select", "-or-create=true", "-no-color", workspace]
        steps.append(("terraform workspace select", select))
    change = [program, action, "-auto-approve", "-input=false", "-no-color", *var_args]
    steps.append((f"terraform {action}", change))
    return steps


def _run_steps(
    ctx: TaskContext, program: str, folder: Path, env: dict[str, str], tail: list[str]
) -> TaskResult:
    deadline = None if ctx.timeout is None else time.monotonic() + ctx.timeout
    init_args, workspace, where = _state(ctx, folder)
    emit(ctx, tail, where)
    for label, argv in _steps(program, ctx, init_args, workspace):
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return failure(timeout_error(ctx.timeout), tail)
        emit(ctx, tail, "$ " + shlex.join(["terraform", *argv[1:]]))
        try:
            outcome = run_process(argv, env=env, cwd=str(folder), timeout=remaining, on_output=ctx.on_output,
                                  lease=ctx.lease)
        except ProcessStartError as exc:
            return failure(str(exc), tail)
        tail[:] = (tail + outcome.tail)[-TAIL_LINES:]
        error = outcome.error(label, ctx.timeout)
        if error:
            return failure(error, tail)
    if (folder / "terraform.tfstate").exists() or (folder / "terraform.tfstate.d").exists():
        emit(
            ctx,
            tail,
            "warning: this configuration keeps its state in local files, which are discarded after the "
            "task; configure a remote backend so that a later destroy finds what was created",
        )
    return TaskResult(ok=True, output_tail=tail)


def run(ctx: TaskContext) -> TaskResult:
    action = ctx.config.get("action")
    if action not in ACTIONS:
        return failure(f"terraform action must be apply or destroy, not '{action}'")
    env = _environment(ctx)
    program = shutil.which("terraform", path=env.get("PATH"))
    if program is None:
        return failure("terraform is not installed on this worker")
    tail: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cloudseam-terraform-", dir=ctx.workdir) as scratch:
        folder = Path(scratch, "config")
        try:
            _fetch(ctx, folder, tail)
        except SourceError as exc:
            return failure(str(exc), tail)
        except OSError as exc:
            return failure(f"could not copy the terraform source: {exc}", tail)
        return _run_steps(ctx, program, folder, env, tail)
