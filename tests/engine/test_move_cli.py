"""The move through the command line: results, refusals (message, exit code, database
unchanged), two processes on one disk, a process killed mid-move and taken over."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
from cli_runner import run_cli
from psycopg import sql

from movedisk.cli import main
from movedisk.engine import recover


def dump(world) -> dict[str, list[str]]:
    """Every row of every table of the package, to prove a refusal changed nothing."""
    tables = [r["relname"] for r in world.rows(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
        "AND relkind = 'r' ORDER BY 1")]
    return {t: [r["j"] for r in world.rows(sql.SQL(
        "SELECT to_jsonb(x)::text AS j FROM {} x ORDER BY 1").format(sql.Identifier(t)))]
        for t in tables}


def test_move_and_status_through_the_cli(world) -> None:
    env = world.cli_env()
    res = run_cli("move", str(world.disk("vm1-data")), "--to",
                  str(world.domain("D")), "--wait", "--json", env=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["stage"] == "ENDED_SUCCESS" and out["final"] is True
    res = run_cli("status", "--json", env=env)
    assert json.loads(res.stdout) == {"moves": [], "pending_deletions": []}
    world.check()


def test_move_without_wait_returns_the_command_id_and_a_background_worker_ends_it(world) -> None:
    env = world.cli_env()
    res = run_cli("move", str(world.disk("vm1-data")), "--to", str(world.domain("D")),
                  env=env)
    assert res.returncode == 0, res.stderr
    cid = uuid.UUID(res.stdout.strip())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        stage = world.rows("SELECT stage FROM move_disk_commands WHERE command_id = %s", (cid,))[0]["stage"]
        if stage.startswith("ENDED"):
            break
        time.sleep(0.05)
    assert stage == "ENDED_SUCCESS"
    world.check()


def _set_up_refusals(world) -> dict[str, tuple[list[str], int, str]]:
    """name -> (argv, exit code, words of the message)."""
    # A second pool's domain, an inactive domain, a full domain, a LOCKED disk, a temporary disk.
    world.rows("SELECT Insertstorage_pool('', '', %s, 'other', 1, FALSE, 1, NULL, '4.7', 0, TRUE)",
               (other_pool := uuid.uuid4(),))
    other = uuid.uuid4()
    world.rows("SELECT Insertstorage_domain_static(%s, 'x', 'other-sd', '', '', 1, 1, '5', 0, FALSE, "
               "FALSE, NULL, NULL, 10, 5, 0, FALSE, 512)", (other,))
    world.rows("SELECT Insertstorage_domain_dynamic(100, %s, 0)", (other,))
    world.rows("SELECT Insertstorage_pool_iso_map(%s, %s, 3)", (other, other_pool))
    world.rows("SELECT Updatestorage_pool_iso_map_status(%s, %s, 6)",
               (world.domain("E"), uuid.UUID(world.made.data_centers["dc"])))
    world.rows("SELECT Updatestorage_domain_dynamic(0, %s, 100)", (world.domain("D"),))
    world.rows("SELECT UpdateStatusOfImagesByImageGroupId(%s, 4)", (world.disk("vm2-os"),))
    d, s, e = str(world.domain("D")), str(world.domain("S")), str(world.domain("E"))
    disk = str(world.disk("vm1-data"))
    return {
        "unknown disk": (["move", str(uuid.uuid4()), "--to", d], 3, "no disk has id"),
        "malformed disk": (["move", "not-a-disk", "--to", d], 6, "neither a disk id"),
        "malformed domain": (["move", disk, "--to", "nowhere"], 6, "neither a storage domain"),
        "unknown domain": (["move", disk, "--to", str(uuid.uuid4())], 4, "no storage domain"),
        "same domain": (["move", disk, "--to", s], 4, "same"),
        "inactive destination": (["move", disk, "--to", e], 4, "not active"),
        "other pool": (["move", disk, "--to", str(other)], 4, "not in storage pool"),
        "no room": (["move", disk, "--to", d], 9, "bytes free"),
        "disk not OK": (["move", str(world.disk("vm2-os")), "--to", e], 5, "not OK"),
        "remove a disk that is not temporary": (["remove", disk], 8, "not a temporary"),
        "remove an unknown disk": (["remove", str(uuid.uuid4())], 3, "no disk has id"),
        "remove malformed": (["remove", "x'; DROP TABLE images; --"], 6, "not a disk id"),
    }


def in_process(world, monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    """``movedisk ARGV`` through the command line's own entry point, in this process (argument
    parsing, error mapping and exit codes as a user gets them, without a process start)."""
    for k, v in world.cli_env().items():
        monkeypatch.setenv(k, v)
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_refusal_is_one_line_with_its_exit_code_and_changes_nothing(
        world, monkeypatch, capsys) -> None:
    cases = _set_up_refusals(world)
    before = dump(world)
    files = sorted(p.relative_to(world.root) for p in (world.root / "domains").rglob("*"))
    for name, (argv, code, words) in cases.items():
        got, _, err = in_process(world, monkeypatch, capsys, *argv, "--no-recover")
        lines = err.strip().splitlines()
        assert got == code, (name, got, err)
        assert len(lines) == 1 and lines[0].startswith("movedisk: ") and words in lines[0], (name, lines)
        assert dump(world) == before, name
    # One of them as a separate process, as a user runs it, and with --json.
    res = run_cli("--json", "move", "not-a-disk", "--to", "D", env=world.cli_env())
    assert res.returncode == 6 and json.loads(res.stdout)["code"] == "MD004"
    assert sorted(p.relative_to(world.root) for p in (world.root / "domains").rglob("*")) == files


def test_moving_a_moving_disk_or_a_temporary_disk_and_removing_a_locked_one_are_refused(
        world, monkeypatch, capsys) -> None:
    eng = world.engine()
    cmd = eng.start(world.disk("vm1-data"), world.domain("D"))  # phase 1 only: LOCKED
    before = dump(world)
    for argv, code, words in (
        (["move", str(world.disk("vm1-data")), "--to", str(world.domain("E"))], 5, "locked"),
        (["move", str(cmd.temporary_disk_id), "--to", str(world.domain("D"))], 5, "temporary"),
        (["remove", str(cmd.temporary_disk_id)], 5, "LOCKED"),
    ):
        got, _, err = in_process(world, monkeypatch, capsys, *argv, "--no-recover")
        assert got == code and words in err, (argv, err)
        assert dump(world) == before
    eng.run(cmd)
    world.check()


def test_two_processes_moving_the_same_disk_exactly_one_wins(world) -> None:
    world.sim.add_fault("copy_delay", imgUUID=str(world.disk("vm1-data")), bytes_per_second=8 << 20)
    env = {**world.cli_env()}
    argv = [sys.executable, "-m", "movedisk.cli", "move", str(world.disk("vm1-data")), "--to",
            str(world.domain("D")), "--wait", "--no-recover"]
    base = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("PG", "MOVEDISK_"))}
    procs = [subprocess.Popen(argv, env={**base, **env}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((p.wait(60), p.stderr.read()) for p in procs)
    assert [r[0] for r in results] == [0, 5], results
    assert "DiskBusy" in results[1][1]
    assert world.rows("SELECT count(*) AS n FROM move_disk_commands")[0]["n"] == 1
    world.check()


@pytest.mark.parametrize("point", ["during_copy", "after_phase3_commit"])
def test_a_worker_killed_mid_move_is_taken_over_by_another(world, point) -> None:
    world.sim.add_fault("copy_delay", imgUUID=str(world.disk("vm1-data")), bytes_per_second=16 << 20)
    env = world.cli_env()
    res = run_cli("move", str(world.disk("vm1-data")), "--to", str(world.domain("D")), "--wait",
                  env={**env, "MOVEDISK_CRASH_AT": point})
    assert res.returncode == -9
    assert world.rows("SELECT count(*) AS n FROM move_disk_commands WHERE ended_at IS NULL")[0]["n"] == 1
    res = run_cli("recover", "--json", env=env)
    assert res.returncode == 0, res.stderr
    finished = json.loads(res.stdout)["finished"]
    assert [f["stage"] for f in finished] == ["ENDED_SUCCESS"]
    assert 20002 in [r["log_type"] for r in world.rows("SELECT log_type FROM audit_log")]
    world.check()


def test_recovery_never_takes_a_live_process_move(world) -> None:
    world.sim.add_fault("copy_delay", imgUUID=str(world.disk("vm1-data")), bytes_per_second=1 << 20)
    env = world.cli_env()
    base = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("PG", "MOVEDISK_"))}
    mover = subprocess.Popen([sys.executable, "-m", "movedisk.cli", "move", str(world.disk("vm1-data")),
                              "--to", str(world.domain("D")), "--wait"], env={**base, **env},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not world.rows("SELECT 1 FROM move_disk_commands WHERE stage = 'COPYING'"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    report = recover.recover(world.engine())  # in-process: no start-up delay to race the copy
    assert report.finished == [] and len(report.skipped) == 1
    assert report.skipped[0].lease_owner.split(":")[1] == str(mover.pid)
    assert mover.wait(60) == 0, mover.stderr.read()
    world.check()


def test_inventory_builds_disks_on_the_database_and_the_agent(world, monkeypatch, capsys, tmp_path) -> None:
    spec = {"data_centers": [{"name": "dc-inv", "domains": [{"name": "inv-sd", "capacity": "64M"}],
                              "vms": [{"name": "inv-vm", "disks": [
                                  {"alias": "inv-disk", "domain": "inv-sd", "size": "1M",
                                   "data": "64K", "snapshots": 1}]}]}]}
    path = tmp_path / "inv.json"
    path.write_text(json.dumps(spec))
    code, out, err = in_process(world, monkeypatch, capsys, "inventory", str(path), "--json")
    assert code == 0, err
    disk = json.loads(out)["disks"]["inv-disk"]
    assert len(disk["volumes"]) == 2
    assert {str(r["image_guid"]) for r in world.rows(
        "SELECT image_guid FROM images WHERE image_group_id = %s", (disk["id"],))} == set(disk["volumes"])
    assert sorted(world.client.get_volumes(json.loads(out)["data_centers"]["dc-inv"], disk["domain"],
                                           disk["id"])) == sorted(disk["volumes"])
    world.check()
    # A bad file: one line, its own exit code, nothing created.
    before = dump(world)
    domains = sorted((world.root / "domains").iterdir())
    path.write_text(json.dumps({"data_centers": [{"name": "x", "domains": [{"name": "y"}],
                                                  "vms": [{"name": "v", "disks": [
                                                      {"alias": "z", "domain": "nowhere"}]}]}]}))
    code, _, err = in_process(world, monkeypatch, capsys, "inventory", str(path))
    assert code == 16 and "unknown domain" in err and len(err.strip().splitlines()) == 1
    assert dump(world) == before
    assert sorted((world.root / "domains").iterdir()) == domains
