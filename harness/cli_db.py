"""Subcommands about the database: ``db start|stop|status|dsn`` (the embedded cluster and its
storage agent) and ``deploy`` (``demo`` is in cli_move)."""

from __future__ import annotations

import argparse
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from . import deploy as deploy_mod
from . import embedded
from .cli import common_options, emit
from .db import connect, describe_target, resolve_dsn, target_json, user_errors
from .errors import ConnectionFailed, ServerError
from .pgserver import EmbeddedCluster
from .replication import require_primary


def register(sub: Any) -> None:
    db = sub.add_parser("db", help="the embedded PostgreSQL cluster (MOVEDISK_HOME)")
    dbsub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, fn, text in (
        ("start", _db_start, "initialize if needed and start the embedded cluster (with --standby "
         "a streaming standby too) and its storage agent"),
        ("stop", _db_stop, "stop the embedded cluster (and its standby) and its storage agent"),
        ("status", _db_status, "where the embedded cluster and agent live and whether they run"),
        ("dsn", _db_dsn, "print the embedded cluster's connection string"),
        ("promote", _db_promote, "fail over: stop the primary, promote the standby, fence "
         "the old primary"),
    ):
        p = common_options(dbsub.add_parser(name, help=text))
        p.set_defaults(handler=fn)
        if name == "start":
            p.add_argument(
                "--standby", action="store_true",
                help="also run a streaming standby (pg_basebackup -R, a replication slot); "
                "the DSN then names both servers with target_session_attrs=read-write",
            )
            p.add_argument(
                "--synchronous", action="store_true",
                help="with --standby: every commit waits until the standby has it",
            )
    p = common_options(
        dbsub.add_parser(
            "replication",
            help="each server of the DSN: primary or standby, timeline, how far it lags",
        ),
        dsn=True,
    )
    p.set_defaults(handler=_db_replication)

    p = common_options(
        sub.add_parser("deploy", help="install or upgrade the package in a database"), dsn=True
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="report pending upgrades and drift without changing anything "
        "(exit 0 when up to date, 1 otherwise)",
    )
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=deploy_mod.DEFAULT_LOCK_TIMEOUT_S,
        metavar="SECONDS",
        help="give up (changing nothing) when a lock cannot be had within this time "
        f"(default {deploy_mod.DEFAULT_LOCK_TIMEOUT_S:g}): the engine's sessions never queue "
        "behind the deploy for longer",
    )
    p.set_defaults(handler=_deploy)


def _db_start(args: argparse.Namespace) -> int:
    cluster = EmbeddedCluster.default()
    if args.synchronous and not args.standby:
        raise ServerError("--synchronous needs --standby")
    cluster.start(standby=args.standby, synchronous=args.synchronous)
    st = {**cluster.status(), "agent": embedded.EmbeddedAgent.default().start()}
    emit(args, st, lambda s: f"running: {s['dsn']}\nagent: {s['agent']['socket']}")
    return 0


def _db_stop(args: argparse.Namespace) -> int:
    cluster = EmbeddedCluster.default()
    agent = embedded.EmbeddedAgent.default()
    agent.stop()
    cluster.stop()
    emit(args, {**cluster.status(), "agent": agent.status()}, lambda s: "stopped")
    return 0


def _db_status(args: argparse.Namespace) -> int:
    st = {**EmbeddedCluster.default().status(), "agent": embedded.EmbeddedAgent.default().status()}

    def human(s: dict[str, Any]) -> str:
        lines = [f"{k}: {v}" for k, v in s.items() if k != "agent"]
        return "\n".join(lines + [f"agent {k}: {v}" for k, v in s["agent"].items()])

    emit(args, st, human)
    return 0 if st["running"] and st["agent"]["running"] else 1


def _db_dsn(args: argparse.Namespace) -> int:
    cluster = EmbeddedCluster.default()
    emit(args, {"dsn": cluster.dsn()}, lambda s: s["dsn"])
    return 0


def _db_promote(args: argparse.Namespace) -> int:
    result = EmbeddedCluster.default().promote()
    emit(
        args,
        result,
        lambda r: f"promoted {r['promoted']} in {r['seconds']:.2f}s; {r['fenced']} is fenced "
        "(stopped; 'movedisk db start --standby' rebuilds it as the new standby)",
    )
    return 0


def _db_replication(args: argparse.Namespace) -> int:
    from . import replication

    dsn = resolve_dsn(args.dsn)
    servers: list[dict[str, Any]] = []
    for host, port in replication.dsn_servers(dsn) or [("", "")]:
        one = {**conninfo_to_dict(dsn), "target_session_attrs": "any"}
        if host:
            one.update(host=host, port=port)
        one.pop("hostaddr", None)
        try:
            with connect(make_conninfo(**one), autocommit=True) as conn:
                role = replication.server_role(conn)
                entry = role.to_json()
                entry["summary"] = replication.lag_summary(role)
                if not role.in_recovery:
                    entry["standbys"] = replication.standbys(conn)
        except ConnectionFailed as exc:
            entry = {"host": host, "port": port, "role": "unreachable", "summary":
                     f"{host}:{port}: unreachable ({' '.join(exc.message.split())})"}
        servers.append(entry)

    def human(rows: list[dict[str, Any]]) -> str:
        lines = []
        for r in rows:
            lines.append(r["summary"])
            for sb in r.get("standbys", []):
                lines.append(
                    f"  standby {sb['application_name']}: {sb['state']}, {sb['sync_state']}, "
                    f"{sb['replay_lag_bytes']} bytes not yet replayed"
                )
        return "\n".join(lines)

    emit(args, servers, human)
    return 0 if any(s["role"] == "primary" for s in servers) else 1


def _describe(report: deploy_mod.DeployReport, where: str = "") -> str:
    lines = []
    if report.dry_run:
        lines.append(f"deploy --check into {where} (nothing changed):")
    elif where:
        lines.append(f"deployed into {where}")
    if report.mode == "fresh":
        lines.append(f"fresh install; {len(report.upgrades_marked)} upgrade script(s) recorded")
    elif report.upgrades_applied:
        lines.append("upgraded: " + ", ".join(report.upgrades_applied))
    else:
        lines.append("schema up to date; functions and views re-applied")
    lines.append(
        f"{report.functions} functions, {report.views} views "
        f"({report.views_unchanged} unchanged, left alone), "
        f"{report.statements} statements in {report.seconds:.2f}s"
    )
    if report.dropped:
        lines.append("dropped (left the files): " + ", ".join(report.dropped))
    if report.replaced:
        lines.append(f"replaced {len(report.replaced)} function(s) of the database by the "
                     "package's, which add defaulted parameters at the end")
    if report.changes and report.dry_run:
        lines.append("would change:")
        lines.extend("  " + c for c in report.changes)
    return "\n".join(lines)


def _deploy(args: argparse.Namespace) -> int:
    with connect(args.dsn) as conn:
        where = describe_target(conn)
        target = target_json(conn)
        if args.check:
            st = deploy_mod.status(conn)
            conn.rollback()
            if not st["installed"]:
                result = {"up_to_date": False, **st, "changes": ["not installed"], "target": target}
                emit(args, result, lambda r: f"{where}: not installed: deploy would run a fresh install")
                return 1
            if st["edited"] or st["missing"]:
                result = {"up_to_date": False, **st, "changes": [], "target": target}
                emit(args, result, lambda r: f"{where}: " + _check_text(r))
                return 1
            report = deploy_mod.deploy(conn, dry_run=True, lock_timeout=args.lock_timeout)
            result = {
                "up_to_date": not st["pending"] and not report.changes,
                **st,
                "changes": report.changes,
                "target": target,
            }
            emit(args, result, lambda r: f"{where}: " + _check_text(r))
            return 0 if result["up_to_date"] else 1
        # Deploy changes the schema: only on the primary (never a standby, never an old
        # primary that a failover superseded).
        with user_errors():
            require_primary(conn, resolve_dsn(args.dsn))
        report = deploy_mod.deploy(conn, lock_timeout=args.lock_timeout)
        report.target = target
    emit(args, report.to_json(), lambda r: _describe(report, where))
    return 0


def _check_text(r: dict[str, Any]) -> str:
    if r["up_to_date"]:
        return "up to date"
    lines = ["not up to date:"]
    lines += [f"  pending upgrade: {p}" for p in r.get("pending", [])]
    lines += [f"  edited after it was applied: {p}" for p in r.get("edited", [])]
    lines += [f"  applied but missing from sql/upgrade/: {p}" for p in r.get("missing", [])]
    lines += [f"  drift: {c}" for c in r.get("changes", [])]
    return "\n".join(lines)
