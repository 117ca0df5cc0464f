"""``movedisk demo``: the feature, told step by step on the embedded cluster and agent.

Starts the embedded PostgreSQL and storage agent under MOVEDISK_HOME (leaving them running),
deploys, builds an inventory (a data center, three domains, a template with two VMs based on
it, disks with snapshot chains), then: a clean move with its progress bar; a template's disk
whose source deletion is blocked by the VMs' volumes, leaving an ILLEGAL leftover; that leftover
removed once the VMs' disks moved away; a move whose process is killed (SIGKILL) in the middle of
its copy, then ``recover`` finishing it; the verification clean at the end.

The disks are qcow2 chains with data in them: before the first move each disk's image group is
copied aside (a reference), and after every move each volume of the moved chain is checked
against its reference with ``qemu-img compare`` (what a guest reads, byte for byte).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from . import deploy as deploy_mod
from . import inventory
from .agent import SimControl, StorageClient
from .cli import common_options
from .db import EMBEDDED, connect, describe_target, resolve_dsn

SPEC: dict[str, Any] = {"data_centers": [{
    "name": "dc-demo",
    "domains": [{"name": "fast-ssd", "capacity": "2G"}, {"name": "bulk-nfs", "capacity": "2G"},
                {"name": "archive", "capacity": "2G"}],
    "templates": [{"name": "rhel9", "domain": "fast-ssd",
                   "disks": [{"alias": "rhel9-os", "size": "64M", "data": "16M"}]}],
    "vms": [
        {"name": "web1", "template": "rhel9", "disks": [
            {"alias": "web1-os", "domain": "fast-ssd", "template_disk": "rhel9-os", "data": "2M",
             "snapshots": 1}]},
        {"name": "web2", "template": "rhel9", "disks": [
            {"alias": "web2-os", "domain": "fast-ssd", "template_disk": "rhel9-os", "data": "2M"}]},
        {"name": "db1", "disks": [
            {"alias": "db1-data", "domain": "fast-ssd", "size": "256M", "data": "48M",
             "snapshots": 2, "wipe_after_delete": True},
            {"alias": "db1-logs", "domain": "fast-ssd", "size": "128M", "data": "32M",
             "snapshots": 1}]},
    ],
}]}


def register(sub: Any) -> None:
    p = common_options(sub.add_parser(
        "demo", help="start the embedded cluster and agent, deploy, and show moves step by step"),
        dsn=True)
    p.set_defaults(handler=run)


def ensure_agent() -> str:
    """The embedded agent's socket, starting the agent (detached) when it does not run."""
    from .embedded import agent_socket

    return agent_socket(None)


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    # The demo's place is the embedded cluster unless a database is named.
    dsn = resolve_dsn(args.dsn or EMBEDDED)
    sock = ensure_agent()
    env = {**os.environ, "MOVEDISK_DSN": dsn, "MOVEDISK_AGENT_SOCKET": sock}
    env.pop("MOVEDISK_CRASH_AT", None)
    say = Narrator()

    say.step("Deploy the package into the database")
    with connect(dsn) as conn:
        where = describe_target(conn)
        report = deploy_mod.deploy(conn)
    where = f"the embedded cluster ({where})" if not args.dsn else where
    say.note(f"{report.mode} deploy into {where}: {report.functions} functions, "
             f"{report.views} views ({report.seconds:.2f}s)")

    say.step("Build an inventory: a data center, three storage domains, a template (rhel9) with "
             "two VMs based on it, and a database VM with snapshot chains")
    run_id = uuid.uuid4().hex[:6]
    spec = _named(SPEC, run_id)
    sim = SimControl(sock, timeout=60)
    with connect(dsn) as conn:
        made = inventory.build(conn, sim, spec, salt=run_id)
    # Commands name disks by alias and domains by name (this run's suffix keeps them unique).
    dom = {k.rsplit("-", 1)[0]: k for k in made.domains}
    disk = {k.rsplit("-", 1)[0]: k for k in made.disks}
    for alias, d in made.disks.items():
        say.note(f"disk {alias}: {len(d['volumes'])} qcow2 volume(s) on "
                 f"{_name(made, d['domain'])}")
    agent_root = Path(StorageClient(sock).ping()["root"])
    check = ContentCheck(say, agent_root, made, Path(dsn_home()) / "demo-reference" / run_id)

    say.step("A clean move: db1-data (3 volumes, 48 MiB of data) from fast-ssd to bulk-nfs. "
             "Phase 1 locks it and creates its temporary disk, the agent copies it (phase 2), "
             "phase 3 maps it on bulk-nfs, then the source is wiped and deleted")
    sim.add_fault("copy_delay", imgUUID=made.disks[disk["db1-data"]]["id"], bytes_per_second=40 << 20)
    say.cli(env, "move", disk["db1-data"], "--to", dom["bulk-nfs"], "--wait")
    check.compare(disk["db1-data"], dom["bulk-nfs"])

    say.step("Move the template's disk rhel9-os to bulk-nfs: the copy succeeds, but the agent "
             "refuses to delete the source, since web1-os and web2-os are built on its volume "
             "there. The temporary disk stays ILLEGAL: it is the record of the leftover")
    say.cli(env, "move", disk["rhel9-os"], "--to", dom["bulk-nfs"], "--wait")
    check.compare(disk["rhel9-os"], dom["bulk-nfs"])
    say.cli(env, "status")
    if say.has_command("disks"):
        say.cli(env, "disks", "--temporary")
    else:
        _show_temporary(say, dsn)

    say.step("Move the VMs' disks to bulk-nfs (the template is there now), then remove the "
             "leftover: nothing depends on it any more, so the agent deletes it and the "
             "temporary disk goes")
    say.cli(env, "move", disk["web1-os"], "--to", dom["bulk-nfs"], "--wait")
    check.compare(disk["web1-os"], dom["bulk-nfs"])
    say.cli(env, "move", disk["web2-os"], "--to", dom["bulk-nfs"], "--wait")
    check.compare(disk["web2-os"], dom["bulk-nfs"])
    with connect(dsn) as conn:
        tmp = [r["temporary_disk_id"] for r in conn.execute("SELECT * FROM GetAllTemporaryDisks()")]
    for t in tmp:
        say.cli(env, "remove", str(t))

    say.step("A move killed in the middle: db1-logs to archive, and its process gets SIGKILL "
             "during the copy (MOVEDISK_CRASH_AT=during_copy). Its move stays recorded, the "
             "agent's copy goes on; recover finds the dead owner and finishes the move")
    sim.add_fault("copy_delay", imgUUID=made.disks[disk["db1-logs"]]["id"], bytes_per_second=32 << 20)
    say.cli({**env, "MOVEDISK_CRASH_AT": "during_copy"}, "move", disk["db1-logs"], "--to",
            dom["archive"], "--wait", "--no-recover", expect_fail=True)
    say.cli(env, "status")
    say.cli(env, "recover")
    check.compare(disk["db1-logs"], dom["archive"])

    say.step("Verify: the database's checks, and every volume where the database says, intact")
    ok = _verify(say, env, dsn, sock) and check.ok
    check.discard()
    if check.ok:
        say.note(f"qemu-img compare: {check.compared} volume(s) after {check.moves} move(s), "
                 "every one identical to its original")
    seconds = time.monotonic() - t0
    say.step(f"Done in {seconds:.1f}s. The cluster and the agent keep running:")
    say.note(f'psql "{dsn}"')
    say.note("movedisk status | movedisk events | movedisk disks   (with MOVEDISK_HOME as now)")
    say.note("stop both with: movedisk db stop")
    StorageClient(sock).ping()
    return 0 if ok else 1


def _named(spec: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The spec with every name suffixed by the run id (a second demo adds its own)."""
    dc = dict(spec["data_centers"][0])
    dc["name"] = f"{dc['name']}-{run_id}"
    dc["domains"] = [{**d, "name": f"{d['name']}-{run_id}"} for d in dc["domains"]]

    def disk(d: dict[str, Any]) -> dict[str, Any]:
        out = {**d, "alias": f"{d['alias']}-{run_id}"}
        if "domain" in d:
            out["domain"] = f"{d['domain']}-{run_id}"
        if "template_disk" in d:
            out["template_disk"] = f"{d['template_disk']}-{run_id}"
        return out

    dc["templates"] = [{**t, "name": f"{t['name']}-{run_id}", "domain": f"{t['domain']}-{run_id}",
                        "disks": [disk(d) for d in t["disks"]]} for t in dc["templates"]]
    dc["vms"] = [{**v, "name": f"{v['name']}-{run_id}",
                  **({"template": f"{v['template']}-{run_id}"} if "template" in v else {}),
                  "disks": [disk(d) for d in v["disks"]]} for v in dc["vms"]]
    return {"data_centers": [dc]}


def _name(made: inventory.Made, sd: str) -> str:
    return next((k for k, v in made.domains.items() if v == sd), sd)


def _show_temporary(say: Narrator, dsn: str) -> None:
    with connect(dsn) as conn:
        for r in conn.execute("SELECT * FROM GetAllTemporaryDisks()"):
            status = {1: "OK", 2: "LOCKED", 4: "ILLEGAL"}.get(r["temporary_status"], "?")
            say.note(f"temporary disk {r['temporary_disk_id']} ({status}) stands for disk "
                     f"{r['src_image_group_id']} left on {r['src_storage']}")


def _verify(say: Narrator, env: dict[str, str], dsn: str, sock: str) -> bool:
    if say.has_command("verify"):
        return say.cli(env, "verify") == 0
    with connect(dsn) as conn:
        findings = conn.execute("SELECT * FROM VerifyAll()").fetchall()
    for f in findings:
        say.note(f"finding: {f['check_name']}: {f['message']}")
    res = say.cli(env, "agent", "ls", "--verify", "--root", str(Path(sock).parent))
    if not findings:
        say.note("VerifyAll: no finding")
    return not findings and res == 0


def dsn_home() -> Path:
    from .pgserver import movedisk_home

    return movedisk_home()


class ContentCheck:
    """Each disk's chain kept aside before the moves; after a move, every volume of the chain
    on the destination compared with its reference by ``qemu-img compare`` (the content a
    guest reads through the chain, byte for byte, whatever the qcow2 files' layout)."""

    def __init__(self, say: Narrator, root: Path, made: inventory.Made, ref: Path) -> None:
        self.say, self.root, self.made, self.ref = say, root, made, ref
        self.ok, self.compared, self.moves = True, 0, 0
        ref.mkdir(parents=True, exist_ok=True)
        for d in made.disks.values():
            src = root / "domains" / d["domain"] / "images" / d["id"]
            subprocess.run(["cp", "-a", "--sparse=always", str(src), str(ref / d["id"])],
                           check=True)

    def compare(self, alias: str, domain: str) -> None:
        d = self.made.disks[alias]
        img_dir = self.root / "domains" / self.made.domains[domain] / "images" / d["id"]
        differ = []
        for vol in d["volumes"]:
            res = subprocess.run(["qemu-img", "compare", "-U", str(img_dir / vol),
                                  str(self.ref / d["id"] / vol)],
                                 capture_output=True, text=True, check=False)
            if res.returncode != 0:
                differ.append(f"{vol[:8]}: {(res.stdout or res.stderr).strip()}")
        self.moves += 1
        self.compared += len(d["volumes"])
        if differ:
            self.ok = False
            self.say.note(f"qemu-img compare: {alias} on {domain} DIFFERS from the original: "
                          + "; ".join(differ))
        else:
            self.say.note(f"qemu-img compare: {alias}'s {len(d['volumes'])} volume(s) on "
                          f"{domain} identical to the originals, byte for byte")

    def discard(self) -> None:
        shutil.rmtree(self.ref, ignore_errors=True)


class Narrator:
    def __init__(self) -> None:
        self.n = 0

    def step(self, text: str) -> None:
        self.n += 1
        print(f"\n== {self.n}. {text}", flush=True)

    def note(self, text: str) -> None:
        print(f"   {text}", flush=True)

    def has_command(self, name: str) -> bool:
        from .cli import build_parser

        parser = build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return name in sub.choices

    def cli(self, env: dict[str, str], *argv: str, expect_fail: bool = False) -> int:
        shown = " ".join(a if len(a) < 40 else a[:8] + "..." for a in argv)
        prefix = "MOVEDISK_CRASH_AT=during_copy " if "MOVEDISK_CRASH_AT" in env else ""
        print(f"   $ {prefix}movedisk {shown}", flush=True)
        proc = subprocess.run([sys.executable, "-m", "movedisk.cli", *argv], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout.splitlines():
            if line.strip():
                print(f"     {line}", flush=True)
        if proc.returncode < 0:
            print(f"     (the process was killed by signal {-proc.returncode})", flush=True)
        elif proc.returncode and not expect_fail:
            print(f"     (exit code {proc.returncode})", flush=True)
        return proc.returncode
