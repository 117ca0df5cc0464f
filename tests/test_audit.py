"""Audit events: oVirt's codes and severities, written through InsertAuditLog, read back."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg

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


def test_render_names_what_was_given_and_marks_the_rest() -> None:
    text = render(AuditLogType.USER_MOVED_DISK, disk_alias="d1", storage_domain_name="nfs-b")
    assert text == "Moving disk d1 from domain ? to domain nfs-b."


def test_log_event_writes_one_row_in_the_callers_transaction(db: psycopg.Connection[Any]) -> None:
    disk, cmd, sd, src, pool = (uuid.uuid4() for _ in range(5))
    audit_id = log_event(
        db, AuditLogType.USER_MOVED_DISK_FINISHED_WITH_LEFTOVERS, disk_id=disk, disk_alias="vm1_d1",
        command_id=cmd, source_domain_id=src, source_domain_name="nfs-a", storage_domain_id=sd,
        storage_domain_name="nfs-b", storage_pool_id=pool, storage_pool_name="dc1",
        reason="CannotDeleteSharedVolume (223)",
    )
    [row] = call(db, "GetAuditLogByAuditLogId", audit_id)
    assert (row["log_type"], row["log_type_name"], row["severity"]) == (
        2052, "USER_MOVED_DISK_FINISHED_WITH_LEFTOVERS", 1)
    assert row["correlation_id"] == str(cmd)
    assert (row["storage_domain_id"], row["storage_domain_name"]) == (sd, "nfs-b")
    assert (row["storage_pool_id"], row["storage_pool_name"]) == (pool, "dc1")
    assert row["origin"] == "oVirt" and not row["deleted"]
    assert "vm1_d1" in row["message"] and "nfs-a" in row["message"] and "223" in row["message"]
    assert json.loads(row["custom_data"])["disk_id"] == str(disk)
    ev = event_from_row(row)
    assert ev.severity == "WARNING" and ev.to_json()["disk_id"] == str(disk)
    # a second event of the same type is a second row (not an alert: never merged)
    second = log_event(db, AuditLogType.USER_MOVED_DISK_FINISHED_WITH_LEFTOVERS, disk_id=disk)
    assert second > audit_id
    db.rollback()
    assert call(db, "GetAuditLogByAuditLogId", audit_id) == []
