"""The recovery benchmark's bulk staging (bench/recovery.py) leaves a move as a process
SIGKILLed at the same crash point leaves it: the stored state (stage, recorded tasks, volumes
with their status and domains, images_to_be_deleted rows, pending deletions, async_tasks,
command_entities) and the storage (the tasks tagged with the command, which domains hold the
disk), compared without ids. The same staged moves are then recovered as the killed ones are."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from movedisk.agent import COPY
from movedisk.engine import cleanup, crashpoints, recover

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _bench_recovery() -> Any:
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_recovery", BENCH / "recovery.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


staging = _bench_recovery()


class RealStorage:
    """The staging's storage side done by the real agent: a tagged copy, a cleared task, a
    tagged deletion, each waited for."""

    def __init__(self, client: Any, pool: str) -> None:
        self.client, self.pool = client, pool

    def stage_copy(self, src: str, dst: str, img: str, tag: str) -> str:
        tid = self.client.move_image(self.pool, src, dst, img, COPY, tag=tag)
        assert self.client.wait_task(tid, timeout=60)["taskResult"] == "success"
        return str(tid)

    def stage_clear(self, task_id: str) -> None:
        self.client.clear_task(task_id)

    def stage_delete(self, sd: str, img: str, tag: str) -> str:
        tid = self.client.delete_image(self.pool, sd, img, tag=tag)
        assert self.client.wait_task(tid, timeout=60)["taskResult"] == "success"
        return str(tid)


def killed_at(world: Any, point: str, disk: Any, dest: Any) -> None:
    """A real move of ``disk`` in a forked child SIGKILLed at ``point``."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.environ[crashpoints.ENV] = point
            eng = world.engine()
            eng.run(eng.start(disk, dest))
        except BaseException:  # noqa: BLE001
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (point, status)


def the_move(world: Any, disk: Any) -> Any:
    rows = world.rows("SELECT command_id FROM move_disk_commands WHERE image_group_id = %s "
                      "AND ended_at IS NULL", (disk,))
    assert len(rows) == 1, rows
    return rows[0]["command_id"]


def settle(world: Any) -> list[str]:
    eng = world.engine()
    report = recover.recover(eng)
    assert not report.errors, report.errors
    cleanup.run(eng, due_only=False)
    return [c.stage for c in report.finished]


@pytest.mark.parametrize("point", staging.POINTS)
def test_bulk_staging_leaves_what_a_killed_move_leaves(world: Any, point: str) -> None:
    disk, pool = world.disk("vm1-data"), str(world.made.data_centers["dc"])
    s, d = world.domain("S"), world.domain("D")
    killed_at(world, point, disk, d)
    killed = staging.snapshot(world.conn, world.client, the_move(world, disk))
    killed_end = settle(world)
    world.check()
    # The disk is now on S (the move ended with failure) or on D: stage the next move from there.
    here = d if killed_end == ["ENDED_SUCCESS"] else s
    there = s if here == d else d
    owner = f"{socket.gethostname()}:999999999:gone"  # a process that is gone
    [cid] = staging.stage_bulk(world.conn, RealStorage(world.client, pool), [(str(disk), point)],
                               str(there), str(here), owner)
    staged = staging.snapshot(world.conn, world.client, cid)
    assert staged == killed
    world.check(settled=False)
    assert settle(world) == killed_end  # recovered as the killed move was
    world.check()
