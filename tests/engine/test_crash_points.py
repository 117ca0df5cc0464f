"""A process SIGKILLed at each named crash point (MOVEDISK_CRASH_AT), then recovery (and
cleanup) from another process: the move ends as the storage truth says, invariants I1-I6 hold."""

from __future__ import annotations

import os
import signal

import pytest

from movedisk.engine import cleanup, crashpoints, recover, remove

MOVE_POINTS = {
    "before_phase1": None,  # nothing happened: no move
    "inside_phase1_before_commit": None,
    "after_phase1_commit": "ENDED_FAILURE",  # no copy was started: compensated
    "after_copy_accepted": "ENDED_SUCCESS",  # found by its tag, rolled forward
    "after_copy_recorded": "ENDED_SUCCESS",
    "during_copy": "ENDED_SUCCESS",
    "after_copy_before_phase3": "ENDED_SUCCESS",
    "inside_phase3_before_commit": "ENDED_SUCCESS",
    "after_phase3_commit": "ENDED_SUCCESS",
    "after_source_delete_accepted": "ENDED_SUCCESS",
    "during_source_delete": "ENDED_SUCCESS",
    "after_source_delete_before_rows": "ENDED_SUCCESS",
    "inside_end_success_before_commit": "ENDED_SUCCESS",
}


def in_child_killed_at(world, point, work) -> None:
    """Run ``work(engine)`` in a forked child with the switch set; assert it died by SIGKILL."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.environ[crashpoints.ENV] = point
            work(world.engine())
        except BaseException:  # noqa: BLE001
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (point, status)


def settle(world):
    """Recovery then cleanup from a new process' point of view; the moves' final stages."""
    eng = world.engine()
    report = recover.recover(eng)
    assert not report.errors, report.errors
    cleanup.run(eng, due_only=False)
    return [r["stage"] for r in world.rows("SELECT stage FROM move_disk_commands")]


def on(world, alias):
    return {r["storage_domain_id"] for r in world.rows(
        "SELECT m.storage_domain_id FROM images i JOIN image_storage_domain_map m "
        "ON m.image_id = i.image_guid WHERE i.image_group_id = %s", (world.disk(alias),))}


@pytest.mark.parametrize("point", list(MOVE_POINTS))
def test_crash_during_a_move_then_recover(world, point) -> None:
    disk, dest = world.disk("vm1-data"), world.domain("D")
    if point == "during_source_delete":
        # The point is the engine's first look at a deletion still running: make it run.
        world.sim.add_fault("delete_delay", sdUUID=str(world.domain("S")), imgUUID=str(disk),
                            seconds=0.5)
    in_child_killed_at(world, point, lambda eng: eng.run(eng.start(disk, dest)))
    world.check(settled=False)
    expected = MOVE_POINTS[point]
    assert settle(world) == ([expected] if expected else [])
    assert on(world, "vm1-data") == {dest if expected == "ENDED_SUCCESS" else world.domain("S")}
    world.check()


def test_crash_inside_the_end_with_a_leftover_then_recover(world) -> None:
    disk, dest = world.disk("tpl-os"), world.domain("D")
    in_child_killed_at(world, "inside_end_leftover_before_commit",
                       lambda eng: eng.run(eng.start(disk, dest)))
    assert settle(world) == ["ENDED_WITH_LEFTOVER"]
    world.check()


@pytest.mark.parametrize("point", ["inside_end_failure_before_commit", "after_end_failure_commit"])
def test_crash_inside_the_end_with_failure_then_recover(world, point) -> None:
    world.sim.add_fault("copy_fail_after", sdUUID=str(world.domain("D")), bytes=200_000)
    disk, dest = world.disk("vm1-data"), world.domain("D")
    in_child_killed_at(world, point, lambda eng: eng.run(eng.start(disk, dest)))
    assert settle(world) == ["ENDED_FAILURE"]
    assert world.rows("SELECT count(*) AS n FROM image_groups_to_be_deleted")[0]["n"] == 0
    world.check()


@pytest.mark.parametrize("point", ["inside_cleanup", "removal_after_agent_delete"])
def test_crash_inside_a_removal_then_cleanup(world, point) -> None:
    eng = world.engine()
    tmp = eng.run(eng.start(world.disk("tpl-os"), world.domain("D"))).temporary_disk_id
    for alias in ("vm1-os", "vm2-os"):
        eng.run(eng.start(world.disk(alias), world.domain("D")))
    in_child_killed_at(world, point, lambda e: remove.remove(e, tmp))
    world.check()
    settle(world)
    assert world.rows("SELECT count(*) AS n FROM images WHERE image_group_id = %s", (tmp,))[0]["n"] == 0
    world.check()


def test_crash_inside_recovery_then_recover_again(world) -> None:
    world.sim.add_fault("copy_delay", imgUUID=str(world.disk("vm1-data")), bytes_per_second=8 << 20)
    disk, dest = world.disk("vm1-data"), world.domain("D")
    in_child_killed_at(world, "during_copy", lambda eng: eng.run(eng.start(disk, dest)))
    in_child_killed_at(world, "inside_recover", recover.recover)
    assert settle(world) == ["ENDED_SUCCESS"]
    world.check()
