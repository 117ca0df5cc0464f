"""``movedisk agent ...``: serve the simulator, list the domains, show tasks.

- ``agent serve --root DIR [--socket PATH]``: run the simulator (foreground); every copy
  and deletion is durable (fsynced, directories included) before its task says finished.
- ``agent ls [--root DIR] [--domain SD] [--verify]``: what the domains hold, read from
  the files (works while the agent is down); ``--verify`` reports per volume what qemu-img
  says (format, virtual and actual size, backing file, ``qemu-img check``) and whether
  its layer's checksum matches its metadata.
- ``agent tasks [--root DIR] [--tag TAG]``: the agent's tasks, from the running agent,
  or from its task records when it is down.
- ``agent import DIR --domain SD``: adopt a directory of existing qcow2/raw images (copied)
  as volumes of the domain, one image group per chain found from their backing files.
- ``agent ping``: whether the agent answers.

DIR defaults to $MOVEDISK_AGENT_ROOT, else ``agent/`` under MOVEDISK_HOME (``.movedisk/``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..cli import common_options, emit
from . import images
from .client import StorageClient
from .errors import AgentError, AgentUnavailable
from .layout import BLANK_UUID, Root, read_json, walk


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
    p.add_argument("--verify", action="store_true", help="check every volume with qemu-img "
                   "(format, sizes, backing file, qemu-img check) and recompute its checksum; "
                   "exit 1 on any problem")
    p.set_defaults(handler=_ls)

    p = common_options(asub.add_parser(
        "import", help="adopt a directory of qcow2/raw images as image groups of a domain "
        "(one per chain, found from the backing files; the files are copied)"))
    _root_option(p)
    p.add_argument("directory", metavar="DIR", help="the directory of images")
    p.add_argument("--domain", required=True, help="the storage domain to hold them")
    p.set_defaults(handler=_import)

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
                    v["verify"] = verify_volume(root.image_dir(d["sdUUID"], img["imgUUID"]), v)
                    v["checksum_ok"] = v["verify"]["checksum_ok"]
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
                    if "verify" in v:
                        r = v["verify"]
                        lines.append(
                            f"      image {r['format']} virtual {_mib(r['virtual_size'])} actual "
                            f"{_mib(r['actual_size'])} backing {r['backing_file'] or '-'} "
                            f"check {r['check']}" + ("" if r["ok"] else f"  PROBLEM: {r['problem']}"))
            for img in d["removing"]:
                lines.append(f"  being removed: {img}")
        return "\n".join(lines) if lines else f"no storage domains under {root.root}"

    emit(args, domains, human)
    if args.verify and any(not v["verify"]["ok"] for d in domains for i in d["images"]
                           for v in i["volumes"]):
        return 1
    return 0


def verify_volume(img_dir: Path, v: dict[str, Any]) -> dict[str, Any]:
    """What qemu-img says of one volume, against its metadata: format, virtual and actual
    size, backing file, ``qemu-img check``, and the checksum of its layer."""
    path = img_dir / v["volUUID"]
    out: dict[str, Any] = {"format": None, "virtual_size": None, "actual_size": None,
                           "backing_file": None, "check": "-", "checksum_ok": False}
    problems = []
    if not path.exists():
        problems.append("volume file missing")
    else:
        fmt = v.get("format", images.RAW)
        try:
            info = images.info(path)
            out.update(format=info.get("format"), virtual_size=info.get("virtual-size"),
                       actual_size=info.get("actual-size"),
                       backing_file=info.get("backing-filename"))
            if out["format"] != images.QEMU_FORMAT.get(fmt):
                problems.append(f"the file is {out['format']}, its metadata says {fmt}")
            if out["virtual_size"] != v.get("capacity"):
                problems.append(f"virtual size {out['virtual_size']}, metadata {v.get('capacity')}")
            parent = v.get("parent", BLANK_UUID)
            want = None if parent == BLANK_UUID else parent
            if out["backing_file"] != want:
                problems.append(f"backing file {out['backing_file']!r}, parent {want!r}")
            elif want is not None and not (img_dir / want).exists():
                problems.append(f"backing file {want} is not in the image group")
            if fmt == images.COW and out["format"] == "qcow2":
                report = images.check(path)
                out["check"] = "ok" if report["ok"] else (
                    f"{report.get('check-errors', 0)} errors, {report.get('leaks', 0)} leaks"
                    if "error" not in report else report["error"])
                if not report["ok"]:
                    problems.append(f"qemu-img check: {out['check']}")
            checksum, _ = images.layer_checksum(path, fmt)
            out["checksum_ok"] = checksum == v.get("checksum")
            if not out["checksum_ok"]:
                problems.append("checksum mismatch")
        except AgentError as exc:
            problems.append(exc.message)
    out["ok"] = not problems
    out["problem"] = "; ".join(problems)
    return out


def _import(args: argparse.Namespace) -> int:
    from .client import SimControl

    sim = SimControl(args.socket or str(_root(args).socket), timeout=600.0)
    groups = sim.import_images(args.domain, args.directory)

    def human(gs: list[dict[str, Any]]) -> str:
        lines = [f"{sum(len(g['volumes']) for g in gs)} volume(s) in {len(gs)} image group(s) "
                 f"on domain {args.domain}"]
        for g in gs:
            lines.append(f"  image {g['imgUUID']}")
            for v in g["volumes"]:
                origin = "" if v["shared"] else f"  <- {v.get('description', '')[14:]}"
                lines.append(f"    volume {v['volUUID']} {v['format']} {v['voltype']} size "
                             f"{_mib(v['capacity'])}" + (" (template, linked)" if v["shared"]
                                                        else origin))
        return "\n".join(lines)

    emit(args, groups, human)
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
