"""A copy changed on the destination after the agent verified it (issue 11's corrupted-copy
cells): the engine re-reads D's data (Image.verify) before phase 3 and before it deletes the
source, and never deletes the intact copy. One test per path, no process killed: the bytes are
changed at a crash point (the switch MOVEDISK_CRASH_AT drives) or between two calls."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from movedisk.agent import datacopy
from movedisk.engine import cleanup, crashpoints, recover, remove
from movedisk.engine.move import MoveStuck
from movedisk.engine.states import Stage
from movedisk.errors import DeletionBlocked


def image_dir(world, domain: str, alias: str) -> Path:
    return world.root / "domains" / str(world.domain(domain)) / "images" / str(world.disk(alias))


def own_volumes(world, domain: str, alias: str) -> list[Path]:
    """The disk's own volume files on the domain (not a template's linked in)."""
    d = image_dir(world, domain, alias)
    return sorted(d / m.name[:-len(".meta")] for m in d.glob("*.meta")
                  if json.loads(m.read_text())["image"] == d.name)


def corrupt(world, domain: str, alias: str) -> Path:
    """Another sector of data written into the first own volume's layer (as a flipped bit
    would change it); its .meta still records the copy's checksum."""
    vol = own_volumes(world, domain, alias)[0]
    before = datacopy.checksum(str(vol))
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 512", str(vol)],
                   check=True, capture_output=True, cwd=vol.parent)
    assert datacopy.checksum(str(vol)) != before
    return vol


def placement(world, alias: str) -> set:
    return {r["storage_domain_id"] for r in world.rows(
        "SELECT m.storage_domain_id FROM images i JOIN image_storage_domain_map m "
        "ON m.image_id = i.image_guid WHERE i.image_group_id = %s", (world.disk(alias),))}


def checksums(world, domain: str, alias: str) -> dict[str, str]:
    return {p.name: datacopy.checksum(str(p)) for p in own_volumes(world, domain, alias)}


@pytest.fixture
def at_point(monkeypatch):
    """at_point(name, fn): run fn once when the engine reaches crash point ``name`` (and go on)."""
    hooks: dict[str, list] = {}

    def armed(name: str) -> bool:
        for fn in hooks.pop(name, []):
            fn()
        return False

    monkeypatch.setattr(crashpoints, "armed", armed)
    return lambda name, fn: hooks.setdefault(name, []).append(fn)


def test_agent_verify_rereads_the_data_and_names_the_corrupt_volume(world) -> None:
    from movedisk.agent import errors as agent_errors

    sp = next(iter(world.made.data_centers.values()))
    sd, img = str(world.domain("S")), str(world.disk("vm1-data"))
    got = world.client.verify_image(sp, sd, img)
    assert len(got["verified"]) == 3  # a base and two snapshots, each re-read
    vol = corrupt(world, "S", "vm1-data")
    with pytest.raises(agent_errors.ImageVerificationError) as exc:
        world.client.verify_image(sp, sd, img)
    assert exc.value.vdsm_code == 484 and exc.value.details["volUUID"] == vol.name
    assert exc.value.code == "MD200"  # the agent's errors share the CLI's MD2xx family
    # Expected checksums another domain recorded: compared with those, not the volume's own.
    other = {v: "crc32-4m:" + "0" * 8 for v in got["verified"] if v != vol.name}
    with pytest.raises(agent_errors.ImageVerificationError):
        world.client.verify_image(sp, sd, img, other)
    with pytest.raises(agent_errors.ImageVerificationError, match="is not on"):
        world.client.verify_image(sp, sd, img, {"00000000-0000-0000-0000-0000000000aa": "x"})
    with pytest.raises(agent_errors.ImageDoesNotExistInSD):
        world.client.verify_image(sp, str(world.domain("D")), img)


def test_copy_changed_before_phase3_ends_with_failure_and_keeps_the_source(world, at_point) -> None:
    """The normal path re-reads D too: the copy task's own check is stale once it finished."""
    at_point("after_copy_before_phase3", lambda: corrupt(world, "D", "vm1-data"))
    before = checksums(world, "S", "vm1-data")
    eng = world.engine()
    cmd = eng.run(eng.start(world.disk("vm1-data"), world.domain("D")))
    assert cmd.stage == Stage.ENDED_FAILURE and "verification failed" in cmd.last_error
    assert placement(world, "vm1-data") == {world.domain("S")}
    assert checksums(world, "S", "vm1-data") == before
    assert not image_dir(world, "D", "vm1-data").exists()  # the corrupt copy deleted as a failed one
    assert any(e.kind == "warning" and "not intact" in e.message for e in world.events)
    world.check()


def test_recovery_does_not_roll_forward_onto_a_copy_changed_since_it_was_verified(world, at_point) -> None:
    class Died(BaseException):
        pass

    def die() -> None:
        raise Died()

    at_point("after_copy_before_phase3", die)
    gone = world.engine(owner="elsewhere:4242:1", lease_seconds=1)
    cmd = gone.start(world.disk("vm1-data"), world.domain("D"))
    with pytest.raises(Died):
        gone.run(cmd)
    assert world.rows("SELECT stage FROM move_disk_commands")[0]["stage"] == "COPYING"
    corrupt(world, "D", "vm1-data")  # after the copy task verified and reported success
    before = checksums(world, "S", "vm1-data")
    time.sleep(1.1)
    report = recover.recover(world.engine())
    assert [c.stage for c in report.finished] == ["ENDED_FAILURE"] and not report.errors
    assert placement(world, "vm1-data") == {world.domain("S")}
    assert checksums(world, "S", "vm1-data") == before
    assert not image_dir(world, "D", "vm1-data").exists()
    world.check()


def test_copy_changed_after_phase3_never_deletes_the_source(world, at_point) -> None:
    """D corrupt once the database maps the disk there: the source stays, the move stops
    (MoveStuck) with both copies, recovery stops again, and movedisk verify reports it."""
    flipped: list[Path] = []
    at_point("after_phase3_commit", lambda: flipped.append(corrupt(world, "D", "vm1-data")))
    before = checksums(world, "S", "vm1-data")
    eng = world.engine()
    cmd = eng.start(world.disk("vm1-data"), world.domain("D"))
    with pytest.raises(MoveStuck, match="corrupt"):
        eng.run(cmd)
    row = world.rows("SELECT * FROM move_disk_commands")[0]
    assert row["stage"] == "SWITCHED" and row["ended_at"] is None
    assert row["lease_expires"] <= world.rows("SELECT now() AS t")[0]["t"]  # given up at once
    assert "both copies are kept" in row["last_error"]
    assert checksums(world, "S", "vm1-data") == before  # the intact copy, untouched
    assert image_dir(world, "D", "vm1-data").exists()
    assert not [t for t in world.client.get_all_tasks_statuses().values()
                if t.get("verb") == "Image.delete"]
    report = recover.recover(world.engine(owner="another-host:1:1"))
    assert not report.finished and len(report.errors) == 1 and "corrupt" in report.errors[0][1]
    assert checksums(world, "S", "vm1-data") == before
    from movedisk import verify

    found = [(f.check_name, f.entity_id) for f in verify.storage_findings(world.conn, world.root)]
    assert ("volume_corrupt", flipped[0].name) in found

def test_cleanup_and_removal_keep_a_leftover_whose_other_copy_reads_back_corrupt(world) -> None:
    """A template's disk moved with its source refused (dependents): its leftover on S is
    deleted by cleanup or removal only while D's copy reads back intact."""
    eng = world.engine()
    cmd = eng.run(eng.start(world.disk("tpl-os"), world.domain("D")))
    assert cmd.stage == Stage.ENDED_WITH_LEFTOVER
    for alias in ("vm1-os", "vm2-os"):
        assert eng.run(eng.start(world.disk(alias), world.domain("D"))).stage == Stage.ENDED_SUCCESS
    corrupt(world, "D", "tpl-os")
    before = checksums(world, "S", "tpl-os")
    report = cleanup.run(eng, due_only=False)
    assert not report.done and len(report.failed) == 1
    assert "not intact" in report.failed[0].error
    with pytest.raises(DeletionBlocked, match="not intact"):
        remove.remove(eng, cmd.temporary_disk_id)
    assert checksums(world, "S", "tpl-os") == before  # the only intact copy of the template
    assert world.rows("SELECT count(*) AS n FROM images WHERE image_group_id = %s",
                      (cmd.temporary_disk_id,))[0]["n"] > 0  # its record stays
