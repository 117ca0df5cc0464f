"""Every path of a move through the Python API, against the real agent, invariants after each."""

from __future__ import annotations

import time

from movedisk.engine import cleanup, remove
from movedisk.engine.states import Stage


def placement(world, alias):
    return {r["storage_domain_id"] for r in world.rows(
        "SELECT m.storage_domain_id FROM images i JOIN image_storage_domain_map m "
        "ON m.image_id = i.image_guid WHERE i.image_group_id = %s", (world.disk(alias),))}


def test_clean_move_maps_the_disk_on_the_destination_and_deletes_the_source(world) -> None:
    eng = world.engine()
    cmd = eng.start(world.disk("vm1-data"), world.domain("D"))
    assert cmd.stage == "TEMPORARY_CREATED"
    cmd = eng.run(cmd)
    assert cmd.stage == Stage.ENDED_SUCCESS
    assert placement(world, "vm1-data") == {world.domain("D")}
    assert not (world.root / "domains" / str(world.domain("S")) / "images" /
                str(world.disk("vm1-data"))).exists()
    assert world.rows("SELECT count(*) AS n FROM images_to_be_deleted")[0]["n"] == 0
    codes = [r["log_type"] for r in world.rows("SELECT log_type FROM audit_log ORDER BY audit_log_id")]
    assert codes == [2008, 2010]
    assert any(e.kind == "progress" for e in world.events)
    world.check()


def test_blocked_source_deletion_leaves_an_illegal_leftover_removed_once_dependents_moved(world) -> None:
    eng = world.engine()
    cmd = eng.run(eng.start(world.disk("tpl-os"), world.domain("D")))
    assert cmd.stage == Stage.ENDED_WITH_LEFTOVER
    tmp = cmd.temporary_disk_id
    assert {r["imagestatus"] for r in world.rows(
        "SELECT imagestatus FROM images WHERE image_group_id = %s", (tmp,))} == {4}
    codes = [r["log_type"] for r in world.rows("SELECT log_type FROM audit_log ORDER BY audit_log_id")]
    assert codes == [2008, 2025, 2052]
    world.check()
    # Still blocked: remove says why and keeps it.
    try:
        remove.remove(eng, tmp)
        raise AssertionError("remove should have been refused")
    except Exception as exc:  # DeletionBlocked
        assert type(exc).__name__ == "DeletionBlocked" and "ILLEGAL" in str(exc)
    world.check()
    for alias in ("vm1-os", "vm2-os"):
        assert eng.run(eng.start(world.disk(alias), world.domain("D"))).stage == Stage.ENDED_SUCCESS
    world.check()
    report = cleanup.run(eng, due_only=False)
    assert [o.deletion.temporary_disk_id for o in report.done] == [tmp]
    assert world.rows("SELECT count(*) AS n FROM images WHERE image_group_id = %s", (tmp,))[0]["n"] == 0
    world.check()


def test_failed_copy_ends_with_failure_and_deletes_the_partial_copy(world) -> None:
    world.sim.add_fault("copy_fail_after", sdUUID=str(world.domain("D")), bytes=300_000)
    eng = world.engine()
    cmd = eng.run(eng.start(world.disk("vm1-data"), world.domain("D")))
    assert cmd.stage == Stage.ENDED_FAILURE
    assert placement(world, "vm1-data") == {world.domain("S")}
    assert not (world.root / "domains" / str(world.domain("D")) / "images" /
                str(world.disk("vm1-data"))).exists()
    assert world.rows("SELECT count(*) AS n FROM image_groups_to_be_deleted")[0]["n"] == 0
    world.check()
    # The ILLEGAL temporary disk of the failed move goes with its rows only (DB_ONLY).
    assert remove.remove(eng, cmd.temporary_disk_id).plan == "DB_ONLY"
    world.check()


def test_failed_destination_deletion_is_recorded_then_cleaned_up(world) -> None:
    d = str(world.domain("D"))
    world.sim.add_fault("copy_fail_after", sdUUID=d, bytes=300_000)
    world.sim.add_fault("delete_fail", sdUUID=d)
    eng = world.engine()
    cmd = eng.run(eng.start(world.disk("vm1-data"), world.domain("D")))
    assert cmd.stage == Stage.ENDED_FAILURE
    pending = world.rows("SELECT * FROM image_groups_to_be_deleted")
    assert [(p["reason"], str(p["storage_domain_id"]), p["attempts"]) for p in pending] == [
        ("MOVE_FAILED", d, 1)]
    assert 2026 in [r["log_type"] for r in world.rows("SELECT log_type FROM audit_log")]
    world.check()
    report = cleanup.run(eng, due_only=False)
    assert len(report.done) == 1 and not report.failed
    assert world.rows("SELECT count(*) AS n FROM image_groups_to_be_deleted")[0]["n"] == 0
    world.check()


def test_agent_killed_mid_copy_then_restarted_the_move_ends_with_failure_and_nothing_left(world) -> None:
    import threading

    from movedisk.engine import recover
    from movedisk.errors import MovediskError

    world.sim.add_fault("copy_delay", imgUUID=str(world.disk("vm1-data")), bytes_per_second=1 << 20)
    eng = world.engine()
    cmd = eng.start(world.disk("vm1-data"), world.domain("D"))
    errors = []

    def run() -> None:
        try:
            eng.run(cmd)
        except MovediskError as exc:
            errors.append(type(exc).__name__)
            eng.store.release_lease(cmd.command_id, eng.owner, exc.message)

    t = threading.Thread(target=run)
    t.start()
    while not world.rows("SELECT 1 FROM move_disk_commands WHERE stage = 'COPYING'"):
        pass
    world.agent.restart()  # SIGKILL mid-copy, then a new agent on the same root
    t.join(30)
    # Either the mover saw the agent gone (and gave the move up), or it already saw the
    # restarted agent report the copy interrupted (411) and ended the move itself.
    assert errors in ([], ["AgentUnavailable"])
    recover.recover(world.engine(owner="another-host:1:1"))
    assert [r["stage"] for r in world.rows("SELECT stage FROM move_disk_commands")] == ["ENDED_FAILURE"]
    assert placement(world, "vm1-data") == {world.domain("S")}
    assert world.rows("SELECT count(*) AS n FROM image_groups_to_be_deleted")[0]["n"] == 0
    world.check()


def test_a_move_of_another_host_is_taken_over_only_once_its_lease_expired(world) -> None:
    from movedisk.engine import recover

    other = world.engine(owner="elsewhere:4242:1", lease_seconds=2)
    cmd = other.start(world.disk("vm1-data"), world.domain("D"))  # then "elsewhere" goes silent
    report = recover.recover(world.engine())
    assert report.finished == [] and [c.command_id for c in report.skipped] == [cmd.command_id]
    time.sleep(2.2)
    report = recover.recover(world.engine())
    assert [c.stage for c in report.finished] == ["ENDED_FAILURE"]  # no copy was started: compensated
    world.check()


def test_two_recoveries_at_once_finish_a_move_once(world) -> None:
    import threading

    from movedisk.engine import recover

    from movedisk.engine.states import NO_TASK, Action

    gone = world.engine(owner="elsewhere:4242:1", lease_seconds=1)
    cmd = gone.start(world.disk("vm1-data"), world.domain("D"))
    gone.act(Action.START_COPY, cmd, NO_TASK, NO_TASK, None)  # copying; then it goes silent
    time.sleep(1.1)
    reports = []
    # Two recovering processes (an owner id names a process; threads of one process would
    # share it, so each gets its own here).
    threads = [threading.Thread(target=lambda o=o: reports.append(
        recover.recover(world.engine(owner=f"recoverer-{o}:1:1")))) for o in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    finished = [c.stage for r in reports for c in r.finished]
    assert finished == ["ENDED_SUCCESS"], reports
    assert [r["log_type"] for r in world.rows(
        "SELECT log_type FROM audit_log WHERE log_type IN (2010, 20002)")] == [20002, 2010]
    world.check()
