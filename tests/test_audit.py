"""Audit events: oVirt's codes and severities, written in one call that looks up the names,
read back as ``movedisk events`` shows them."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
from engine_rows import make_disk, make_pool, make_vm

from movedisk.audit import AuditLogSeverity, AuditLogType, event_from_row, log_event, render
from movedisk.db import call

# oVirt's AuditLogType.java: (code, severity) of every type the move uses.
OVIRT = {
    "USER_MOVED_DISK": (2008, "NORMAL"),
    "USER_FAILED_MOVED_VM_DISK": (2009, "ERROR"),
    "USER_MOVED_DISK_FINISHED_SUCCESS": (2010, "NORMAL"),
    "USER_MOVED_DISK_FINISHED_FAILURE": (2011, "ERROR"),
    "USER_MOVED_DISK_FINISHED_WITH_LEFTOVERS": (2052, "WARNING"),
    "USER_MOVE_IMAGE_GROUP_FAILED_TO_DELETE_SRC_IMAGE": (2025, "WARNING"),
    "USER_MOVE_IMAGE_GROUP_FAILED_TO_DELETE_DST_IMAGE": (2026, "WARNING"),
}


def test_types_carry_ovirts_codes_and_severities() -> None:
    for name, (code, severity) in OVIRT.items():
        t = AuditLogType[name]
        assert (t.code, t.severity.name) == (code, severity), name
        assert AuditLogType.for_code(code) is t
    own = [t for t in AuditLogType if t.name not in OVIRT]
    assert {t.name for t in own} == {"USER_MOVED_DISK_LEFTOVER_REMOVED", "SYSTEM_MOVED_DISK_RECOVERED"}
    # outside every range oVirt uses (its highest code is 15001)
    assert all(20000 <= t.code < 20100 for t in own)
    assert len({t.code for t in AuditLogType}) == len(list(AuditLogType))
    assert AuditLogSeverity.ALERT == 10
    assert AuditLogType.for_code(2012) is None


def test_render_names_what_was_given_and_marks_the_rest() -> None:
    text = render(AuditLogType.USER_MOVED_DISK, disk_alias="d1", storage_domain_name="nfs-b")
    assert text == "Moving disk d1 from domain ? to domain nfs-b."


def _world(db: psycopg.Connection[Any]) -> tuple[Any, Any, Any]:
    pool = make_pool(db, name="dc1")
    db.execute("UPDATE storage_domain_static SET storage_name = 'nfs-a' WHERE id = %s",
               (pool.domains[0],))
    db.execute("UPDATE storage_domain_static SET storage_name = 'nfs-b' WHERE id = %s",
               (pool.domains[1],))
    vm = make_vm(db, pool, name="web1")
    disk = make_disk(db, pool, pool.domains[0], vm=vm, volumes=1, alias="web1_disk1")
    return pool, vm, disk


def test_log_event_looks_up_the_names_from_the_ids(db: psycopg.Connection[Any]) -> None:
    pool, vm, disk = _world(db)
    cmd, task = uuid.uuid4(), uuid.uuid4()
    audit_id = log_event(
        db, AuditLogType.USER_MOVED_DISK_FINISHED_WITH_LEFTOVERS, disk_id=disk.id, command_id=cmd,
        task_id=task, source_domain_id=pool.domains[0], storage_domain_id=pool.domains[1],
        reason="CannotDeleteSharedVolume (223)",
    )
    [row] = call(db, "GetAuditLogByAuditLogId", audit_id)
    assert (row["log_type"], row["log_type_name"], row["severity"]) == (
        2052, "USER_MOVED_DISK_FINISHED_WITH_LEFTOVERS", 1)
    assert row["correlation_id"] == str(cmd)
    assert (row["storage_domain_id"], row["storage_domain_name"]) == (pool.domains[1], "nfs-b")
    assert (row["storage_pool_id"], row["storage_pool_name"]) == (pool.id, "dc1")
    assert (row["vm_id"], row["vm_name"]) == (vm.id, "web1")
    assert row["origin"] == "oVirt" and not row["deleted"] and row["custom_event_id"] == -1
    # the database fills the template as render() does with the same names
    assert row["message"] == render(
        AuditLogType.USER_MOVED_DISK_FINISHED_WITH_LEFTOVERS, disk_alias="web1_disk1",
        source_domain_name="nfs-a", storage_domain_name="nfs-b",
        reason="CannotDeleteSharedVolume (223)")
    assert json.loads(row["custom_data"]) == {
        "disk_id": str(disk.id), "disk_alias": "web1_disk1", "command_id": str(cmd),
        "task_id": str(task), "source_domain_id": str(pool.domains[0]),
        "source_domain_name": "nfs-a", "reason": "CannotDeleteSharedVolume (223)"}
    ev = event_from_row(row).to_json()
    assert (ev["severity"], ev["disk_id"], ev["task_id"]) == ("WARNING", str(disk.id), str(task))


def test_names_given_win_and_unknown_ids_show_as_ids(db: psycopg.Connection[Any]) -> None:
    pool, _, disk = _world(db)
    audit_id = log_event(db, AuditLogType.USER_MOVED_DISK, disk_id=disk.id, disk_alias="given",
                         source_domain_id=pool.domains[0], storage_domain_id=pool.domains[1],
                         storage_domain_name="named-b")
    [row] = call(db, "GetAuditLogByAuditLogId", audit_id)
    assert row["message"] == "Moving disk given from domain nfs-a to domain named-b."
    ghost, nowhere = uuid.uuid4(), uuid.uuid4()
    audit_id = log_event(db, AuditLogType.USER_MOVED_DISK_FINISHED_FAILURE, disk_id=ghost,
                         storage_domain_id=nowhere)
    [row] = call(db, "GetAuditLogByAuditLogId", audit_id)
    assert row["message"] == (f"The move of disk {ghost} from domain ? to domain {nowhere} "
                              "failed; the disk stays on ?: ?")
    assert (row["severity"], row["vm_name"], row["storage_pool_id"]) == (2, "", None)
    assert json.loads(row["custom_data"]) == {"disk_id": str(ghost)}


def test_log_event_writes_in_the_callers_transaction(db: psycopg.Connection[Any]) -> None:
    _, _, disk = _world(db)
    first = log_event(db, AuditLogType.SYSTEM_MOVED_DISK_RECOVERED, disk_id=disk.id)
    # a second event of the same type is a second row (not an alert: never merged)
    second = log_event(db, AuditLogType.SYSTEM_MOVED_DISK_RECOVERED, disk_id=disk.id)
    assert second > first
    [row] = call(db, "GetAuditLogByAuditLogId", second)
    assert (row["log_type"], row["severity"]) == (20002, 1)
    db.rollback()
    assert call(db, "GetAuditLogByAuditLogId", first) == []
