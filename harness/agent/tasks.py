"""Asynchronous tasks, each recorded in ROOT/tasks/<taskID>.json (replaced atomically).

A task's internal state is ``running``, ``aborting``, ``finished`` (success) or
``failed``; its status reports VDSM's shape (``taskState`` running / aborting /
finished, ``taskResult`` "" / success / cleanFailure, ``code``, ``message``) and
adds ``tag``, ``verb``, ``progress`` (bytes done / total) and ``result``.

When the agent starts, every task its records show as running or aborting was
interrupted by the death of the previous agent: it is recorded as failed with
TaskAborted's code (411), keeping the progress it had reached, except a Move
(op 2) whose record says its copy was complete (``copy_complete``): the agent
died while deleting the source, so the destination holds the only complete
copy; that task ends as ``finished`` / ``success`` with SourceImageActionError's
code (259) and ``source_deleted: false``, never as a failed copy (or, when the
source's removal was already durable, as a plain success).

Durability: a record is written to a temporary file, fsynced, renamed, and the
tasks directory is fsynced before the call returns; a task's new state (its
end above all) is visible to ``Task.getStatus`` only once its record is durable.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import (
    AgentError,
    SourceImageActionError,
    TaskAborted,
    TaskNotFinished,
    TaskStateError,
    UnknownTask,
)
from .layout import check_uuid, fsync_dir, read_json, write_json_atomic

TASK_STATE = {"running": "running", "aborting": "aborting", "finished": "finished", "failed": "finished"}
TASK_RESULT = {"running": "", "aborting": "", "finished": "success", "failed": "cleanFailure"}
PROGRESS_SAVE_INTERVAL = 1.0


class Task:
    def __init__(self, record: dict[str, Any]) -> None:
        self.id: str = record["id"]
        self.verb: str = record["verb"]
        self.tag: str | None = record.get("tag")
        self.params: dict[str, Any] = record.get("params", {})
        self.state: str = record.get("state", "running")
        self.code: int = record.get("code", 0)
        self.message: str = record.get("message", "")
        self.result: dict[str, Any] = record.get("result", {})
        self.bytes_done: int = record.get("bytes_done", 0)
        self.bytes_total: int = record.get("bytes_total", 0)
        self.created: float = record.get("created", time.time())
        self.updated: float = record.get("updated", self.created)
        self.agent_pid: int = record.get("agent_pid", os.getpid())
        self.stop_event = threading.Event()
        self.lock = threading.RLock()  # state changes and record writes, one at a time
        self.saved_at = 0.0

    @property
    def done(self) -> bool:
        return self.state in ("finished", "failed")

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "verb": self.verb,
            "tag": self.tag,
            "params": self.params,
            "state": self.state,
            "code": self.code,
            "message": self.message,
            "result": self.result,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "created": self.created,
            "updated": self.updated,
            "agent_pid": self.agent_pid,
        }

    def status(self) -> dict[str, Any]:
        """VDSM's task status, plus tag, verb, progress and result."""
        with self.lock:  # never between a state change and its durable record
            return self._status()

    def _status(self) -> dict[str, Any]:
        return {
            "taskID": self.id,
            "taskState": TASK_STATE[self.state],
            "taskResult": TASK_RESULT[self.state],
            "code": self.code,
            "message": self.message,
            "state": self.state,
            "verb": self.verb,
            "tag": self.tag,
            "params": self.params,
            "progress": {"bytes_done": self.bytes_done, "bytes_total": self.bytes_total},
            "result": self.result,
            "created": self.created,
            "updated": self.updated,
        }


class TaskStore:
    """The agent's tasks, in memory and on disk."""

    def __init__(self, directory: Path,
                 source_gone: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """``source_gone(params)``: whether an interrupted Move's source is already removed."""
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.tasks: dict[str, Task] = {}
        # The tasks of each tag (the engine asks for its move's tasks by tag at every step:
        # without this, each question walked and sorted every task the agent holds).
        self.tagged: dict[str, dict[str, Task]] = {}
        for path in sorted(self.dir.glob("*.json")):
            try:
                task = Task(read_json(path))
            except (OSError, ValueError, KeyError):
                continue
            if not task.done:
                was = task.state
                if task.result.get("copy_complete") and source_gone is not None \
                        and source_gone(task.params):  # stopped after the deletion was durable
                    task.state = "finished"
                    task.code = 0
                    task.message = "1 jobs completed successfully (before the agent stopped)"
                    task.result = {**task.result, "source_deleted": True}
                elif task.result.get("copy_complete"):  # stopped while deleting the source
                    task.state = "finished"
                    task.code = SourceImageActionError.vdsm_code
                    task.message = (
                        f"SourceImageActionError: the copy is complete; the agent (pid "
                        f"{task.agent_pid}) stopped while deleting the source image group"
                    )
                    task.result = {**task.result, "source_deleted": False}
                else:
                    task.state = "failed"
                    task.code = TaskAborted.vdsm_code
                    task.message = (
                        f"Task is aborted: the agent (pid {task.agent_pid}) stopped while the "
                        f"task was {was}"
                    )
                task.result = {**task.result, "interrupted": True}
                task.updated = time.time()
                self.save(task)
            self._index(task)

    def save(self, task: Task) -> None:
        """Write the task's record durably (file and directory entry)."""
        with task.lock:
            task.saved_at = time.monotonic()
            write_json_atomic(self.dir / f"{task.id}.json", task.record(), sync_dir=True)

    def create(self, verb: str, params: dict[str, Any], tag: str | None,
               bytes_total: int = 0) -> Task:
        """A new running task, its record durable before its id is given to anyone."""
        task = Task(
            {"id": str(uuid.uuid4()), "verb": verb, "tag": tag, "params": params, "state": "running",
             "bytes_total": bytes_total}
        )
        with self.lock:
            self._index(task)
        self.save(task)
        return task

    def _index(self, task: Task) -> None:
        self.tasks[task.id] = task
        if task.tag is not None:
            self.tagged.setdefault(task.tag, {})[task.id] = task

    def get(self, taskID: str) -> Task:
        tid = check_uuid(taskID, "taskID")
        with self.lock:
            task = self.tasks.get(tid)
        if task is None:
            raise UnknownTask(f"Task id unknown: {tid}", taskID=tid)
        return task

    def all(self) -> list[Task]:
        with self.lock:
            return sorted(self.tasks.values(), key=lambda t: t.created)

    def with_tag(self, tag: str) -> list[Task]:
        """The tasks created with ``tag``, oldest first."""
        with self.lock:
            return sorted(self.tagged.get(tag, {}).values(), key=lambda t: t.created)

    def progress(self, task: Task, n: int) -> None:
        task.bytes_done += n
        task.updated = time.time()
        if time.monotonic() - task.saved_at >= PROGRESS_SAVE_INTERVAL:
            self.save(task)

    def stop(self, taskID: str) -> Task:
        task = self.get(taskID)
        with task.lock:
            if task.done:
                raise TaskStateError(
                    f"Operation is not allowed in this task state: {task.id} is {task.state}",
                    taskID=task.id,
                    state=task.state,
                )
            task.stop_event.set()
            task.state = "aborting"
            self.save(task)
        return task

    def clear(self, taskID: str) -> None:
        task = self.get(taskID)
        if not task.done:
            raise TaskNotFinished(f"Task not finished: {task.id}", taskID=task.id)
        with self.lock:
            self.tasks.pop(task.id, None)
            if task.tag is not None:
                same = self.tagged.get(task.tag, {})
                same.pop(task.id, None)
                if not same:
                    self.tagged.pop(task.tag, None)
        try:
            os.unlink(self.dir / f"{task.id}.json")
        except FileNotFoundError:
            pass
        fsync_dir(self.dir)

    def run(self, task: Task, work: Callable[[Task], dict[str, Any]], finally_: Callable[[], None]) -> None:
        """Run ``work(task)`` in a thread; record its result or its typed error."""

        def body() -> None:
            state, code, message, extra = "finished", 0, "1 jobs completed successfully", {}
            try:
                extra = work(task)
            except SourceKept as exc:  # a Move: the copy is complete, the source stays
                code, message, extra = SourceImageActionError.vdsm_code, exc.message, exc.result
            except AgentError as exc:
                state, code = "failed", exc.vdsm_code
                message = f"{type(exc).__name__}: {exc.message}"
                extra = {"error": type(exc).__name__, "details": exc.details}
            except Exception as exc:  # noqa: BLE001 - any failure ends the task, typed as 100
                state, code, message = "failed", 100, f"{type(exc).__name__}: {exc}"
                extra = {"error": type(exc).__name__}
            finally:
                finally_()  # release the image locks before anyone can see the end
            with task.lock:  # status() waits: the end is seen only once it is durable
                task.result = {**task.result, **extra}
                task.code, task.message, task.updated = code, message, time.time()
                task.state = state
                self.save(task)

        threading.Thread(target=body, name=f"task-{task.id[:8]}", daemon=True).start()


class SourceKept(Exception):
    """Raised by a Move's work when the copy is complete and durable but the source could
    not be deleted: the task ends finished (success) with the error's code, not as failed."""

    def __init__(self, error: AgentError, result: dict[str, Any]) -> None:
        super().__init__(error.message)
        self.error = error
        self.result = result
        self.message = (f"SourceImageActionError: the copy is complete; the source image group "
                        f"was not deleted: {type(error).__name__}: {error.message}")
