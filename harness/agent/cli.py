"""``movedisk agent ...``: serve the simulator, list the domains, show tasks.

- ``agent serve --root DIR [--socket PATH]``: run the simulator (foreground); every copy
  and deletion is durable (fsynced, directories included) before its task says finished.
- ``agent ls [--root DIR] [--domain SD] [--verify]``: what the domains hold, read from
  the files (works while the agent is down); ``--verify`` recomputes every checksum.
- ``agent tasks [--root DIR] [--tag TAG]``: the agent's tasks, from the running agent,
  or from its task records when it is down.
- ``agent ping``: whether the agent answers.

DIR defaults to $MOVEDISK_AGENT_ROOT, else ``agent/`` under MOVEDISK_HOME (``.movedisk/``).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..cli import common_options, emit
from . import datacopy
from .client import StorageClient
from .errors import AgentUnavailable
from .layout import Root, read_json, walk


def default_root() -> str:
    """$MOVEDISK_AGENT_ROOT, else agent/ beside the embedded cluster (MOVEDISK_HOME)."""
    from ..pgserver import movedisk_home

    return os.environ.get("MOVEDISK_AGENT_ROOT") or str(movedisk_home() / "agent")


def _root_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=None, help="the agent's directory (default: "
                   "$MOVEDISK_AGENT_ROOT, else $MOVEDISK_HOME/agent)")
    p.add_argument("--socket", default=None, help="the agent's socket (default: ROOT/agent.sock)")


def register(sub: Any) -> None:
    agent = sub.add_parser("agent", help="the storage agent simulator (VDSM-style)")
    asub = agent.add_subparsers(dest="agent_command", metavar="ACTION", required=True)

    p = common_options(asub.add_parser("serve", help="run the storage agent simulator"))
    _root_option(p)
    p.add_argument("--fsync", action="store_true",
                   help="accepted for compatibility: every copy is always fsynced")
    p.set_defaults(handler=_serve)

    p = common_options(asub.add_parser("ls", help="list domains, image groups and volumes "
                                       "(reads the files; works while the agent is down)"))
    _root_option(p)
    p.add_argument("--domain", default=None, help="only this storage domain")
    p.add_argument("--verify", action="store_true", help="recompute every volume's checksum")
    p.set_defaults(handler=_ls)

    p = common_options(asub.add_parser("tasks", help="the agent's tasks"))
    _root_option(p)
    p.add_argument("--tag", default=None, help="only tasks with this tag (command id)")
    p.set_defaults(handler=_tasks)

    p = common_options(asub.add_parser("ping", help="whether the agent answers"))
    _root_option(p)
    p.set_defaults(handler=_ping)


def _root(args: argparse.Namespace) -> Root:
    return Root(args.root or default_root())


def _client(args: argparse.Namespace) -> StorageClient:
    return StorageClient(args.socket or str(_root(args).socket), timeout=10.0)


def _serve(args: argparse.Namespace) -> int:
    from .server import serve

    root = _root(args)
    return serve(root.root, args.socket, args.fsync,
                 ready=lambda path: print(f"ready {path}", flush=True))


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1048576:.1f}M"


def _ls(args: argparse.Namespace) -> int:
    root = _root(args)
    domains = list(walk(root, args.domain))
    if args.domain and not domains:
        root.domain_meta(args.domain)  # raises StorageDomainDoesNotExist
    if args.verify:
        for d in domains:
            for img in d["images"]:
                for v in img["volumes"]:
                    path = root.image_dir(d["sdUUID"], img["imgUUID"]) / v["volUUID"]
                    actual = datacopy.checksum(str(path)) if path.exists() else None
                    v["checksum_ok"] = actual == v.get("checksum")

    def human(ds: list[dict[str, Any]]) -> str:
        lines = []
        for d in ds:
            lines.append(f"domain {d['sdUUID']} pool {d['spUUID']} used {_mib(d['used'])} of "
                         f"{_mib(d['capacity'])}")
            for img in d["images"]:
                lines.append(f"  image {img['imgUUID']}")
                for v in img["volumes"]:
                    flags = [v.get("legality", "?"), v.get("voltype", "?")]
                    if v["shared"]:
                        flags.append(f"shared from {v.get('image')}")
                    if "checksum_ok" in v:
                        flags.append("checksum ok" if v["checksum_ok"] else "CHECKSUM MISMATCH")
                    parent = v.get("parent", "")
                    lines.append(
                        f"    volume {v['volUUID']} parent {parent[:8]} {v.get('format')} "
                        f"size {_mib(v.get('capacity'))} alloc {_mib(v.get('truesize'))} "
                        f"{v.get('checksum', '')[:24]} {' '.join(flags)}")
            for img in d["removing"]:
                lines.append(f"  being removed: {img}")
        return "\n".join(lines) if lines else f"no storage domains under {root.root}"

    emit(args, domains, human)
    if args.verify and any(v.get("checksum_ok") is False for d in domains for i in d["images"]
                           for v in i["volumes"]):
        return 1
    return 0


def _tasks(args: argparse.Namespace) -> int:
    try:
        statuses = list(_client(args).get_all_tasks_statuses().values())
        source = "agent"
    except AgentUnavailable:
        from .tasks import Task

        statuses = []
        for path in sorted(_root(args).tasks.glob("*.json")):
            try:
                st = Task(read_json(path)).status()
            except (OSError, ValueError, KeyError):
                continue
            if st["taskState"] != "finished":
                st["message"] = ("interrupted: the agent is down; it reports this task failed "
                                 "when it starts again")
            statuses.append(st)
        source = "records (agent down)"
    if args.tag is not None:
        statuses = [s for s in statuses if s.get("tag") == args.tag]
    statuses.sort(key=lambda s: s["created"])

    def human(ss: list[dict[str, Any]]) -> str:
        lines = [f"{len(ss)} task(s), from the {source}"]
        for s in ss:
            p = s["progress"]
            pct = f"{100 * p['bytes_done'] / p['bytes_total']:.0f}%" if p["bytes_total"] else "-"
            lines.append(f"{s['taskID']} {s['verb']:<12} {s['state']:<9} {pct:>4} "
                         f"code {s['code']} tag {s['tag']} {s['message']}")
        return "\n".join(lines)

    emit(args, statuses, human)
    return 0


def _ping(args: argparse.Namespace) -> int:
    emit(args, _client(args).ping(), lambda r: f"agent pid {r['pid']} serves {r['root']}")
    return 0
