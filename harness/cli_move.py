"""Subcommands that run moves: ``move``, ``remove``, ``recover``, ``cleanup``, ``status``,
``inventory`` and ``demo``.

The storage agent is ``--agent SOCKET``, else $MOVEDISK_AGENT_SOCKET, else the embedded agent
under MOVEDISK_HOME. Every command that changes moves first recovers the stale ones (moves whose
process died or whose lease expired); ``--no-recover`` skips that.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import uuid
from typing import Any


from . import inventory
from .agent import SimControl, StorageClient
from .cli import common_options, emit
from .db import PrimarySession, connect
from .engine import cleanup as cleanup_mod
from .engine import recover as recover_mod
from .engine import remove as remove_mod
from .engine.events import Event
from .engine.move import DEFAULT_LEASE_SECONDS, Engine
from .engine.owner import handoff
from .engine.states import Stage
from .engine.store import MoveCommand, Store
from .errors import MalformedId, MovediskError, UnknownDisk, WrongStorageDomain


class MoveFailed(MovediskError):
    """The move ended with failure: the disk stays where it was (see movedisk events)."""

    code = "MD302"
    exit_code = 17


def agent_socket(args: argparse.Namespace) -> str:
    """--agent, else MOVEDISK_AGENT_SOCKET, else the embedded agent (started if need be)."""
    from .embedded import agent_socket as resolve

    return resolve(getattr(args, "agent", None))


def _options(p: argparse.ArgumentParser, recover: bool = True) -> argparse.ArgumentParser:
    common_options(p, dsn=True)
    p.add_argument("--agent", metavar="SOCKET", default=None,
                   help="the storage agent's socket (default: $MOVEDISK_AGENT_SOCKET, else the "
                   "embedded agent under MOVEDISK_HOME)")
    p.add_argument("--lease-seconds", type=int, default=DEFAULT_LEASE_SECONDS,
                   help=argparse.SUPPRESS)
    if recover:
        p.add_argument("--no-recover", action="store_true",
                       help="do not finish stale moves (of dead processes) first")
    return p


def register(sub: Any) -> None:
    p = _options(sub.add_parser("move", help="move a disk to another storage domain"))
    p.add_argument("disk", help="disk id or alias")
    p.add_argument("--to", required=True, metavar="DOMAIN", help="destination domain id or name")
    p.add_argument("--wait", action="store_true",
                   help="stay until the move ended, showing its progress (default: print the "
                   "command id and let a background process run it)")
    p.set_defaults(handler=_move)

    p = _options(sub.add_parser("remove", help="remove an ILLEGAL temporary (To_Be_Deleted) disk"))
    p.add_argument("disk", help="temporary disk id")
    p.set_defaults(handler=_remove)

    p = _options(sub.add_parser("recover", help="finish every unfinished move whose process is gone"),
                 recover=False)
    p.add_argument("--workers", type=_positive, default=1, metavar="N",
                   help="finish the moves with N threads, one database connection each "
                   "(default 1)")
    p.set_defaults(handler=_recover)

    p = _options(sub.add_parser("cleanup", help="retry the deletions the storage still owes"))
    p.add_argument("--all", action="store_true", help="retry every one now, ignoring backoff")
    p.set_defaults(handler=_cleanup)

    p = _options(sub.add_parser("status", help="unfinished moves, their phase and progress"),
                 recover=False)
    p.set_defaults(handler=_status)

    p = _options(sub.add_parser("inventory", help="create data centers, domains, templates, VMs "
                                "and disks from a JSON file, on the database and the agent"),
                 recover=False)
    p.add_argument("file", help="the inventory file (see movedisk.inventory for its format)")
    p.set_defaults(handler=_inventory)

    p = _options(sub.add_parser("worker", help="(internal) run one move in the background, as "
                                "move without --wait starts it"), recover=False)
    p.add_argument("command_id")
    p.add_argument("--claim-from", default=None)
    p.set_defaults(handler=_worker)

    from .demo import register as register_demo

    register_demo(sub)


# --- plumbing --------------------------------------------------------------------------------


def engine_for(args: argparse.Namespace, on_event: Any = None) -> Engine:
    # The primary, found through a multi-host DSN and reached with bounded retries; a
    # standby or an old primary that a failover superseded is refused (NotPrimary).
    session = PrimarySession(args.dsn)
    conn = session.conn
    client = StorageClient(agent_socket(args), timeout=60)
    return Engine(Store(conn), client, lease_seconds=args.lease_seconds,
                  on_event=on_event or (lambda e: None), reconnect=session.reconnect)


def _recover_first(args: argparse.Namespace, engine: Engine) -> None:
    if getattr(args, "no_recover", False):
        return
    report = recover_mod.recover(engine)
    if report.finished and not getattr(args, "json", False):
        for c in report.finished:
            print(f"recovered move {c.command_id} of disk {c.image_group_id}: {c.stage}",
                  file=sys.stderr)


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def resolve_disk(store: Store, value: str) -> uuid.UUID:
    found = parse_uuid(value)
    if found:
        return found
    disks = store.disks_by_alias(value)
    if len(disks) == 1:
        return disks[0]["disk_id"]  # type: ignore[no-any-return]
    if len(disks) > 1:
        raise UnknownDisk(f"{len(disks)} disks have the alias {value!r}; give the disk id")
    raise MalformedId(f"{value!r} is neither a disk id (UUID) nor the alias of a disk")


def resolve_domain(store: Store, value: str) -> uuid.UUID:
    found = parse_uuid(value)
    if found:
        return found
    rows = store.domain_by_name(value)
    if len(rows) == 1:
        return rows[0]["id"]  # type: ignore[no-any-return]
    if rows:
        raise WrongStorageDomain(f"{len(rows)} storage domains are named {value!r}; give the id")
    raise MalformedId(f"{value!r} is neither a storage domain id (UUID) nor a domain's name")


class ProgressPrinter:
    """Renders the engine's events: one line per phase, a progress bar for the copy."""

    def __init__(self, stream: Any = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.quiet = quiet
        self.bar_open = False
        self.last: Event | None = None

    def __call__(self, e: Event) -> None:
        if self.quiet:
            return
        if e.kind == "progress":
            self.last = e
            if self.tty:
                self.stream.write("\r" + bar(e))
                self.stream.flush()
                self.bar_open = True
            return
        self.close_bar()
        prefix = {"warning": "! ", "info": "  "}.get(e.kind, "- ")
        self.stream.write(f"{prefix}{e.message}\n")
        self.stream.flush()

    def close_bar(self) -> None:
        if self.bar_open:
            self.stream.write("\n")
            self.bar_open = False
        elif self.last is not None and not self.tty:
            self.stream.write(bar(self.last) + "\n")
        self.last = None


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def bar(e: Event, width: int = 30) -> str:
    total = e.bytes_total or 1
    frac = min(1.0, e.bytes_done / total)
    filled = int(frac * width)
    eta = e.eta
    left = f"{eta:4.1f}s left" if eta is not None else "   ?s left"
    return (f"  copy [{'#' * filled}{'.' * (width - filled)}] {frac * 100:5.1f}% "
            f"{human_bytes(e.bytes_done)}/{human_bytes(e.bytes_total)} "
            f"{human_bytes(e.rate)}/s {left}")


def _move_result(cmd: MoveCommand) -> dict[str, Any]:
    return {**cmd.to_json(), "final": Stage(cmd.stage).final}


# --- commands ---------------------------------------------------------------------------------


def _move(args: argparse.Namespace) -> int:
    printer = ProgressPrinter(quiet=bool(getattr(args, "json", False)) or not args.wait)
    engine = engine_for(args, printer)
    _recover_first(args, engine)
    disk = resolve_disk(engine.store, args.disk)
    dest = resolve_domain(engine.store, args.to)
    if not args.wait:
        token = handoff()
        cmd = engine.start(disk, dest, owner=token)
        _spawn_worker(args, cmd, token)
        emit(args, _move_result(cmd), lambda r: f"{r['command_id']}")
        return 0
    cmd = engine.start(disk, dest)
    try:
        cmd = engine.run(cmd)
    except MovediskError as exc:  # give the move up at once: recovery may take it over now
        printer.close_bar()
        engine.store.release_lease(cmd.command_id, engine.owner, exc.message)
        raise
    printer.close_bar()
    emit(args, _move_result(cmd), lambda r: f"move {r['command_id']}: {r['stage']}")
    if cmd.stage == Stage.ENDED_FAILURE:
        raise MoveFailed(f"the move of disk {disk} failed: {cmd.last_error}; the disk stays on "
                         f"storage domain {cmd.src_storage}", command_id=str(cmd.command_id))
    return 0


def _spawn_worker(args: argparse.Namespace, cmd: MoveCommand, token: str) -> None:
    argv = [sys.executable, "-m", "movedisk.cli", "worker", str(cmd.command_id),
            "--claim-from", token, "--agent", agent_socket(args),
            "--lease-seconds", str(args.lease_seconds)]
    if args.dsn:
        argv += ["--dsn", args.dsn]
    subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


def _worker(args: argparse.Namespace) -> int:
    command_id = parse_uuid(args.command_id)
    if command_id is None:
        raise MalformedId(f"{args.command_id!r} is not a command id (UUID)")
    engine = engine_for(args)
    cmd = engine.store.claim_move(command_id, engine.owner, engine.lease_seconds, args.claim_from)
    if cmd is None:
        return 0  # someone else runs it, or it ended
    try:
        engine.run(cmd)
    except MovediskError as exc:
        engine.store.release_lease(cmd.command_id, engine.owner, exc.message)
        raise
    return 0


def _remove(args: argparse.Namespace) -> int:
    engine = engine_for(args, ProgressPrinter(quiet=bool(getattr(args, "json", False))))
    _recover_first(args, engine)
    disk = parse_uuid(args.disk)
    if disk is None:
        raise MalformedId(f"{args.disk!r} is not a disk id (UUID)")
    result = remove_mod.remove(engine, disk)
    emit(args, result.to_json(), lambda r: f"removed temporary disk {r['disk_id']} ({r['plan']})")
    return 0


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"not a positive number: {value!r}")
    return n


def _recover(args: argparse.Namespace) -> int:
    engine = engine_for(args, ProgressPrinter(quiet=bool(getattr(args, "json", False))))
    report = recover_mod.recover(engine, workers=args.workers,
                                 connect=lambda: PrimarySession(args.dsn).conn)

    def human(r: dict[str, Any]) -> str:
        lines = [f"recovered {len(r['finished'])} move(s)"]
        lines += [f"  {f['command_id']} disk {f['disk_id']}: {f['stage']}" for f in r["finished"]]
        lines += [f"  left to its live process: {s['command_id']} ({s['owner']})" for s in r["skipped"]]
        lines += [f"  could not finish {e['command_id']}: {e['error']}" for e in r["errors"]]
        return "\n".join(lines)

    emit(args, report.to_json(), human)
    return 1 if report.errors else 0


def _cleanup(args: argparse.Namespace) -> int:
    engine = engine_for(args, ProgressPrinter(quiet=bool(getattr(args, "json", False))))
    _recover_first(args, engine)
    report = cleanup_mod.run(engine, due_only=not args.all)
    pending = engine.store.deletions()
    result = {**report.to_json(), "pending": [d.to_json() for d in pending]}

    def human(r: dict[str, Any]) -> str:
        lines = [f"deleted {len(r['deleted'])}, failed {len(r['failed'])}, "
                 f"still pending {len(r['pending'])}"]
        lines += [f"  pending: {p['reason']} {p['image_group_id']} on {p['storage_domain_id']} "
                  f"(attempts {p['attempts']}): {p['last_error']}"
                  for p in r["pending"]]
        return "\n".join(lines)

    emit(args, result, human)
    return 1 if report.failed else 0


def _status(args: argparse.Namespace) -> int:
    conn = connect(args.dsn, autocommit=True)
    store = Store(conn)
    client = StorageClient(agent_socket(args), timeout=10)
    moves = []
    for cmd in store.unfinished_moves():
        item = cmd.to_json()
        item["progress"] = None
        if cmd.stage == Stage.COPYING and cmd.copy_task_id:
            try:
                st = client.get_task_status(str(cmd.copy_task_id))
                item["progress"] = st.get("progress")
                item["task_state"] = st.get("taskState")
            except MovediskError as exc:
                item["task_error"] = exc.message
        moves.append(item)
    deletions = [d.to_json() for d in store.deletions()]
    result = {"moves": moves, "pending_deletions": deletions}

    def human(r: dict[str, Any]) -> str:
        if not r["moves"] and not r["pending_deletions"]:
            return "no unfinished move, no pending deletion"
        lines = []
        for m in r["moves"]:
            prog = ""
            if m.get("progress"):
                p = m["progress"]
                total = p.get("bytes_total") or 1
                prog = f" {100 * p.get('bytes_done', 0) / total:.0f}% of {human_bytes(total)}"
            lines.append(f"{m['command_id']} disk {m['image_group_id']} -> {m['dest_storage']}: "
                         f"{m['stage']}{prog} (run by {m['lease_owner']} until {m['lease_expires']})")
        for d in r["pending_deletions"]:
            lines.append(f"pending deletion: {d['reason']} {d['image_group_id']} on "
                         f"{d['storage_domain_id']} (attempts {d['attempts']}): {d['last_error']}")
        return "\n".join(lines)

    emit(args, result, human)
    return 0


def _inventory(args: argparse.Namespace) -> int:
    spec = inventory.load(args.file)
    with connect(args.dsn) as conn:
        made = inventory.build(conn, SimControl(agent_socket(args), timeout=60), spec)
    emit(args, made.to_json(), lambda r: "\n".join(
        [f"{len(r['data_centers'])} data center(s), {len(r['domains'])} domain(s), "
         f"{len(r['templates'])} template(s), {len(r['vms'])} VM(s), {len(r['disks'])} disk(s)"]
        + [f"  disk {a}: {d['id']} on {d['domain']} ({len(d['volumes'])} volumes)"
           for a, d in r["disks"].items()]))
    return 0

