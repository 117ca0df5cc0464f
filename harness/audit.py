"""The events a move leaves in ``audit_log``, with oVirt's names, codes and severities.

oVirt's engine records what happened to a disk as ``audit_log`` rows whose ``log_type`` is
an ``AuditLogType`` code and whose ``severity`` is an ``AuditLogSeverity``. The move uses
oVirt's own types where oVirt has them (checked against oVirt's AuditLogType.java)::

    USER_MOVED_DISK                                   2008  NORMAL   a move started
    USER_FAILED_MOVED_VM_DISK                         2009  ERROR    a move could not start
    USER_MOVED_DISK_FINISHED_SUCCESS                  2010  NORMAL   the disk is on D, S is clean
    USER_MOVED_DISK_FINISHED_FAILURE                  2011  ERROR    the disk stayed on S
    USER_MOVED_DISK_FINISHED_WITH_LEFTOVERS           2052  WARNING  on D, a leftover stays on S
    USER_MOVE_IMAGE_GROUP_FAILED_TO_DELETE_SRC_IMAGE  2025  WARNING  the source deletion failed
    USER_MOVE_IMAGE_GROUP_FAILED_TO_DELETE_DST_IMAGE  2026  WARNING  the partial copy stayed on D

and two of its own, numbered from 20001 (oVirt's codes end below 16000; the range
20000-20099 is movedisk's)::

    USER_MOVED_DISK_LEFTOVER_REMOVED                 20001  NORMAL   a leftover was deleted
    SYSTEM_MOVED_DISK_RECOVERED                      20002  WARNING  recovery took over a move

The engine writes one event with :func:`log_event`, in the caller's transaction (it does
not commit), in one round trip: ``InsertMoveDiskAuditLog`` looks up the names of the disk,
its VM, the domains and the data center from their ids, fills the template and writes the
row through the package's ``InsertAuditLog``::

    from movedisk.audit import AuditLogType, log_event

    log_event(conn, AuditLogType.USER_MOVED_DISK_FINISHED_SUCCESS,
              disk_id=disk, command_id=cmd, source_domain_id=s, storage_domain_id=d)

The command id goes to ``correlation_id`` (oVirt ties a flow's events together that
way); the ids of the disk, domains, command and task go to ``custom_data`` as JSON so that
``movedisk events --json`` can give them back; the message is rendered from the type's
template (``message=`` overrides it).
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from .db import call

__all__ = [
    "AuditLogSeverity",
    "AuditLogType",
    "Event",
    "event_from_row",
    "log_event",
    "render",
]

MOVEDISK_CODES = range(20000, 20100)  # codes of movedisk's own event types


class AuditLogSeverity(IntEnum):
    """oVirt's AuditLogSeverity values as stored in ``audit_log.severity``."""

    NORMAL = 0
    WARNING = 1
    ERROR = 2
    ALERT = 10


class AuditLogType(Enum):
    """The event types of a move: ``.value`` is the code, plus ``.severity`` and ``.template``.

    Templates use ``str.format`` fields; a field the caller did not give renders as ``?``.
    Fields: disk_alias, disk_id, source_domain_name, storage_domain_name (the destination,
    or the domain the event is about), command_id, reason.
    """

    severity: AuditLogSeverity
    template: str

    def __new__(cls, code: int, severity: AuditLogSeverity, template: str) -> AuditLogType:
        member = object.__new__(cls)
        member._value_ = code
        member.severity = severity
        member.template = template
        return member

    @property
    def code(self) -> int:
        return int(self._value_)

    USER_MOVED_DISK = (
        2008,
        AuditLogSeverity.NORMAL,
        "Moving disk {disk_alias} from domain {source_domain_name} to domain "
        "{storage_domain_name}.",
    )
    USER_FAILED_MOVED_VM_DISK = (
        2009,
        AuditLogSeverity.ERROR,
        "Disk {disk_alias} could not be moved to domain {storage_domain_name}: {reason}",
    )
    USER_MOVED_DISK_FINISHED_SUCCESS = (
        2010,
        AuditLogSeverity.NORMAL,
        "Disk {disk_alias} moved from domain {source_domain_name} to domain "
        "{storage_domain_name}.",
    )
    USER_MOVED_DISK_FINISHED_FAILURE = (
        2011,
        AuditLogSeverity.ERROR,
        "The move of disk {disk_alias} from domain {source_domain_name} to domain "
        "{storage_domain_name} failed; the disk stays on {source_domain_name}: {reason}",
    )
    USER_MOVED_DISK_FINISHED_WITH_LEFTOVERS = (
        2052,
        AuditLogSeverity.WARNING,
        "Disk {disk_alias} moved to domain {storage_domain_name}, but its old copy stays on "
        "domain {source_domain_name} as a leftover (an ILLEGAL temporary disk): {reason}",
    )
    USER_MOVE_IMAGE_GROUP_FAILED_TO_DELETE_SRC_IMAGE = (
        2025,
        AuditLogSeverity.WARNING,
        "The source copy of disk {disk_alias} on domain {source_domain_name} could not be "
        "deleted: {reason}",
    )
    USER_MOVE_IMAGE_GROUP_FAILED_TO_DELETE_DST_IMAGE = (
        2026,
        AuditLogSeverity.WARNING,
        "The partial copy of disk {disk_alias} on domain {storage_domain_name} could not be "
        "deleted: {reason}",
    )
    USER_MOVED_DISK_LEFTOVER_REMOVED = (
        20001,
        AuditLogSeverity.NORMAL,
        "The leftover of disk {disk_alias} on domain {storage_domain_name} was removed.",
    )
    SYSTEM_MOVED_DISK_RECOVERED = (
        20002,
        AuditLogSeverity.WARNING,
        "The interrupted move of disk {disk_alias} from domain {source_domain_name} to domain "
        "{storage_domain_name} was taken over by recovery: {reason}",
    )

    @classmethod
    def for_code(cls, code: int) -> AuditLogType | None:
        """The type with that code, or None (an event some other tool wrote)."""
        try:
            return cls(code)
        except ValueError:
            return None


class _Fields(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def render(event_type: AuditLogType, **fields: Any) -> str:
    """The event's message: its template with ``fields`` (missing ones as ``?``)."""
    given = _Fields({k: v for k, v in fields.items() if v is not None and v != ""})
    return event_type.template.format_map(given)


def _uuid(value: Any) -> uuid.UUID | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def log_event(
    conn: psycopg.Connection[Any],
    event_type: AuditLogType,
    *,
    disk_id: Any = None,
    disk_alias: str = "",
    command_id: Any = None,
    task_id: Any = None,
    source_domain_id: Any = None,
    source_domain_name: str = "",
    storage_domain_id: Any = None,
    storage_domain_name: str = "",
    storage_pool_id: Any = None,
    storage_pool_name: str = "",
    vm_id: Any = None,
    vm_name: str = "",
    user_name: str = "",
    reason: str = "",
    message: str | None = None,
    log_time: _dt.datetime | None = None,
) -> int:
    """Write one event of ``event_type``; its ``audit_log_id``. One round trip.

    Runs in the caller's transaction and does not commit. ``storage_domain_id`` is the
    domain the event is about (the destination of a move; the source for a source
    leftover), ``source_domain_id`` the other end. Only the ids are needed: the disk's alias,
    its VM, the domains' and the data center's names are looked up by
    ``InsertMoveDiskAuditLog`` in the same call (a name given here wins). ``reason`` is a
    short cause (an agent error, a refusal) used by the templates; ``message`` replaces the
    type's template.
    """
    details = {"task_id": str(task_id)} if task_id else {}
    rows = call(
        conn,
        "InsertMoveDiskAuditLog",
        event_type.code,  # v_log_type
        event_type.name,  # v_log_type_name
        int(event_type.severity),  # v_severity
        message if message is not None else event_type.template,  # v_message_template
        _uuid(disk_id),  # v_disk_id
        _uuid(source_domain_id),  # v_source_domain_id
        _uuid(storage_domain_id),  # v_storage_domain_id
        _uuid(command_id),  # v_command_id
        reason or "",  # v_reason
        Jsonb(details),  # v_details
        _uuid(storage_pool_id),  # v_storage_pool_id
        disk_alias or None,  # v_disk_alias
        source_domain_name or None,  # v_source_domain_name
        storage_domain_name or None,  # v_storage_domain_name
        storage_pool_name or None,  # v_storage_pool_name
        user_name or "",  # v_user_name
        log_time or _dt.datetime.now(_dt.timezone.utc),  # v_log_time
        _uuid(vm_id),  # v_vm_id
        vm_name or None,  # v_vm_name
    )
    return int(next(iter(rows[0].values())))


# --- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One ``audit_log`` row as ``movedisk events`` shows it."""

    audit_log_id: int
    log_time: _dt.datetime
    log_type: int
    log_type_name: str
    severity: str
    message: str
    correlation_id: str | None
    storage_domain_id: str | None
    storage_domain_name: str
    storage_pool_id: str | None
    storage_pool_name: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "audit_log_id": self.audit_log_id,
            "log_time": self.log_time.isoformat(),
            "log_type": self.log_type,
            "log_type_name": self.log_type_name,
            "severity": self.severity,
            "message": self.message,
            "correlation_id": self.correlation_id,
            "storage_domain_id": self.storage_domain_id,
            "storage_domain_name": self.storage_domain_name,
            "storage_pool_id": self.storage_pool_id,
            "storage_pool_name": self.storage_pool_name,
            **self.details,
        }


def _severity_name(value: int) -> str:
    try:
        return AuditLogSeverity(value).name
    except ValueError:
        return str(value)


def event_from_row(row: dict[str, Any]) -> Event:
    """An :class:`Event` from an ``audit_log`` row (any origin; unknown codes keep their name)."""
    known = AuditLogType.for_code(row["log_type"])
    try:
        details = json.loads(row.get("custom_data") or "{}")
        if not isinstance(details, dict):
            details = {"custom_data": row.get("custom_data")}
    except ValueError:
        details = {"custom_data": row.get("custom_data")}
    return Event(
        audit_log_id=int(row["audit_log_id"]),
        log_time=row["log_time"],
        log_type=int(row["log_type"]),
        log_type_name=row.get("log_type_name") or (known.name if known else ""),
        severity=_severity_name(int(row["severity"])),
        message=row["message"],
        correlation_id=row.get("correlation_id"),
        storage_domain_id=str(row["storage_domain_id"]) if row.get("storage_domain_id") else None,
        storage_domain_name=row.get("storage_domain_name") or "",
        storage_pool_id=str(row["storage_pool_id"]) if row.get("storage_pool_id") else None,
        storage_pool_name=row.get("storage_pool_name") or "",
        details=details,
    )
