"""The read-only command line against a real database and a real storage agent:
``disks``, ``domains``, ``events``, ``verify`` (and the embedded agent they default to).

One database and one embedded agent (MOVEDISK_HOME in a temporary directory) per module,
with a pool, two domains S and D, a VM disk with a 2-volume chain, a template disk and a
disk based on it, on both sides. Every test leaves the world as it found it: each
inconsistency ``verify`` detects is created, seen reported, fixed and seen gone.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cli_runner import run_cli
from engine_rows import Pool, make_disk, make_pool, make_vm
from feature_rows import make_disk as make_chain
from psycopg.rows import dict_row

from movedisk.agent.client import COPY, SimControl, StorageClient
from movedisk.audit import AuditLogType, log_event
from movedisk.cli import main
from movedisk.embedded import EmbeddedAgent

MIB = 1024**2
GIB = 1024**3


@dataclass
class World:
    dsn: str
    home: Path
    agent: EmbeddedAgent
    pool: Pool
    src: uuid.UUID
    dst: uuid.UUID
    disks: dict[str, Any] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {"MOVEDISK_HOME": str(self.home)}

    @property
    def client(self) -> StorageClient:
        return self.agent.client(timeout=30)

    @property
    def sim(self) -> SimControl:
        return self.agent.sim(timeout=30)

    def cli(self, *args: str, dsn: bool = True) -> Any:
        return run_cli(*args, *(["--dsn", self.dsn] if dsn else []), env=self.env)

    def json(self, *args: str, expect: int = 0) -> Any:
        return in_process(*args, "--json", "--dsn", self.dsn, home=self.home, expect=expect)

    def sql(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        with psycopg.connect(self.dsn, row_factory=dict_row) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def volume(self, sd: uuid.UUID, img: uuid.UUID, vol: uuid.UUID) -> Path:
        return self.agent.root / "domains" / str(sd) / "images" / str(img) / str(vol)


def in_process(*args: str, home: Path, expect: int = 0) -> Any:
    """``movedisk ARGS`` through movedisk.cli.main in this process (the same code as the
    command, without an interpreter start; ``run_cli`` runs the real process): its JSON."""
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("MOVEDISK_")}
    os.environ["MOVEDISK_HOME"] = str(home)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
    finally:
        del os.environ["MOVEDISK_HOME"]
        os.environ.update(saved)
    assert code == expect, (code, out.getvalue(), err.getvalue())
    return json.loads(out.getvalue())


def _vols(images: list[uuid.UUID], seed: int) -> list[dict[str, Any]]:
    return [{"volUUID": str(v), "size": MIB, "extents": [(i * 4096, 8192)], "seed": seed + i}
            for i, v in enumerate(images)]


@pytest.fixture(scope="module")
def world(databases: Any, template_db: str) -> Iterator[World]:
    name = f"movedisk_inv_{uuid.uuid4().hex[:8]}"
    dsn = databases.create(name, template=template_db)
    home = Path(tempfile.mkdtemp(prefix="mdh-", dir="/tmp"))
    agent = EmbeddedAgent(home)
    try:
        agent.start()
        with psycopg.connect(dsn, row_factory=dict_row) as db:
            pool = make_pool(db, name="dc1")
            src, dst = pool.domains
            db.execute("UPDATE storage_domain_static SET storage_name = 'nfs-a' WHERE id = %s", (src,))
            db.execute("UPDATE storage_domain_static SET storage_name = 'nfs-b' WHERE id = %s", (dst,))
            vm = make_vm(db, pool, name="web1")
            d1 = make_disk(db, pool, src, vm=vm, volumes=2, size=MIB, alias="web1_disk1")
            tmpl = make_chain(db, src, volumes=1, size=MIB, alias="tmpl_base", quota=pool.quota_id)
            based = make_chain(db, src, volumes=1, size=MIB, alias="web2_disk1",
                               base_parent=tmpl.images[0], quota=pool.quota_id)
        w = World(dsn, home, agent, pool, src, dst)
        w.disks = {"d1": d1, "tmpl": tmpl, "based": based}
        sim = w.sim
        for sd in (src, dst):
            sim.create_domain(str(sd), str(pool.id), capacity=64 * MIB)
        sim.create_image(str(src), str(d1.id), _vols(d1.images, 10))
        sim.create_image(str(src), str(tmpl.disk_id), _vols(tmpl.images, 20))
        sim.create_disk_from_template(str(src), str(based.disk_id), str(based.images[0]),
                                      str(tmpl.images[0]), size=MIB, extents=[(0, 4096)], seed=30)
        yield w
    finally:
        agent.stop()
        databases.drop(name)
        shutil.rmtree(home, ignore_errors=True)


def storage_findings(w: World, expect: int) -> list[dict[str, Any]]:
    out = w.json("verify", expect=expect)
    return [f for f in out["findings"] if f["source"] == "storage"]


# --- disks ----------------------------------------------------------------------------------


def test_disks_lists_each_disk_with_status_domain_size_and_vms(world: World) -> None:
    res = world.cli("disks")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["DISK", "ALIAS", "STATUS", "DOMAIN", "SIZE", "TEMPORARY", "SOURCE"]
    row = next(line for line in lines if "web1_disk1" in line).split()
    assert row[:6] == [str(world.disks["d1"].id), "web1_disk1", "OK", "nfs-a", "1.0", "MiB"]
    assert row[6] == "no"
    rows = world.json("disks")
    assert [r["alias"] for r in rows] == ["tmpl_base", "web1_disk1", "web2_disk1"]
    d1 = next(r for r in rows if r["alias"] == "web1_disk1")
    assert d1 == {
        "disk_id": str(world.disks["d1"].id), "alias": "web1_disk1", "status": "OK", "volumes": 2,
        "domains": [{"id": str(world.src), "name": "nfs-a"}], "domain_id": str(world.src),
        "domain_name": "nfs-a", "storage_pool_id": str(world.pool.id), "size": MIB,
        "actual_size": 2 * GIB, "wipe_after_delete": False, "vms": ["web1"], "template": None,
        "temporary": False, "source": None,
    }
    based = next(r for r in rows if r["alias"] == "web2_disk1")
    assert based["template"] == {"disk_id": str(world.disks["tmpl"].disk_id), "alias": "tmpl_base"}
    assert next(line for line in lines if "web2_disk1" in line).endswith("no         template tmpl_base")
    assert world.json("disks", "--temporary") == []
    assert len(world.json("disks", "--no-temporary")) == 3


def test_disks_temporary_and_no_temporary_exclude_each_other() -> None:
    res = run_cli("disks", "--temporary", "--no-temporary")
    assert res.returncode == 2 and "not allowed with" in res.stderr


# --- domains --------------------------------------------------------------------------------


def test_domains_show_pool_status_space_and_leftovers(world: World) -> None:
    rows = world.json("domains")
    assert [r["name"] for r in rows] == ["nfs-a", "nfs-b"]
    a = rows[0]
    assert a["domain_id"] == str(world.src) and a["storage_pool_name"] == "dc1"
    assert a["status"] == "Active"
    assert (a["size"], a["free"]) == (600 * GIB, 500 * GIB)
    assert (a["used_by_leftovers"], a["leftover_disks"]) == (0, 0)
    assert a["volumes"] == 4  # two of web1_disk1, the template's, web2_disk1's own
    res = world.cli("domains")
    assert res.returncode == 0
    assert res.stdout.splitlines()[0].split() == [
        "DOMAIN", "NAME", "POOL", "STATUS", "SIZE", "FREE", "LEFTOVERS"]
    assert "nfs-b  dc1   Active  600.0 GiB  500.0 GiB  0 B (0)" in res.stdout


# --- events ---------------------------------------------------------------------------------


def test_events_newest_last_with_ovirt_names(world: World) -> None:
    d1 = world.disks["d1"]
    cmd = uuid.uuid4()
    with psycopg.connect(world.dsn, row_factory=dict_row) as conn:
        ids = [
            log_event(conn, t, disk_id=d1.id, disk_alias="web1_disk1", command_id=cmd,
                      source_domain_id=world.src, source_domain_name="nfs-a",
                      storage_domain_id=world.dst, storage_domain_name="nfs-b",
                      storage_pool_id=world.pool.id, storage_pool_name="dc1", reason="test")
            for t in (AuditLogType.USER_MOVED_DISK, AuditLogType.USER_MOVED_DISK_FINISHED_SUCCESS)
        ]
    try:
        rows = world.json("events")
        mine = [r for r in rows if r["correlation_id"] == str(cmd)]
        assert [r["audit_log_id"] for r in mine] == ids  # oldest first, newest last
        assert [(r["log_type"], r["log_type_name"], r["severity"]) for r in mine] == [
            (2008, "USER_MOVED_DISK", "NORMAL"), (2010, "USER_MOVED_DISK_FINISHED_SUCCESS", "NORMAL")]
        assert mine[1]["disk_id"] == str(d1.id) and mine[1]["storage_domain_name"] == "nfs-b"
        assert rows[-1]["audit_log_id"] == ids[-1]
        assert [r["audit_log_id"] for r in world.json("events", "--limit", "1")] == ids[-1:]
        assert world.json("events", "--since", "2999-01-01") == []
        assert len(world.json("events", "--since", "1h")) >= 2
        text = world.cli("events").stdout.splitlines()
        assert "USER_MOVED_DISK_FINISHED_SUCCESS (2010)" in text[-1]
        assert "Disk web1_disk1 moved from domain nfs-a to domain nfs-b." in text[-1]
        bad = world.cli("events", "--since", "yesterday-ish")
        assert bad.returncode == 2 and bad.stderr.startswith("movedisk: BadArgument: --since")
        assert json.loads(world.cli("events", "--since", "x", "--json").stdout)["code"] == "MD130"
    finally:
        world.sql("DELETE FROM audit_log WHERE correlation_id = %s", (str(cmd),))


# --- verify ---------------------------------------------------------------------------------


def test_verify_is_clean_on_a_consistent_world(world: World) -> None:
    out = world.json("verify")
    assert out["ok"] is True and out["findings"] == [] and out["checksums"] is True
    assert out["storage_root"] == str(world.agent.root)
    # web1_disk1's 2 volumes, the template's, web2_disk1's own (its link to the template's
    # volume is the template's), all checksummed, on the 2 domains
    assert out["storage"] == {"domains": 2, "volumes": 4, "checksummed": 4}
    assert world.json("verify", "--no-checksums")["storage"]["checksummed"] == 0
    res = world.cli("verify")
    assert res.returncode == 0
    assert res.stdout.startswith("verify: no findings (database and storage: 4 volumes on 2 "
                                 "domains, 4 checksummed, under ")


def test_verify_reports_a_volume_nobody_knows(world: World) -> None:
    stray = uuid.uuid4()
    vol = uuid.uuid4()
    world.sim.create_image(str(world.dst), str(stray), _vols([vol], 40))
    found = storage_findings(world, expect=1)
    assert [(f["check_name"], f["severity"], f["entity_id"], f["related_ids"]) for f in found] == [
        ("volume_unknown", "error", str(vol), [str(stray), str(world.dst)])]
    res = world.cli("verify")
    assert res.returncode == 1 and "error   volume_unknown: volume " + str(vol) in res.stdout
    task = world.client.delete_image(str(world.pool.id), str(world.dst), str(stray))
    assert world.client.wait_task(task)["code"] == 0
    assert storage_findings(world, expect=0) == []


def test_verify_reports_a_deletion_nobody_will_finish(world: World) -> None:
    stray = uuid.uuid4()
    world.sim.create_image(str(world.dst), str(stray), _vols([uuid.uuid4()], 50))
    images = world.agent.root / "domains" / str(world.dst) / "images"
    os.rename(images / str(stray), images / f"_remove_me_{stray}")  # a deletion cut short
    try:
        found = storage_findings(world, expect=1)
        assert [(f["check_name"], f["severity"], f["entity_type"], f["entity_id"],
                 f["related_ids"]) for f in found] == [
            ("removal_unfinished", "warning", "image_group", str(stray), [str(world.dst)])]
    finally:
        shutil.rmtree(images / f"_remove_me_{stray}")
    assert world.json("verify")["ok"] is True


def test_verify_reports_a_mapped_volume_missing_from_its_domain(world: World) -> None:
    leaf = world.disks["d1"].images[-1]
    world.sql("INSERT INTO image_storage_domain_map (image_id, storage_domain_id) VALUES (%s, %s)",
              (leaf, world.dst))
    try:
        found = storage_findings(world, expect=1)
        assert [(f["check_name"], f["entity_id"], f["related_ids"]) for f in found] == [
            ("volume_missing", str(leaf), [str(world.disks["d1"].id), str(world.dst)])]
    finally:
        world.sql("DELETE FROM image_storage_domain_map WHERE image_id = %s AND "
                  "storage_domain_id = %s", (leaf, world.dst))
    assert world.json("verify")["ok"] is True


def test_verify_reports_a_corrupt_volume_by_its_checksum(world: World) -> None:
    d1 = world.disks["d1"]
    path = world.volume(world.src, d1.id, d1.images[0])
    # flip the file's last non-zero byte: guest data in a raw volume and in a qcow2 one
    # (whose data clusters follow its header and tables), never only a header byte
    data = path.read_bytes()
    at = len(data.rstrip(b"\0")) - 1
    assert at > 0
    original = data[at:at + 1]
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(bytes([original[0] ^ 0xFF]))
    try:
        found = storage_findings(world, expect=1)
        assert [(f["check_name"], f["entity_id"]) for f in found] == [
            ("volume_corrupt", str(d1.images[0]))]
        assert "does not match its checksum" in found[0]["message"]
        # without checksums only the lists are compared: nothing to report
        assert world.json("verify", "--no-checksums")["ok"] is True
    finally:
        with open(path, "r+b") as f:
            f.seek(at)
            f.write(original)
    assert world.json("verify")["ok"] is True


def test_verify_reports_a_volume_without_data(world: World) -> None:
    d1 = world.disks["d1"]
    path = world.volume(world.src, d1.id, d1.images[1])
    aside = path.with_name("aside")
    os.rename(path, aside)
    try:
        found = storage_findings(world, expect=1)
        assert [(f["check_name"], f["entity_id"]) for f in found] == [
            ("volume_corrupt", str(d1.images[1]))]
        assert "no data file" in found[0]["message"]
    finally:
        os.rename(aside, path)
    assert world.json("verify")["ok"] is True


def test_verify_reports_database_checks_too(world: World) -> None:
    d1 = world.disks["d1"]
    world.sql("UPDATE images SET imagestatus = 2 WHERE image_group_id = %s", (d1.id,))
    try:
        out = world.json("verify", "--db-only", expect=1)
        assert out["storage_root"] is None
        assert [(f["check_name"], f["source"], f["entity_id"]) for f in out["findings"]] == [
            ("locked_image_without_command", "database", str(d1.id))]
        assert world.json("disks")[1]["status"] == "LOCKED"
    finally:
        world.sql("UPDATE images SET imagestatus = 1 WHERE image_group_id = %s", (d1.id,))
    assert world.json("verify", "--db-only")["ok"] is True


def test_a_move_seen_through_disks_domains_and_verify(world: World) -> None:
    """Phase 1, the copy, phase 3, a blocked source deletion (ILLEGAL leftover), the leftover
    deleted behind the database's back (leftover_absent), then the record removed."""
    d1, src, dst, sp = world.disks["d1"], world.src, world.dst, str(world.pool.id)
    rows = world.sql("SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s)", (d1.id, src, dst))
    tmp = rows[0]["temporary_disk_id"]
    [t] = world.json("disks", "--temporary")
    assert (t["disk_id"], t["alias"], t["status"], t["domain_name"]) == (
        str(tmp), "web1_disk1_To_Be_Deleted", "LOCKED", "nfs-a")
    assert t["source"]["disk_id"] == str(d1.id) and t["source"]["state"] == "MOVE_IN_PROGRESS"
    assert (t["source"]["from_domain_name"], t["source"]["to_domain_name"]) == ("nfs-a", "nfs-b")
    assert [r["alias"] for r in world.json("disks", "--no-temporary")] == [
        "tmpl_base", "web1_disk1", "web2_disk1"]
    # the copy on D of a move that has not switched is accounted for, whole or partial
    task = world.client.move_image(sp, str(src), str(dst), str(d1.id), COPY, tag="t1")
    assert world.client.wait_task(task)["code"] == 0
    assert world.json("verify")["ok"] is True
    world.sql("SELECT UpdateImageGroupStorageDomain(%s, %s, %s)", (d1.id, src, dst))
    world.sql("SELECT MarkTemporaryDiskIllegal(%s)", (tmp,))
    [t] = world.json("disks", "--temporary")
    assert (t["status"], t["source"]["state"]) == ("ILLEGAL", "LEFTOVER_ON_SOURCE")
    a = world.json("domains")[0]
    assert (a["name"], a["leftover_disks"], a["used_by_leftovers"] > 0) == ("nfs-a", 1, True)
    assert world.json("verify")["ok"] is True  # the leftover is on S, recorded
    aged = world.json("verify", "--db-only", "--leftover-age", "0 seconds", expect=1)
    assert "old_leftover" in {f["check_name"] for f in aged["findings"]}
    # a deletion of the leftover cut short: recorded, so the engine's cleanup finishes it
    images = world.agent.root / "domains" / str(src) / "images"
    os.rename(images / str(d1.id), images / f"_remove_me_{d1.id}")
    found = storage_findings(world, expect=1)
    assert {(f["check_name"], f["severity"]) for f in found} == {("leftover_absent", "warning")}
    os.rename(images / f"_remove_me_{d1.id}", images / str(d1.id))
    task = world.client.delete_image(sp, str(src), str(d1.id))
    assert world.client.wait_task(task)["code"] == 0
    found = storage_findings(world, expect=1)
    assert {(f["check_name"], f["severity"]) for f in found} == {("leftover_absent", "warning")}
    assert {f["entity_id"] for f in found} == {str(v) for v in d1.images}
    world.sql("SELECT RemoveTemporaryDisk(%s, TRUE)", (tmp,))
    assert world.json("verify")["ok"] is True
    assert world.json("domains")[0]["leftover_disks"] == 0
    # the disk now lives on D; move it back so that the next tests find the world as it was
    rows = world.sql("SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s)", (d1.id, dst, src))
    task = world.client.move_image(sp, str(dst), str(src), str(d1.id), COPY, tag="t2")
    assert world.client.wait_task(task)["code"] == 0
    world.sql("SELECT UpdateImageGroupStorageDomain(%s, %s, %s)", (d1.id, dst, src))
    task = world.client.delete_image(sp, str(dst), str(d1.id))
    assert world.client.wait_task(task)["code"] == 0
    world.sql("SELECT RemoveTemporaryDisk(%s, TRUE)", (rows[0]["temporary_disk_id"],))
    assert world.json("verify")["ok"] is True


def test_a_failed_move_leaves_a_partial_copy_that_stays_tracked(world: World) -> None:
    """End with failure: the copy on D is a pending deletion (MOVE_FAILED); it stays accounted
    for after the temporary disk's rows go (DB_ONLY), until the agent deletes it and the
    deletion is confirmed."""
    d1, src, dst, sp = world.disks["d1"], world.src, world.dst, str(world.pool.id)
    rows = world.sql("SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s)", (d1.id, src, dst))
    tmp = rows[0]["temporary_disk_id"]
    task = world.client.move_image(sp, str(src), str(dst), str(d1.id), COPY, tag="f1")
    assert world.client.wait_task(task)["code"] == 0
    world.sql("SELECT MarkTemporaryDiskIllegal(%s, TRUE)", (tmp,))
    [t] = world.json("disks", "--temporary")
    assert (t["status"], t["source"]["state"]) == ("ILLEGAL", "ORIGINAL_ON_SOURCE")
    pending = world.sql("SELECT reason FROM GetImageGroupsToBeDeletedByImageGroupId(%s)", (d1.id,))
    assert [p["reason"] for p in pending] == ["MOVE_FAILED"]
    assert world.json("verify")["ok"] is True
    world.sql("SELECT RemoveTemporaryDisk(%s)", (tmp,))  # DB_ONLY: the original is live on S
    assert world.json("disks", "--temporary") == []
    assert world.json("verify")["ok"] is True  # the copy on D: a pending deletion
    task = world.client.delete_image(sp, str(dst), str(d1.id))
    assert world.client.wait_task(task)["code"] == 0
    assert world.json("verify")["ok"] is True  # deleted, not yet confirmed: nothing wrong
    assert world.sql("SELECT ConfirmImageGroupDeleted(%s, %s) AS n", (d1.id, dst)) == [{"n": 1}]
    assert world.json("verify")["ok"] is True
    # and had the pending deletion been lost, the copy on D would be nobody's
    task = world.client.move_image(sp, str(src), str(dst), str(d1.id), COPY, tag="f2")
    assert world.client.wait_task(task)["code"] == 0
    found = storage_findings(world, expect=1)
    assert {(f["check_name"], f["entity_id"]) for f in found} == {
        ("volume_unknown", str(v)) for v in d1.images}
    task = world.client.delete_image(sp, str(dst), str(d1.id))
    assert world.client.wait_task(task)["code"] == 0
    assert world.json("verify")["ok"] is True


def test_verify_runs_read_only_as_the_dba_role(world: World, pg_cluster: Any) -> None:
    """As a login member of movedisk_dba in a session where every transaction is read only
    (what a hot standby allows), disks, domains, events and verify all work."""
    role = f"md_dba_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN IN ROLE movedisk_dba")
    try:
        dsn = (world.dsn.replace("user=postgres", f"user={role}")
               + " options='-c default_transaction_read_only=on'")
        assert len(in_process("disks", "--json", "--dsn", dsn, home=world.home)) == 3
        assert len(in_process("domains", "--json", "--dsn", dsn, home=world.home)) == 2
        in_process("events", "--json", "--dsn", dsn, home=world.home)
        assert in_process("verify", "--json", "--dsn", dsn, home=world.home)["ok"] is True
        with psycopg.connect(dsn) as conn:  # the session really is read only
            assert conn.execute("SHOW transaction_read_only").fetchone() == ("on",)
    finally:
        with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_verify_without_storage_says_so(world: World, tmp_path: Path) -> None:
    res = run_cli("verify", "--dsn", world.dsn, env={"MOVEDISK_HOME": str(tmp_path)})
    assert res.returncode == 14
    assert res.stderr.startswith("movedisk: AgentUnavailable: no storage agent files under")
    assert in_process("verify", "--db-only", "--json", "--dsn", world.dsn,
                      home=tmp_path)["storage_root"] is None
    err = in_process("verify", "--agent", str(tmp_path / "none.sock"), "--json", "--dsn",
                     world.dsn, home=tmp_path, expect=14)
    assert (err["error"], err["code"]) == ("AgentUnavailable", "MD201")
    out = in_process("verify", "--agent-root", str(world.agent.root), "--json", "--dsn",
                     world.dsn, home=tmp_path)
    assert out["ok"] is True and out["storage_root"] == str(world.agent.root)
    out = in_process("verify", "--agent", world.agent.status()["socket"], "--json", "--dsn",
                     world.dsn, home=tmp_path)
    assert out["ok"] is True and out["storage_root"] == str(world.agent.root)


def test_the_read_only_commands_run_on_a_streaming_standby(
    replicated_cluster: Any, tmp_path: Path
) -> None:
    """disks, domains, events and verify (database checks and the storage comparison) against
    a hot standby, which refuses every write."""
    cluster = replicated_cluster()
    with psycopg.connect(cluster.dsn("movedisk"), row_factory=dict_row) as db:
        pool = make_pool(db, name="dc-r")
        disk = make_disk(db, pool, pool.domains[0], volumes=2, size=MIB, alias="replicated1")
        db.execute("UPDATE images SET imagestatus = 2 WHERE image_group_id = %s", (disk.id,))
        log_event(db, AuditLogType.USER_MOVED_DISK, disk_id=disk.id,
                  source_domain_id=pool.domains[0], storage_domain_id=pool.domains[1])
    cluster.wait_replayed()
    standby = cluster.standby.dsn("movedisk")
    with psycopg.connect(standby) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)

    def on_standby(*args: str, expect: int = 0) -> Any:
        return in_process(*args, "--json", "--dsn", standby, home=tmp_path, expect=expect)

    [d] = on_standby("disks")
    assert (d["alias"], d["status"], d["volumes"]) == ("replicated1", "LOCKED", 2)
    assert len(on_standby("domains")) == 2
    assert [e["log_type_name"] for e in on_standby("events")] == ["USER_MOVED_DISK"]
    out = on_standby("verify", "--db-only", expect=1)
    assert [f["check_name"] for f in out["findings"]] == ["locked_image_without_command"]
    (tmp_path / "agent" / "domains").mkdir(parents=True)  # an agent that holds nothing
    out = on_standby("verify", "--agent-root", str(tmp_path / "agent"), expect=1)
    missing = sorted(f["entity_id"] for f in out["findings"] if f["check_name"] == "volume_missing")
    assert missing == sorted(str(v) for v in disk.images)


def test_every_error_type_defines_a_code_of_its_own() -> None:
    """A code names one error type (``--json`` errors carry it): no two types that set one
    share it. (Types that inherit their parent's code are the parent's kind of error.)"""
    import importlib
    import pkgutil

    import movedisk
    from movedisk.errors import MovediskError

    for info in pkgutil.walk_packages(movedisk.__path__, "movedisk."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    seen: dict[str, str] = {}
    todo = [MovediskError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "code" in vars(cls):
            name = f"{cls.__module__}.{cls.__qualname__}"
            assert seen.setdefault(cls.code, name) == name, (cls.code, seen[cls.code], name)
    assert seen["MD130"] == "movedisk.cli_inventory.BadArgument"
