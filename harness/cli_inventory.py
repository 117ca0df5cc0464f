"""Read-only subcommands: ``disks``, ``domains``, ``events``, ``verify``.

None of them changes the database: each reads through the package's STABLE functions in
a READ ONLY transaction, so they work against a streaming replica and as ``movedisk_dba``.

- ``disks [--temporary|--no-temporary]``: every disk with its status, domain, size, VMs,
  and for a temporary (To_Be_Deleted) disk the move it stands for;
- ``domains``: every storage domain with its data center, status, space and the bytes its
  leftovers use;
- ``events [--since WHEN] [--limit N]``: the audit log, oldest first (newest last);
- ``verify``: every check of ``VerifyAll()`` plus a comparison with what the storage agent
  holds (see harness/verify.py); exit 1 on any finding.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from . import replication
from . import verify as verify_mod
from .audit import event_from_row
from .cli import common_options, emit
from .db import call, connect
from .errors import MovediskError

IMAGE_STATUS = {0: "UNASSIGNED", 1: "OK", 2: "LOCKED", 4: "ILLEGAL"}
DOMAIN_STATUS = {0: "Unknown", 1: "Uninitialized", 2: "Unattached", 3: "Active", 4: "Inactive",
                 5: "Locked", 6: "Maintenance", 7: "PreparingForMaintenance", 8: "Detaching",
                 9: "Activating"}
GIB = 1024**3


class BadArgument(MovediskError):
    """A command-line value that cannot be understood (e.g. --since)."""

    code = "MD130"
    exit_code = 2  # as argparse's own usage errors


def register(sub: Any) -> None:
    p = common_options(sub.add_parser("disks", help="list disks (read-only)"), dsn=True)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--temporary", dest="temporary", action="store_const", const=True,
                       default=None, help="only temporary (To_Be_Deleted) disks of moves")
    which.add_argument("--no-temporary", dest="temporary", action="store_const", const=False,
                       help="leave out temporary disks")
    p.set_defaults(handler=_disks)

    p = common_options(sub.add_parser("domains", help="list storage domains (read-only)"),
                       dsn=True)
    p.set_defaults(handler=_domains)

    p = common_options(sub.add_parser("events", help="the audit log, newest last (read-only)"),
                       dsn=True)
    p.add_argument("--since", default=None, metavar="WHEN",
                   help="only events at or after WHEN: a timestamp (2026-11-27 13:00, ISO 8601) "
                   "or an age such as 30s, 15m, 2h, 1d")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the last N events")
    p.set_defaults(handler=_events)

    p = common_options(sub.add_parser(
        "verify", help="check the database and compare it with the storage; exit 1 on a finding"),
        dsn=True)
    p.add_argument("--agent", default=None, metavar="SOCKET",
                   help="ask the agent on SOCKET where its storage is (default: "
                   "MOVEDISK_AGENT_SOCKET, else the embedded agent's root under MOVEDISK_HOME)")
    p.add_argument("--agent-root", default=None, metavar="DIR",
                   help="read the storage from the agent root DIR (works while it is down)")
    p.add_argument("--db-only", action="store_true",
                   help="only the database checks (no storage comparison)")
    p.add_argument("--no-checksums", action="store_true",
                   help="compare volume lists only, without reading the volumes' data")
    p.add_argument("--leftover-age", default=None, metavar="INTERVAL",
                   help="leftovers older than this are findings (default '1 day')")
    p.add_argument("--command-age", default=None, metavar="INTERVAL",
                   help="unfinished commands without a task older than this are findings "
                   "(default '5 minutes')")
    p.set_defaults(handler=_verify)


@contextmanager
def _read_only(dsn: str | None) -> Iterator[psycopg.Connection[Any]]:
    with connect(dsn) as conn:
        conn.read_only = True
        try:
            yield conn
        finally:
            if not conn.closed:
                conn.rollback()


def _uuid_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("TiB", 1024**4), ("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


# --- disks ----------------------------------------------------------------------------------


def disk_rows(conn: psycopg.Connection[Any], temporary: bool | None = None) -> list[dict[str, Any]]:
    """The rows of ``movedisk disks --json``."""
    out = []
    for r in call(conn, "GetDisksForListing", temporary):
        ids = [str(x) for x in r["storage_domain_ids"] or []]
        names = list(r["storage_domain_names"] or [])
        out.append({
            "disk_id": str(r["disk_id"]),
            "alias": r["disk_alias"],
            "status": IMAGE_STATUS.get(r["imagestatus"], str(r["imagestatus"])),
            "volumes": r["volumes"],
            "domains": [{"id": i, "name": n} for i, n in zip(ids, names)],
            "domain_id": ids[0] if ids else None,
            "domain_name": names[0] if names else None,
            "storage_pool_id": _uuid_text(r["storage_pool_id"]),
            "size": r["size"],
            "actual_size": r["actual_size"],
            "wipe_after_delete": r["wipe_after_delete"],
            "vms": list(r["vm_names"] or []),
            "template": None if r["template_disk_id"] is None else {
                "disk_id": str(r["template_disk_id"]), "alias": r["template_alias"]},
            "temporary": r["is_temporary"],
            "source": None if not r["is_temporary"] else {
                "disk_id": _uuid_text(r["src_image_group_id"]),
                "from_domain_id": _uuid_text(r["src_storage"]),
                "from_domain_name": r["src_storage_name"],
                "to_domain_id": _uuid_text(r["dest_storage"]),
                "to_domain_name": r["dest_storage_name"],
                "state": r["leftover_state"],
                "since": r["created"].isoformat() if r["created"] else None,
            },
        })
    return out


def _disks_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no disks"
    table = []
    for r in rows:
        src = r["source"]
        source = ""
        if src:
            source = (f"move of {src['disk_id']} {src['from_domain_name']} -> "
                      f"{src['to_domain_name']} {src['state']}")
        elif r["template"]:
            source = f"template {r['template']['alias'] or r['template']['disk_id']}"
        table.append([
            r["disk_id"], r["alias"] or "", r["status"],
            ",".join(d["name"] for d in r["domains"]) or "-",
            _size(r["size"]), "yes" if r["temporary"] else "no", source,
        ])
    return _table(["DISK", "ALIAS", "STATUS", "DOMAIN", "SIZE", "TEMPORARY", "SOURCE"], table)


def _disks(args: argparse.Namespace) -> int:
    with _read_only(args.dsn) as conn:
        rows = disk_rows(conn, args.temporary)
    emit(args, rows, _disks_text)
    return 0


# --- domains --------------------------------------------------------------------------------


def domain_rows(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """The rows of ``movedisk domains --json`` (space in bytes; the storage reports GB)."""
    out = []
    for r in call(conn, "GetStorageDomainsForListing"):
        avail, used = r["available_disk_size"], r["used_disk_size"]
        out.append({
            "domain_id": str(r["id"]),
            "name": r["storage_name"],
            "storage_pool_id": _uuid_text(r["storage_pool_id"]),
            "storage_pool_name": r["storage_pool_name"],
            "status": DOMAIN_STATUS.get(r["status"], "Unattached") if r["status"] is not None
            else "Unattached",
            "size": None if avail is None or used is None else (avail + used) * GIB,
            "free": None if avail is None else avail * GIB,
            "used_by_disks": r["disk_bytes"],
            "used_by_leftovers": r["leftover_bytes"],
            "used_by_copies_in_flight": r["in_flight_bytes"],
            "leftover_disks": r["leftover_disks"],
            "volumes": r["volumes"],
        })
    return out


def _domains_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no storage domains"
    table = [[
        r["domain_id"], r["name"], r["storage_pool_name"] or "-", r["status"], _size(r["size"]),
        _size(r["free"]), _size(r["used_by_leftovers"]) + f" ({r['leftover_disks']})",
    ] for r in rows]
    return _table(["DOMAIN", "NAME", "POOL", "STATUS", "SIZE", "FREE", "LEFTOVERS"], table)


def _domains(args: argparse.Namespace) -> int:
    with _read_only(args.dsn) as conn:
        rows = domain_rows(conn)
    emit(args, rows, _domains_text)
    return 0


# --- events ---------------------------------------------------------------------------------

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hour|hours|d|day|days|w)\s*$", re.I)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "hours": 3600,
          "d": 86400, "day": 86400, "days": 86400, "w": 604800}


def parse_since(text: str | None, now: dt.datetime | None = None) -> dt.datetime:
    """``--since``: an age (30s, 15m, 2h, 1d, 1w) or a timestamp (local time when no zone)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if text is None:
        return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    m = _AGE.match(text)
    if m:
        return now - dt.timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadArgument(f"--since {text!r} is neither an age (30s, 15m, 2h, 1d) nor a "
                          "timestamp (2026-11-27 13:00)") from None
    return when if when.tzinfo else when.astimezone()


def event_rows(conn: psycopg.Connection[Any], since: dt.datetime,
               limit: int | None = None) -> list[dict[str, Any]]:
    """Events at or after ``since``, oldest first (the last ``limit`` of them)."""
    rows = [event_from_row(r).to_json() for r in call(conn, "GetAuditLogLaterThenDate", since)]
    rows.reverse()  # the function answers newest first
    if limit is not None:
        rows = rows[-limit:] if limit > 0 else []
    return rows


def _events_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no events"
    lines = []
    for r in rows:
        when = dt.datetime.fromisoformat(r["log_time"]).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{when}  {r['severity']:<7}  {r['log_type_name'] or '-'} ({r['log_type']})"
                     f"  {r['message']}")
    return "\n".join(lines)


def _events(args: argparse.Namespace) -> int:
    since = parse_since(args.since)
    with _read_only(args.dsn) as conn:
        rows = event_rows(conn, since, args.limit)
    emit(args, rows, _events_text)
    return 0


# --- verify ---------------------------------------------------------------------------------


def _storage_root(args: argparse.Namespace) -> str:
    from .agent.errors import AgentUnavailable

    if args.agent_root:
        root = args.agent_root
    else:
        root = verify_mod.agent_root_of(args.agent or os.environ.get("MOVEDISK_AGENT_SOCKET"))
    if not (Path(root) / "domains").is_dir():
        raise AgentUnavailable(f"no storage agent files under {root} (name the agent with "
                               "--agent SOCKET or --agent-root DIR, or check the database only "
                               "with --db-only)", root=root)
    return root


def _verify(args: argparse.Namespace) -> int:
    root = None if args.db_only else _storage_root(args)
    with _read_only(args.dsn) as conn:
        # On a standby the findings are as of its last replayed commit: say how far it lags.
        server = replication.server_role(conn)
        try:
            findings = verify_mod.database_findings(conn, args.leftover_age, args.command_age)
        except psycopg.errors.DataError as exc:  # e.g. an --leftover-age that is no interval
            raise BadArgument(f"{exc.diag.message_primary or exc}") from None
        conn.rollback()
        report = None
        if root is not None:
            report = verify_mod.compare_storage(conn, root, checksums=not args.no_checksums)
            findings += report.findings
    result = {
        "ok": not findings,
        "storage_root": root,
        "checksums": root is not None and not args.no_checksums,
        "storage": report.to_json() if report else None,
        "findings": [f.to_json() for f in findings],
        "server": {**server.to_json(), "summary": replication.lag_summary(server)},
    }

    def human(r: dict[str, Any]) -> str:
        scope = "database" if report is None else (
            f"database and storage: {report.volumes} volumes on {report.domains} domains, "
            f"{report.checksummed} checksummed, under {root}")
        lag = [f"on a standby: {r['server']['summary']}"] if server.in_recovery else []
        if r["ok"]:
            return "\n".join([*lag, f"verify: no findings ({scope})"])
        lines = [*lag, f"verify: {len(findings)} finding(s) ({scope})"]
        lines += [f"{f.severity:<7} {f.check_name}: {f.message}" for f in findings]
        return "\n".join(lines)

    emit(args, result, human)
    return 0 if not findings else 1
